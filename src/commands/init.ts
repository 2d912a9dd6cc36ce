import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {type InitResult, initProject} from '../lib/init.js'
import {formatSteps} from '../lib/next-steps.js'

export default class Init extends BaseCommand<typeof Init> {
  static override summary = 'Scaffold an nle project: nle.yaml, the enclave image, the parent host units.'
  static override description = `Writes nle.yaml (every key with its default, commented), enclave/ (the Dockerfile that runs nle's bundled Node runtime, with socat as the vsock bridge), parent/ (systemd units for the parent proxy and the vsock bridge, an allocator.yaml) and a .gitignore.

Works in an existing repository: a file nle would write identically is left alone, and an existing .gitignore gets only nle's missing lines appended (run it again: nothing changes). A file of nle's that exists with other content (nle.yaml, the Dockerfile, a workflow of the same name) is a conflict: it refuses and writes nothing, unless --force, which replaces nle's own files but never a .gitignore's existing lines.

The next steps it prints fit this machine: the simulated stack (nle dev) without a Nitro Enclaves device, the real host's workflow with one.`
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init my-llm --name benefits-bot', '<%= config.bin %> init . --force --json']
  static override args = {
    dir: Args.directory({description: 'Folder to create the project in (created when absent).', default: '.'}),
  }
  static override flags = {
    name: Flags.string({description: 'Project name (lowercase, digits, dashes). Default: the folder name.'}),
    force: Flags.boolean({description: "Replace nle's own files that exist with other content (a .gitignore is only appended to).", default: false}),
  }

  async run(): Promise<InitResult> {
    const result = await initProject({dir: this.args.dir, name: this.flags.name, force: this.flags.force})
    if (!this.jsonEnabled()) {
      const mark = {created: '+', overwritten: '!', merged: '~', unchanged: '='} as const
      const what = {created: '', overwritten: '  (replaced: --force)', merged: '', unchanged: '  (left alone: already as nle writes it)'} as const
      this.log(`nle project "${result.name}" in ${result.dir}:`)
      for (const f of result.files) {
        const extra =
          f.action === 'merged'
            ? `  (appended ${f.added?.length ?? 0} missing line${f.added?.length === 1 ? '' : 's'}: ${f.added?.join(' ')})`
            : f.action === 'unchanged' && f.path === '.gitignore'
              ? "  (left alone: already has nle's lines)"
              : what[f.action]
        this.log(`  ${mark[f.action]} ${f.path}${extra}`)
      }
      this.log('\nNext steps:')
      for (const line of formatSteps(result.nextSteps)) this.log(line)
      this.log(`\n${result.note}`)
    }
    return result
  }
}
