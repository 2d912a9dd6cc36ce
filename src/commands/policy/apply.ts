import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {type ApplyReport, type ApplyResult, applyPolicy} from '../../lib/kms/service.js'
import {inputOptions, policySourceFlags, sourceOf} from './show.js'

export default class PolicyApply extends BaseCommand<typeof PolicyApply> {
  static override summary = 'Patch the key policy so that only the attested enclave (the lockfile\'s PCRs) may decrypt.'
  static override description = `Adds or updates the statements nle owns (Sid nle-<name>-enclave-current and -previous-<n>): each allows kms.operations to kms.hostRoleArn only when the request's attestation document has the lockfile's PCR0, PCR1, PCR2 (and PCR8 for a signed EIF), compared with StringEqualsIgnoreCase. During a rollout up to kms.keepPrevious earlier measurement sets stay admitted, one statement per set — only sets the lockfile records as earlier builds ("previous", which nle build keeps); any other set an nle statement pins is dropped, and the reason printed under the diff. Every other statement is kept exactly.

By default prints a unified diff and changes nothing. --apply writes: on a live key it re-reads the policy first and refuses if it changed meanwhile; with --policy-file it rewrites the file (or writes --out).

With a sealed model (model.sealed) on the project key, nle's statements also admit kms:Decrypt (the enclave unseals the weights with it). With a separate model key (kms.modelKeyId) its policy gets the same statements, kms:Decrypt only: both diffs are shown and --apply writes both (--model-policy-file / --model-out for files); nothing is written unless both patches pass the checks below.

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
    'model-out': Flags.file({description: 'With --model-policy-file: write the model key\'s patched policy to this file.', dependsOn: ['model-policy-file']}),
    'allow-debug': Flags.boolean({description: 'Admit all-zero (debug-mode) measurements. Development keys only.', default: false}),
    force: Flags.boolean({description: 'Write even if the caller would lose kms:PutKeyPolicy.', default: false}),
    caller: Flags.string({description: 'With --policy-file: the ARN that will put the policy, for the lockout check.', dependsOn: ['policy-file']}),
  }

  async run(): Promise<ApplyResult> {
    const report = await applyPolicy({
      ...inputOptions(this.flags),
      source: sourceOf(this.flags),
      apply: this.flags.apply,
      out: this.flags.out,
      modelOut: this.flags['model-out'],
      allowDebug: this.flags['allow-debug'],
      force: this.flags.force,
      caller: this.flags.caller,
    })
    if (!this.jsonEnabled()) {
      this.render(report)
      if (report.model) this.render(report.model)
      if (!report.written && !report.model?.written && (report.changed || report.model?.changed)) this.log('\nNothing written: re-run with --apply to write this change.')
    }
    return report
  }

  private render(report: ApplyReport): void {
    const what = report.key === 'model' ? `the model key's policy (${report.source})` : `the key policy of ${report.source}`
    if (report.diff) process.stdout.write(report.diff)
    else this.log(`No change: ${what} already admits the current measurements as nle would write them.`)
    for (const d of report.dropped) this.log(`no longer admitted${report.key === 'model' ? ' by the model key' : ''}: PCR0 ${d.set.PCR0.slice(0, 12)}… (${d.sid}: ${d.message})`)
    for (const e of report.exposures) this.log(`warning: ${report.key === 'model' ? `model key ${report.source}: ` : ''}${e.message}\n  fix: ${e.fix}${e.proposed ? `\n  proposed statement: ${JSON.stringify(e.proposed)}` : ''}`)
    if (report.lockout?.lost) this.log(`warning: ${report.lockout.caller} loses kms:PutKeyPolicy on ${report.source} (--force given).`)
    if (report.written) this.log(`Wrote ${report.written}.`)
  }
}
