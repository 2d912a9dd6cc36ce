import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {table} from '../cli/render.js'
import {type DemoResult, runDemo} from '../lib/demo.js'

export default class Demo extends BaseCommand<typeof Demo> {
  static override summary = 'Run the nle workflow end to end on this machine, with no AWS, in a temporary folder.'
  static override description = `The first command to run. It works in a temporary folder that it removes afterwards (unless --keep) and prints a summary of every step with its timing.

Today the demo scaffolds a project (nle init) and checks it (nle doctor --for dev). The rest of the flow — generated model, native EIF build, measurements lockfile, KMS policy on a local KMS, attested chat, policy drift check — is added as those parts land.`
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
      this.log(result.kept ? `Project kept in ${result.workdir}` : 'Temporary project removed.')
    }
    return result
  }
}
