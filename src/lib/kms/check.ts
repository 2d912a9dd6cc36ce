/**
 * The verdict of `nle policy check` (pure). Exit codes — documented in the README:
 *   0  the current measurements are admitted for every configured operation, and nothing else
 *      gives the host plaintext or admits another enclave;
 *   1  the host can reach plaintext without the attested enclave (unconditioned access to a
 *      decrypting operation, ReEncryptFrom, CreateGrant or PutKeyPolicy; a debug-mode pin), or
 *      drift (the current measurements are not admitted, or are all-zero without --allow-debug);
 *      also every warning below when `strict` is set;
 *   2  admitted, but a statement admits a stale set, pins fewer measurements than nle does, or
 *      nle's statements differ from what `policy apply` writes.
 * (2 is also the CLI's usage-error code; a usage error prints `Error [USAGE]` and no report.
 *  A policy that is not a key policy is an input error, exit 3, before any verdict.)
 */
import {type Exposure, type GrantInfo, type PinnedSet, analyzeExposure, grantExposures} from './exposure.js'
import {
  type KeyPolicy,
  type KmsOperation,
  type MeasurementSet,
  type PatchOptions,
  admits,
  isDebugSet,
  isOwned,
  normalizeMeasurements,
  patchPolicy,
} from './policy.js'

export interface CheckInput extends PatchOptions {
  policy: KeyPolicy
  /** Warnings become errors (exit 1). */
  strict?: boolean
  keyArn?: string
  /** The key's grants (live key): `complete` false when they could not all be read. Absent for a policy file. */
  grants?: {grants: readonly GrantInfo[]; complete: boolean}
}

export type FindingKind = 'unconditioned-access' | 'debug-pin' | 'not-admitted' | 'debug-measurements' | 'partial-pin' | 'stale-set' | 'grants-unread' | 'outdated-statements'

/** Most severe first: the report's headline names the first finding in this order. */
const PRIORITY: readonly FindingKind[] = ['unconditioned-access', 'debug-pin', 'debug-measurements', 'not-admitted', 'partial-pin', 'stale-set', 'grants-unread', 'outdated-statements']

export interface Finding {
  severity: 'error' | 'warning'
  kind: FindingKind
  message: string
  sid?: string | null
  fix?: string
  /** For a foreign statement: the replacement that closes the finding (null: remove it). */
  proposed?: Exposure['proposed']
}

export type CheckedSet = PinnedSet

export interface CheckReport {
  /** unsafe: the host can reach plaintext without the attested enclave; drift: the current set is not admitted; partial / stale: see the warnings. */
  verdict: 'ok' | 'unsafe' | 'drift' | 'partial' | 'stale'
  /** The most severe finding, in words (the first line of the text report). */
  headline: string
  exitCode: 0 | 1 | 2
  current: MeasurementSet
  operations: {operation: KmsOperation; admitted: boolean}[]
  sets: CheckedSet[]
  findings: Finding[]
  /** Every way the policy gives the host plaintext (the findings of kinds unconditioned-access, debug-pin, partial-pin, stale-set come from here). */
  exposures: Exposure[]
}

const short = (set: MeasurementSet): string => `PCR0 ${set.PCR0.slice(0, 12)}…`

const VERDICT: Record<FindingKind, CheckReport['verdict']> = {
  'unconditioned-access': 'unsafe',
  'debug-pin': 'unsafe',
  'debug-measurements': 'drift',
  'not-admitted': 'drift',
  'partial-pin': 'partial',
  'stale-set': 'stale',
  'grants-unread': 'stale',
  'outdated-statements': 'stale',
}

const HEADLINE: Record<FindingKind, string> = {
  'unconditioned-access': 'unconditioned access',
  'debug-pin': 'debug-mode enclave admitted',
  'debug-measurements': 'drift',
  'not-admitted': 'drift',
  'partial-pin': 'partial pin',
  'stale-set': 'stale',
  'grants-unread': 'grants not all read',
  'outdated-statements': 'outdated',
}

function headline(top: Finding | undefined, current: MeasurementSet): string {
  if (top === undefined) return `ok: the current measurements (${short(current)}) are admitted; nothing else gives the host plaintext.`
  if (top.kind === 'not-admitted' || top.kind === 'debug-measurements') return 'drift: the current measurements are not admitted.'
  return `${HEADLINE[top.kind]}: ${top.message}`
}

