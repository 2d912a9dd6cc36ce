import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import type {EventResult} from '../cli/results.js'
import {DEFAULT_CONFIG_FILE} from '../lib/config/load.js'
import {type DevStack, startDevStack} from '../lib/dev/stack.js'
import {untilStopSignal} from '../lib/net/signals.js'

export default class Dev extends BaseCommand<typeof Dev> {
  static override jsonLines = true
  static override summary = 'Run the whole enclave stack on this machine with simulated Nitro parts, until Ctrl-C.'
  static override description = `Generates the test model and a dev EIF + lockfile when they are missing, then starts: the enclave server (a child process, with the NSM simulator signing attestation documents under a throwaway dev root and the PCRs nle measures in the EIF), a local KMS endpoint (a key and alias for the project, the key policy applied from the lockfile), and the parent proxy with a self-signed certificate on 127.0.0.1.

Before anything starts it checks the EIF and the model against the lockfile: the EIF must be whole and measure the lockfile's PCRs, and every model file must be the one the lockfile pins; the simulator then attests the PCRs measured in that EIF. One \`nle dev\` per folder: a second one refuses with the first one's pid.

Then \`nle chat\` in the same folder finds it. Ctrl-C stops everything. Nothing here is secure: the dev root is not AWS's, and clients trust it only when told to.`
  static override examples = ['<%= config.bin %> dev', '<%= config.bin %> dev --port 8443', '<%= config.bin %> dev --json']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    port: Flags.integer({description: 'HTTPS port of the proxy (0 = any free port).', default: 0, min: 0, max: 65535}),
    rebuild: Flags.boolean({description: 'Regenerate the model and rebuild the EIF and lockfile first.', default: false}),
    logs: Flags.boolean({description: 'Print the children\'s (content-free) JSON logs to stderr.', default: false}),
  }

  async run(): Promise<void> {
    const json = this.jsonEnabled()
    const stack: DevStack = await startDevStack({
      configFile: this.flags.config,
      port: this.flags.port,
      rebuild: this.flags.rebuild,
      onStep: (m) => {
        if (!json) process.stderr.write(`• ${m}\n`)
      },
      ...(this.flags.logs ? {onLog: (name, m) => process.stderr.write(`${name}: ${JSON.stringify(m)}\n`)} : {}),
    })
    // Listen for SIGINT/SIGTERM before saying it is ready: a script may send one as soon as it reads that.
    const signalled = untilStopSignal()
    const e = stack.endpoints
    if (json) {
      // One line, so a script can read it while the stack keeps running.
      this.emitEvent('ready', {...e, lockfile: stack.lockfile, kmsKeyArn: stack.kms.keyArn, policyChanged: stack.policy.changed} satisfies EventResult<'dev', 'ready'>)
    } else {
      this.log(`\nnle dev is running (Ctrl-C to stop)`)
      this.log(`  proxy (HTTPS)   ${e.proxyUrl}   certificate ${e.caFile}`)
      this.log(`  enclave socket  ${e.enclaveSocket}`)
      this.log(`  local KMS       ${e.kmsUrl}   key ${stack.kms.keyArn}`)
      this.log(`  dev root        sha256 ${e.devRootSha256}  (INSECURE: a simulator root, not AWS's)`)
      this.log(`  lockfile        ${stack.lockfile}`)
      this.log(`\nIn another terminal, in this folder: nle chat`)
    }
    try {
      await Promise.race([signalled, stack.exited])
    } finally {
      if (!json) process.stderr.write('stopping…\n')
      await stack.stop()
    }
    if (json) this.emitEvent('stopped')
  }
}
