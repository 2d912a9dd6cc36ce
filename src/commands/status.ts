import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {table} from '../cli/render.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {type StatusReport, projectStatus} from '../lib/host/status.js'

export default class Status extends BaseCommand<typeof Status> {
  static override summary = 'Show whether the project\'s enclave, vsock bridge and proxy run, and the runtime\'s health.'
  static override description = 'Reads nitro-cli describe-enclaves and .nle/run.json, checks the bridge and proxy processes (or units) and asks the runtime for /healthz once. Other enclaves on the host are listed too. Exits 0 whether or not it runs (also without nitro-cli: a warning says no enclave can run here); scripts read `running` and `health` from --json.'
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
  }

  async run(): Promise<StatusReport> {
    const loaded = await loadConfig(this.flags.config)
    const s = await projectStatus({loaded, ctx: defaultHostContext()})
    if (!this.jsonEnabled()) {
      for (const w of s.warnings) this.logToStderr(w.startsWith('DEBUG MODE') ? `!!! ${w} !!!` : `Warning: ${w}`)
      if (!s.enclave) this.log(`${s.name}: not running.`)
      else {
        const e = s.enclave
        this.log(
          table([
            ['enclave', `${e.EnclaveID} (${e.State}${s.debug ? ', DEBUG_MODE' : ''})`],
            ['CID', String(e.EnclaveCID)],
            ['memory', `${e.MemoryMiB} MiB`],
            ['CPUs', e.CPUIDs.join(', ')],
            ['bridge', s.bridge ? `${s.bridge.alive ? 'up' : 'DOWN'} ${s.bridge.socket}` : 'not started by nle'],
            ['proxy', s.proxy ? `${s.proxy.alive && s.proxy.listening ? 'up' : 'DOWN'} ${s.proxy.url}` : 'not running'],
            ...(s.kms
              ? [
                  ['KMS vsock-proxy', s.kms.vsockProxy.alive ? 'up' : 'DOWN'],
                  ['credentials bridge', s.kms.credentialsBridge ? `${s.kms.credentialsBridge.alive ? 'up' : 'DOWN'} ${s.kms.credentialsBridge.socket}` : 'none (no parent proxy)'],
                ]
              : []),
            ['health', `${s.health}${s.healthDetail ? ` (${s.healthDetail})` : ''}`],
            ...Object.entries(e.Measurements ?? {}).filter(([k]) => k.startsWith('PCR')).map(([k, v]) => [k, String(v)]),
          ]),
        )
      }
      for (const o of s.others) this.log(`other enclave: ${o.EnclaveName ?? ''} ${o.EnclaveID} CID ${o.EnclaveCID} ${o.State}`)
    }
    return s
  }
}
