import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {durationFlag} from '../cli/flags.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {projectConsole} from '../lib/host/console.js'

export default class Console extends BaseCommand<typeof Console> {
  static override summary = 'Attach to the enclave\'s console (debug mode only).'
  static override description = 'Runs nitro-cli console for the project\'s enclave. Only an enclave started with enclave.debug: true has a console; such an enclave attests all-zero PCRs, so never give it real data.'
  static override examples = ['<%= config.bin %> console', '<%= config.bin %> console --disconnect-timeout 60']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    'disconnect-timeout': durationFlag({description: 'Disconnect after this long (nitro-cli counts whole seconds)'}),
  }

  async run(): Promise<{attached: true}> {
    const loaded = await loadConfig(this.flags.config)
    await projectConsole({loaded, ctx: defaultHostContext(), ...(this.flags['disconnect-timeout'] === undefined ? {} : {disconnectTimeoutSec: Math.max(1, Math.ceil(this.flags['disconnect-timeout'] / 1000))})})
    return {attached: true}
  }
}
