import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {type StopReport, stopProject} from '../lib/host/stop.js'

export default class Stop extends BaseCommand<typeof Stop> {
  static override summary = 'Terminate the project\'s enclave, then stop its vsock bridge and proxy.'
  static override description = 'Terminates the enclave recorded in .nle/run.json (or, without a record, every enclave named after the project), then stops the bridge and proxy processes (their whole process groups) or units, removes the bridge socket and the record. Running it when nothing runs is not an error (exit 0), nor on a machine without nitro-cli (a warning says so).'
  static override examples = ['<%= config.bin %> stop', '<%= config.bin %> stop --json']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
  }

  async run(): Promise<StopReport> {
    const loaded = await loadConfig(this.flags.config)
    const r = await stopProject({loaded, ctx: defaultHostContext()})
    if (!this.jsonEnabled()) {
      for (const w of r.warnings) this.logToStderr(`Warning: ${w}`)
      if (!r.wasRunning) this.log('Nothing was running.')
      for (const id of r.terminated) this.log(`Terminated enclave ${id}`)
      for (const pid of r.stopped.pids) this.log(`Stopped process ${pid}`)
      for (const u of r.stopped.units) this.log(`Stopped ${u}`)
    }
    return r
  }
}
