import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {isNleError} from '../../lib/errors.js'
import {formatCheck, formatInputError} from '../../lib/kms/check.js'
import {runPolicyCheck} from '../../lib/kms/service.js'
import {inputOptions, policySourceFlags, sourceOf} from './show.js'

export default class PolicyCheck extends BaseCommand<typeof PolicyCheck> {
  static override summary = 'CI drift check: does the key policy admit the lockfile\'s measurements, and nothing stale?'
  static override description = `Judges every way the key policy lets the host role (or its sessions, the account through IAM, "*") reach plaintext: Decrypt, GenerateDataKey*, DeriveSharedSecret without a full pin of the lockfile's PCRs, and ReEncryptFrom, CreateGrant, PutKeyPolicy at all.

Exit codes:
  0  the current measurements (nle.lock.json) are admitted for every kms.operations, and nothing else
     gives the host plaintext or admits another enclave;
  1  unsafe: the host reaches plaintext without the attested enclave (unconditioned access, a debug-mode
     pin, or one of nle's statements pinning a set that is neither the current build nor an earlier
     one the lockfile records in "previous": unrecorded-measurements), or drift: the current measurements are not admitted (or are all-zero without --allow-debug);
     with --strict, also everything that otherwise exits 2;
  2  a statement admits a stale measurement set, pins fewer measurements than nle does, or nle's
     statements differ from what \`nle policy apply\` writes.
  3  the policy (or nle.yaml, the lockfile) is not valid input: no verdict.
(Exit 2 is also what a usage error exits with; a usage error prints "Error [USAGE]" and no report.)

With a sealed model and a separate model key (kms.modelKeyId), the model key's policy (live, or --model-policy-file) is judged the same way for kms:Decrypt, and the worst finding of either key decides: each finding names its key ("key" in --json; model-key messages start with "Model key <arn or file>:").

--format github prints GitHub Actions annotations (::error:: / ::warning::). Works on a live key or on --policy-file.`
  static override examples = ['<%= config.bin %> policy check', '<%= config.bin %> policy check --policy-file infra/key-policy.json --format github', '<%= config.bin %> policy check --strict --json']
  static override flags = {
    ...policySourceFlags,
    format: Flags.string({description: 'Report format (json: the same envelope as --json).', options: ['text', 'json', 'github'], default: 'text'}),
    strict: Flags.boolean({description: 'Treat stale sets, partial pins and outdated statements as errors (exit 1).', default: false}),
    'allow-debug': Flags.boolean({description: 'Accept all-zero (debug-mode) measurements. Development keys only.', default: false}),
  }

  /** --format json is --json: the one envelope (docs/json.md), whichever flag a pipeline uses. */
  override jsonEnabled(): boolean {
    return super.jsonEnabled() || this.argv.includes('--format=json') || formatIsJson(this.argv)
  }

  /** In --format github an input error (a malformed policy, a missing config) is also an ::error annotation, so CI shows it on the file. */
  protected override async catch(err: Error & {exitCode?: number}): Promise<unknown> {
    if (this.flags?.format === 'github' && !this.jsonEnabled() && isNleError(err)) {
      process.stdout.write(formatInputError(err, {file: this.flags['policy-file']}))
    }
    return super.catch(err)
  }

  async run(): Promise<Awaited<ReturnType<typeof runPolicyCheck>>> {
    const report = await runPolicyCheck({...inputOptions(this.flags), source: sourceOf(this.flags), strict: this.flags.strict, allowDebug: this.flags['allow-debug']})
    if (!this.jsonEnabled()) {
      process.stdout.write(formatCheck(report, this.flags.format as 'text' | 'json' | 'github', {file: this.flags['policy-file'], modelFile: this.flags['model-policy-file']}))
    }
    if (report.exitCode !== 0) process.exitCode = report.exitCode
    return report
  }
}

function formatIsJson(argv: readonly string[]): boolean {
  const i = argv.indexOf('--format')
  return i !== -1 && argv[i + 1] === 'json'
}
