import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {type InitResult, initProject} from '../lib/init.js'

export default class Init extends BaseCommand<typeof Init> {
  static override summary = 'Scaffold an nle project: nle.yaml, the enclave image, the parent host units.'
  static override description = `Writes nle.yaml (every key with its default, commented), enclave/ (the Dockerfile that runs nle's bundled Node runtime, with socat as the vsock bridge), parent/ (systemd units for the parent proxy and the vsock bridge, an allocator.yaml) and a .gitignore.

Refuses to overwrite any existing file unless --force; when it refuses, it writes nothing.`
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init my-llm --name benefits-bot', '<%= config.bin %> init . --force --json']
  static override args = {
    dir: Args.directory({description: 'Folder to create the project in (created when absent).', default: '.'}),
  }
  static override flags = {
    name: Flags.string({description: 'Project name (lowercase, digits, dashes). Default: the folder name.'}),
    force: Flags.boolean({description: 'Overwrite existing files.', default: false}),
  }

  async run(): Promise<InitResult> {
    const result = await initProject({dir: this.args.dir, name: this.flags.name, force: this.flags.force})
    if (!this.jsonEnabled()) {
      this.log(`Created nle project "${result.name}" in ${result.dir}`)
      for (const f of result.files) this.log(`  ${f.action === 'created' ? '+' : '~'} ${f.path}`)
      this.log('\nNext steps:')
      for (const step of result.nextSteps) this.log(`  ${step}`)
    }
    return result
  }
}
