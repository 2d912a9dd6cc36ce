import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {formatCheck} from '../../lib/kms/check.js'
import {runPolicyCheck} from '../../lib/kms/service.js'
import {inputOptions, policySourceFlags, sourceOf} from './show.js'

export default class PolicyCheck extends BaseCommand<typeof PolicyCheck> {
  static override summary = 'CI drift check: does the key policy admit the lockfile\'s measurements, and nothing stale?'
  static override description = `Exit codes:
  0  the current measurements (nle.lock.json) are admitted for every kms.operations, and nothing stale;
  1  drift: the current measurements are not admitted (or are all-zero without --allow-debug);
     with --strict, also everything that otherwise exits 2;
  2  admitted, but the policy still admits stale measurement sets, grants an attested operation without
     an attestation condition, or nle's statements differ from what \`nle policy apply\` writes.
(Exit 2 is also what a usage error exits with; a usage error prints "Error [USAGE]" and no report.)

--format github prints GitHub Actions annotations (::error:: / ::warning::). Works on a live key or on --policy-file.`
  static override examples = ['<%= config.bin %> policy check', '<%= config.bin %> policy check --policy-file infra/key-policy.json --format github', '<%= config.bin %> policy check --strict --json']
  static override flags = {
    ...policySourceFlags,
    format: Flags.string({description: 'Report format.', options: ['text', 'json', 'github'], default: 'text'}),
    strict: Flags.boolean({description: 'Treat stale sets and unconditioned grants as errors (exit 1).', default: false}),
    'allow-debug': Flags.boolean({description: 'Accept all-zero (debug-mode) measurements. Development keys only.', default: false}),
  }

  async run(): Promise<Awaited<ReturnType<typeof runPolicyCheck>>> {
    const report = await runPolicyCheck({...inputOptions(this.flags), source: sourceOf(this.flags), strict: this.flags.strict, allowDebug: this.flags['allow-debug']})
    if (!this.jsonEnabled()) {
      process.stdout.write(formatCheck(report, this.flags.format as 'text' | 'json' | 'github', {file: this.flags['policy-file']}))
    }
    if (report.exitCode !== 0) process.exitCode = report.exitCode
    return report
  }
}
