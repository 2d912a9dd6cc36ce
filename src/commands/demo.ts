import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {table} from '../cli/render.js'
import {type DemoResult, runDemo} from '../lib/demo.js'

export default class Demo extends BaseCommand<typeof Demo> {
  static override summary = 'Run the nle workflow end to end on this machine, with no AWS, in a temporary folder.'
  static override description = `The first command to run. It works in a temporary folder that it removes afterwards (unless --keep) and prints a summary of every step with its timing.

Steps: nle init → generate the tiny test model → native EIF build (placeholder kernel, marked not bootable) and the measurements lockfile → the dev stack (enclave server with the NSM simulator, local KMS with the key policy applied, parent proxy) → one chat round trip over the attested channel and one in KMS mode → policy check passes → change the model and rebuild → policy check reports drift (exit 1) → stop. No AWS, Docker or Nitro hardware is used.`
  static override examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --keep --json']
  static override flags = {
    keep: Flags.boolean({description: 'Keep the temporary project folder and print its path.', default: false}),
  }

  async run(): Promise<DemoResult> {
    const result = await runDemo({
      keep: this.flags.keep,
      onStep: (s) => {
        if (!this.jsonEnabled()) this.log(`${s.ok ? '✓' : '✗'} ${s.name} (${(s.ms / 1000).toFixed(2)} s)`)
      },
    })
    if (!this.jsonEnabled()) {
      this.log('')
      this.log(table(result.steps.map((s) => [s.name, s.ok ? 'ok' : 'FAILED', `${(s.ms / 1000).toFixed(2)} s`, s.detail]), ['step', 'result', 'time', 'detail']))
      if (result.pcr0.first) this.log(`PCR0 ${result.pcr0.first}\n  →  ${result.pcr0.second ?? '(not rebuilt)'}`)
      this.log(result.kept ? `Project kept in ${result.workdir}` : 'Temporary project removed; nothing left running.')
    }
    return result
  }
}
