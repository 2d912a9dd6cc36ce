import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {type ApplyReport, applyPolicy} from '../../lib/kms/service.js'
import {inputOptions, policySourceFlags, sourceOf} from './show.js'

export default class PolicyApply extends BaseCommand<typeof PolicyApply> {
  static override summary = 'Patch the key policy so that only the attested enclave (the lockfile\'s PCRs) may decrypt.'
  static override description = `Adds or updates the statements nle owns (Sid nle-<name>-enclave-current and -previous-<n>): each allows kms.operations to kms.hostRoleArn only when the request's attestation document has the lockfile's PCR0, PCR1, PCR2 (and PCR8 for a signed EIF), compared with StringEqualsIgnoreCase. During a rollout the previous kms.keepPrevious measurement sets stay admitted, one statement per set. Every other statement is kept exactly.

By default prints a unified diff and changes nothing. --apply writes: on a live key it re-reads the policy first and refuses if it changed meanwhile; with --policy-file it rewrites the file (or writes --out).

Refuses all-zero (debug-mode) PCRs unless --allow-debug, and any result that takes away the caller's kms:PutKeyPolicy unless --force.`
  static override examples = [
    '<%= config.bin %> policy apply',
    '<%= config.bin %> policy apply --apply',
    '<%= config.bin %> policy apply --policy-file infra/key-policy.json --out infra/key-policy.json',
  ]
  static override flags = {
    ...policySourceFlags,
    apply: Flags.boolean({description: 'Write the patched policy (default: only print the diff).', default: false}),
    out: Flags.file({description: 'With --policy-file: write the patched policy to this file.', dependsOn: ['policy-file']}),
    'allow-debug': Flags.boolean({description: 'Admit all-zero (debug-mode) measurements. Development keys only.', default: false}),
    force: Flags.boolean({description: 'Write even if the caller would lose kms:PutKeyPolicy.', default: false}),
    caller: Flags.string({description: 'With --policy-file: the ARN that will put the policy, for the lockout check.', dependsOn: ['policy-file']}),
  }

  async run(): Promise<ApplyReport> {
    const report = await applyPolicy({
      ...inputOptions(this.flags),
      source: sourceOf(this.flags),
      apply: this.flags.apply,
      out: this.flags.out,
      allowDebug: this.flags['allow-debug'],
      force: this.flags.force,
      caller: this.flags.caller,
    })
    if (!this.jsonEnabled()) {
      if (report.diff) process.stdout.write(report.diff)
      else this.log(`No change: the key policy of ${report.source} already admits the current measurements as nle would write them.`)
      for (const r of report.removed) this.log(`no longer admitted: PCR0 ${r.PCR0.slice(0, 12)}…`)
      for (const e of report.exposures) this.log(`warning: ${e.message}\n  fix: ${e.fix}${e.proposed ? `\n  proposed statement: ${JSON.stringify(e.proposed)}` : ''}`)
      if (report.lockout?.lost) this.log(`warning: ${report.lockout.caller} loses kms:PutKeyPolicy (--force given).`)
      if (report.written) this.log(`Wrote ${report.written}.`)
      else if (report.changed) this.log('\nNothing written: re-run with --apply to write this change.')
    }
    return report
  }
}
