import {Flags, ux} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {durationFlag} from '../cli/flags.js'
import {table} from '../cli/render.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {type RunReport, runProject} from '../lib/host/run.js'

export default class Run extends BaseCommand<typeof Run> {
  static override summary = 'Start the enclave, the vsock bridge and the parent proxy, and wait until the runtime is healthy.'
  static override description = `Runs nitro-cli run-enclave with enclave.cpuCount, the memory \`nle allocator\` computes (or enclave.memoryMiB), enclave.cid and enclave.debug, after checking that the EIF is bootable and matches the lockfile. Then starts the vsock bridge (socat: a Unix socket in .nle/ to the enclave's vsock port) and the parent proxy (when runtime/parent-proxy is present in this nle; otherwise only the bridge) as background processes recorded in .nle/run.json, or with --systemd through the units in the project's parent/ folder. Waits for the runtime's /healthz through the bridge.

KMS mode (nle.yaml names kms.keyId and kms.region): also starts the parent ends of the enclave's two paths out, vsock-proxy from vsock port kms.vsockPort to kms.<region>.amazonaws.com:443 and socat from vsock port kms.credentialsVsockPort to the parent proxy's credentials socket (served from IMDSv2); with --systemd as nle-kms-vsock-proxy.service and nle-credentials-bridge.service.

If anything fails after the enclave started, everything started is stopped again. In debug mode the enclave attests all-zero PCRs: PCR-gated KMS calls will be denied.`
  static override examples = ['<%= config.bin %> run', '<%= config.bin %> run --timeout 600 --json', 'sudo <%= config.bin %> run --systemd']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    systemd: Flags.boolean({description: 'Start the bridge and proxy as systemd units (installed from parent/) instead of managed processes.', default: false}),
    'unit-dir': Flags.directory({description: 'Where --systemd installs the units.', default: '/etc/systemd/system', hidden: true}),
    wait: Flags.boolean({description: 'Wait for the runtime\'s /healthz.', default: true, allowNo: true}),
    timeout: durationFlag({description: 'How long to wait for the runtime\'s health', defaultMs: 120_000}),
  }

  async run(): Promise<RunReport> {
    const loaded = await loadConfig(this.flags.config)
    const spin = this.interactive
    if (spin) ux.action.start('Starting the enclave')
    const result = await runProject({
      loaded,
      ctx: defaultHostContext(),
      systemd: this.flags.systemd,
      unitDir: this.flags['unit-dir'],
      wait: this.flags.wait,
      timeoutMs: this.flags.timeout,
      onProgress: (_phase, message) => (spin ? (ux.action.status = message) : undefined),
    }).finally(() => spin && ux.action.stop())
    if (!this.jsonEnabled()) {
      for (const w of result.warnings) this.logToStderr(w.startsWith('DEBUG MODE') ? `\n!!! ${w} !!!\n` : `Warning: ${w}`)
      const e = result.enclave
      this.log(
        table([
          ['enclave id', e.id],
          ['CID', String(e.cid)],
          ['memory', `${e.memoryMiB} MiB allocated (${e.requestedMemoryMiB} requested)`],
          ['CPUs', e.cpuIds.join(', ')],
          ['debug', e.debug ? 'YES (PCRs attest as zeros)' : 'no'],
          ['bridge', `${result.bridge.socket}${result.bridge.pid ? ` (pid ${result.bridge.pid})` : ` (${result.bridge.unit})`}`],
          ['proxy', result.proxy.started ? `${result.proxy.url}${result.proxy.pid ? ` (pid ${result.proxy.pid})` : ` (${result.proxy.unit})`}` : `not started: ${result.proxy.reason}`],
          ...(result.kms
            ? [
                ['KMS', `${result.kms.endpoint} via vsock-proxy${result.kms.vsockProxy.pid ? ` (pid ${result.kms.vsockProxy.pid})` : ` (${result.kms.vsockProxy.unit})`}`],
                ['credentials', result.kms.credentials ? `${result.kms.credentials.socket}${result.kms.credentials.pid ? ` (bridge pid ${result.kms.credentials.pid})` : ` (${result.kms.credentials.unit})`}` : 'none (no parent proxy)'],
              ]
            : []),
          ['health', result.health],
          ...Object.entries(result.measurements).map(([k, v]) => [k, v]),
        ]),
      )
      this.log('`nle status` shows it; `nle stop` stops everything.')
    }
    return result
  }
}
