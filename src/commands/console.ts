import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {projectConsole} from '../lib/host/console.js'

export default class Console extends BaseCommand<typeof Console> {
  static override summary = 'Attach to the enclave\'s console (debug mode only).'
  static override description = 'Runs nitro-cli console for the project\'s enclave. Only an enclave started with enclave.debug: true has a console; such an enclave attests all-zero PCRs, so never give it real data.'
  static override examples = ['<%= config.bin %> console', '<%= config.bin %> console --disconnect-timeout 60']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    'disconnect-timeout': Flags.integer({description: 'Seconds after which to disconnect.', min: 1}),
  }

  async run(): Promise<{attached: true}> {
    const loaded = await loadConfig(this.flags.config)
    await projectConsole({loaded, ctx: defaultHostContext(), disconnectTimeoutSec: this.flags['disconnect-timeout']})
    return {attached: true}
  }
}
