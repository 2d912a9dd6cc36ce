import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {table} from '../../cli/render.js'
import {DEFAULT_CONFIG_FILE} from '../../lib/config/load.js'
import {type PolicyInputOptions, type PolicySource, type ShowReport, type ShowResult, showPolicy} from '../../lib/kms/service.js'

/** Flags shared by `nle policy show|apply|check`: where the config, lockfile and policy come from. */
export const policySourceFlags = {
  config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
  lockfile: Flags.file({description: 'The measurements lockfile (default: build.lockfile from nle.yaml).'}),
  'policy-file': Flags.file({description: 'Work on a JSON key policy file instead of a live key (no AWS calls): for policies kept in Terraform or CloudFormation.'}),
  'model-policy-file': Flags.file({description: 'With --policy-file and a separate model key (kms.modelKeyId): the model key\'s JSON policy file.', dependsOn: ['policy-file']}),
  'key-id': Flags.string({description: 'KMS key id, alias or ARN (default: kms.keyId).'}),
  'model-key-id': Flags.string({description: 'KMS key id, alias or ARN of a separate key that seals the model (default: kms.modelKeyId).'}),
  role: Flags.string({description: 'IAM role ARN of the enclave host (default: kms.hostRoleArn).'}),
  region: Flags.string({description: 'AWS region (default: kms.region, then the SDK\'s chain).'}),
  profile: Flags.string({description: 'AWS profile from ~/.aws/config.'}),
  'endpoint-url': Flags.url({description: 'Send KMS, IAM and STS calls here (e.g. a local `nle kms serve`).'}),
}

export interface SourceFlags {
  config: string
  lockfile?: string
  'policy-file'?: string
  'model-policy-file'?: string
  'key-id'?: string
  'model-key-id'?: string
  role?: string
  region?: string
  profile?: string
  'endpoint-url'?: URL
}

export function sourceOf(flags: SourceFlags): PolicySource {
  if (flags['policy-file']) return {kind: 'file', path: flags['policy-file'], ...(flags['model-policy-file'] ? {modelPath: flags['model-policy-file']} : {})}
  return {kind: 'aws', aws: {profile: flags.profile, endpointUrl: flags['endpoint-url']?.toString()}}
}

export function inputOptions(flags: SourceFlags): PolicyInputOptions {
  return {configFile: flags.config, lockfile: flags.lockfile, roleArn: flags.role, keyId: flags['key-id'], modelKeyId: flags['model-key-id'], region: flags.region}
}

export default class PolicyShow extends BaseCommand<typeof PolicyShow> {
  static override summary = 'Show the key policy\'s statements and which measurement sets they admit.'
  static override description = `Reads the key policy of kms.keyId (or --policy-file) — and, when kms.modelKeyId names a separate key that seals the model, that key's policy too (--model-policy-file), as a second document — and lists every statement: effect, principals, actions, whether nle owns it (Sid nle-<name>-enclave-*), and the PCR0/1/2(/8) set it pins, marked "current" when it is the lockfile's. Also lists every way the policy (and, on a live key, its grants) lets the host role reach plaintext without the attested enclave — unconditioned access (Decrypt, GenerateDataKey*, DeriveSharedSecret without a full pin; ReEncryptFrom, CreateGrant, PutKeyPolicy at all), debug-mode, partial and stale pins — with the proposed fix. Changes nothing.`
  static override examples = ['<%= config.bin %> policy show', '<%= config.bin %> policy show --policy-file infra/key-policy.json', '<%= config.bin %> policy show --json']
  static override flags = {...policySourceFlags}

  async run(): Promise<ShowResult> {
    const report = await showPolicy(sourceOf(this.flags), inputOptions(this.flags))
    if (!this.jsonEnabled()) {
      this.render(report)
      if (report.model) {
        this.log('')
        this.render(report.model)
      }
    }
    return report
  }

  private render(report: ShowReport): void {
    this.log(`${report.key === 'model' ? 'Model key' : 'Key'} policy of ${report.source} (project ${report.project}${report.roleArn ? `, host role ${report.roleArn}` : ''})\n`)
    const rows = report.statements.map((s) => [
      String(s.index),
      s.sid ?? '',
      s.effect,
      s.owned ? 'nle' : '',
      s.principals.join(' '),
      `${s.notAction ? 'not ' : ''}${s.actions.join(' ')}`,
      s.measurements ? `PCR0 ${s.measurements.PCR0.slice(0, 12)}…${s.measurements.PCR8 ? ' +PCR8' : ''}${s.status === 'current' ? ' (current)' : ''}` : '',
    ])
    this.log(table(rows, ['#', 'sid', 'effect', 'owner', 'principals', 'actions', 'admits measurements']))
    if (!report.current) this.log('No lockfile read: the current measurements are unknown.')
    for (const e of report.exposures) {
      this.log(`warning: ${e.message}\n  fix: ${e.fix}`)
      if (e.proposed) this.log(`  proposed statement: ${JSON.stringify(e.proposed)}`)
    }
  }
}
