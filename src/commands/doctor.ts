import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {table} from '../cli/render.js'
import {DEFAULT_CONFIG_FILE} from '../lib/config/load.js'
import {type DoctorReport, WORKFLOWS, defaultDoctorEnv, doctor} from '../lib/doctor.js'

export default class Doctor extends BaseCommand<typeof Doctor> {
  static override summary = 'Check the config and which Nitro host parts are present, with versions.'
  static override description = `Validates nle.yaml and looks for docker (and whether its daemon answers), nitro-cli, the /dev/nitro_enclaves device, the allocator and vsock-proxy services, socat, AWS credentials and region. Makes no network calls.

Exits 1 when a part the chosen workflow needs is missing (each missing part comes with how to install it), and 3 when nle.yaml exists but is invalid (its CONFIG_* error is shown).
Workflows: dev (laptop, simulated Nitro), build (docker + nitro-cli), run (a Nitro host), policy (AWS access), host (all of build, run and policy).
Without --for it checks host where the Nitro Enclaves device (/dev/nitro_enclaves) is, else dev, and says which it chose.`
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --for dev', '<%= config.bin %> doctor --for run --json']
  static override flags = {
    for: Flags.string({description: 'The workflow to check for (default: host on a Nitro host, else dev).', options: [...WORKFLOWS]}),
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
  }

  async run(): Promise<DoctorReport> {
    const report = await doctor(this.flags.for as DoctorReport['workflow'] | undefined, defaultDoctorEnv(this.flags.config))
    if (!this.jsonEnabled()) {
      const mark = {ok: 'ok', missing: 'MISSING', error: 'ERROR'} as const
      const rows = report.checks.map((c) => [c.required ? '*' : ' ', c.name, mark[c.status], c.version ?? '', c.detail ?? ''])
      this.log(table(rows, ['', 'part', 'status', 'version', 'detail']))
      const bad = report.checks.filter((c) => c.status !== 'ok' && c.hint)
      for (const c of bad) this.log(`${c.required ? '*' : ' '} ${c.name}: ${c.hint}`)
      this.log(
        report.ok
          ? `\nReady for "${report.workflow}" (* = needed for it).`
          : `\nNot ready for "${report.workflow}": missing ${report.missing.join(', ')} (* = needed for it).`,
      )
      if (report.auto) this.log(report.auto.note)
    }
    if (report.exitCode !== 0) process.exitCode = report.exitCode
    return report
  }
}