export function checkPolicy(input: CheckInput): CheckReport {
  const current = normalizeMeasurements(input.measurements)
  const findings: Finding[] = []
  const debug = isDebugSet(current) && input.allowDebug !== true
  if (debug) {
    findings.push({severity: 'error', kind: 'debug-measurements', message: 'The lockfile measurements are all zero (a debug-mode build); a key policy must not admit them.', fix: 'Build without debug mode, or pass --allow-debug on a development key.'})
  }
  const operations = [...new Set(input.operations)].map((operation) => ({operation, admitted: admits(input.policy, {roleArn: input.roleArn, keyArn: input.keyArn, set: current, operation})}))
  for (const op of operations.filter((o) => !o.admitted)) {
    findings.push({
      severity: 'error',
      kind: 'not-admitted',
      message: `Drift: the key policy does not let ${input.roleArn} call kms:${op.operation} from an enclave measuring ${short(current)} (the lockfile's measurements).`,
      fix: 'Run `nle policy apply --apply` (or `--policy-file` for a policy kept in Terraform/CloudFormation).',
    })
  }
  // What apply would keep; without --allow-debug a debug lockfile cannot be patched, so nothing is "kept" but it.
  const patch = debug ? undefined : patchPolicy(input.policy, {project: input.project, roleArn: input.roleArn, measurements: current, keepPrevious: input.keepPrevious, operations: input.operations, allowDebug: input.allowDebug})
  const kept = patch?.sets.filter((s) => !s.current).map((s) => s.set) ?? []
  const report = analyzeExposure(input.policy, {project: input.project, roleArn: input.roleArn, current, kept, keyArn: input.keyArn, allowDebug: input.allowDebug})
  const warning = input.strict ? 'error' : 'warning'
  for (const e of report.exposures) {
    const severity = e.kind === 'unconditioned-access' || e.kind === 'debug-pin' ? 'error' : warning
    findings.push({severity, kind: e.kind, sid: e.sid, message: e.message, fix: e.fix, ...(e.owned ? {} : {proposed: e.proposed})})
  }
  const grants = input.grants === undefined ? [] : grantExposures(input.grants.grants, {roleArn: input.roleArn, keyArn: input.keyArn})
  for (const e of grants) findings.push({severity: 'error', kind: e.kind, sid: null, message: e.message, fix: e.fix})
  if (input.grants !== undefined && !input.grants.complete) {
    findings.push({severity: warning, kind: 'grants-unread', message: `The key has more grants than the check reads (${input.grants.grants.length}): a grant to the host role may be among the rest.`, fix: 'Retire or revoke grants that are no longer used.'})
  }
  if (patch && input.policy.Statement.some((s) => isOwned(s, input.project))) {
    const ownedNow = JSON.stringify(input.policy.Statement.filter((s) => isOwned(s, input.project)))
    const ownedThen = JSON.stringify(patch.policy.Statement.filter((s) => isOwned(s, input.project)))
    if (ownedNow !== ownedThen && findings.length === 0) {
      findings.push({severity: warning, kind: 'outdated-statements', message: "nle's statements differ from what `nle policy apply` writes for this config (role, operations or rollout window changed).", fix: 'Run `nle policy apply` to see the diff.'})
    }
  }
  findings.sort((a, b) => PRIORITY.indexOf(a.kind) - PRIORITY.indexOf(b.kind))
  const errors = findings.some((f) => f.severity === 'error')
  const top = findings[0]
  return {
    verdict: top === undefined ? 'ok' : VERDICT[top.kind],
    headline: headline(top, current),
    exitCode: errors ? 1 : findings.length > 0 ? 2 : 0,
    current,
    operations,
    sets: report.sets,
    findings,
    exposures: [...report.exposures, ...grants],
  }
}

/** Escape a GitHub Actions workflow-command message. */
export function escapeAnnotation(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')
}

function escapeProperty(text: string): string {
  return escapeAnnotation(text).replace(/:/g, '%3A').replace(/,/g, '%2C')
}

export type CheckFormat = 'text' | 'json' | 'github'

/** An input error (the policy is not a key policy, a config is missing) as a GitHub ::error annotation; the CLI still prints the error and exits with its code. */
export function formatInputError(error: {code: string; message: string; hint?: string}, options: {file?: string} = {}): string {
  const file = options.file ? `,file=${escapeProperty(options.file)}` : ''
  return `::error title=${escapeProperty(`nle policy check: ${error.code}`)}${file}::${escapeAnnotation(error.hint ? `${error.message} ${error.hint}` : error.message)}\n`
}

/** Render a report. `file` (a policy file path) is attached to GitHub annotations. */
export function formatCheck(report: CheckReport, format: CheckFormat, options: {file?: string} = {}): string {
  if (format === 'json') return JSON.stringify(report, null, 2) + '\n'
  const summary = report.headline
  if (format === 'github') {
    const file = options.file ? `,file=${escapeProperty(options.file)}` : ''
    const lines = report.findings.map((f) => `::${f.severity} title=${escapeProperty(`nle policy check: ${f.kind}`)}${file}::${escapeAnnotation(f.fix ? `${f.message} Fix: ${f.fix}` : f.message)}`)
    if (report.verdict === 'ok') lines.push(`::notice title=nle policy check::${escapeAnnotation(summary)}`)
    else lines.push(summary)
    return lines.join('\n') + '\n'
  }
  const lines = [summary]
  for (const s of report.sets) lines.push(`  ${s.status.padEnd(8)} ${s.sid ?? `#${s.index}`}  ${short(s.set)}${s.set.PCR8 ? ' (signed)' : ''}  ${s.actions.join(', ')}`)
  for (const f of report.findings) {
    lines.push(`${f.severity === 'error' ? 'error' : 'warning'}: ${f.message}`)
    if (f.fix) lines.push(`  fix: ${f.fix}`)
    if (f.proposed) lines.push(`  proposed statement: ${JSON.stringify(f.proposed)}`)
  }
  return lines.join('\n') + '\n'
}
