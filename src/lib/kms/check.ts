/**
 * The drift verdict of `nle policy check` (pure). Exit codes — documented in the README:
 *   0  the current measurements are admitted for every configured operation, nothing stale;
 *   1  drift: the current measurements are not admitted (or are debug zeros without --allow-debug);
 *      also every warning below when `strict` is set;
 *   2  admitted, but the policy admits stale measurement sets, grants an attested operation
 *      without an attestation condition, or nle's statements differ from what `policy apply` writes.
 * (2 is also the CLI's usage-error code; a usage error prints `Error [USAGE]` and no report.)
 */
import {
  type AdmittedSet,
  type KeyPolicy,
  type KmsOperation,
  type MeasurementSet,
  admits,
  admittedSets,
  isDebugSet,
  isOwned,
  normalizeMeasurements,
  patchPolicy,
  sameSet,
} from './policy.js'

export interface CheckInput {
  policy: KeyPolicy
  project: string
  roleArn: string
  measurements: MeasurementSet
  keepPrevious: number
  operations: readonly KmsOperation[]
  allowDebug?: boolean
  /** Warnings become errors (exit 1). */
  strict?: boolean
  keyArn?: string
}

export type FindingKind = 'not-admitted' | 'debug-measurements' | 'stale-set' | 'unconditioned-grant' | 'outdated-statements'

export interface Finding {
  severity: 'error' | 'warning'
  kind: FindingKind
  message: string
  sid?: string | null
  fix?: string
}

export interface CheckedSet extends AdmittedSet {
  status: 'current' | 'previous' | 'stale'
}

export interface CheckReport {
  verdict: 'ok' | 'drift' | 'stale'
  exitCode: 0 | 1 | 2
  current: MeasurementSet
  operations: {operation: KmsOperation; admitted: boolean}[]
  sets: CheckedSet[]
  findings: Finding[]
}

const short = (set: MeasurementSet): string => `PCR0 ${set.PCR0.slice(0, 12)}…`

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
  const kept = patch?.sets.map((s) => s.set) ?? [current]
  const sets: CheckedSet[] = admittedSets(input.policy, input).map((s) => ({
    ...s,
    status: sameSet(s.set, current) ? 'current' : s.owned && kept.some((k) => sameSet(k, s.set)) ? 'previous' : 'stale',
  }))
  const severity = input.strict ? 'error' : 'warning'
  for (const s of sets.filter((x) => x.status === 'stale')) {
    findings.push({
      severity,
      kind: 'stale-set',
      sid: s.sid,
      message: `Statement ${s.sid ? JSON.stringify(s.sid) : `#${s.index}`} still admits an old measurement set (${short(s.set)}).`,
      fix: s.owned ? 'Run `nle policy apply --apply`: it keeps only the current and kms.keepPrevious earlier sets.' : 'Remove the statement from the policy (nle does not edit statements it does not own).',
    })
  }
  const unconditioned = patch?.unconditioned ?? []
  for (const u of unconditioned) findings.push({severity, kind: 'unconditioned-grant', sid: u.sid, message: u.message, fix: u.fix})
  if (patch && input.policy.Statement.some((s) => isOwned(s, input.project))) {
    const ownedNow = JSON.stringify(input.policy.Statement.filter((s) => isOwned(s, input.project)))
    const ownedThen = JSON.stringify(patch.policy.Statement.filter((s) => isOwned(s, input.project)))
    if (ownedNow !== ownedThen && findings.every((f) => f.severity !== 'error')) {
      findings.push({severity, kind: 'outdated-statements', message: "nle's statements differ from what `nle policy apply` writes for this config (role, operations or rollout window changed).", fix: 'Run `nle policy apply` to see the diff.'})
    }
  }
  const errors = findings.some((f) => f.severity === 'error')
  const warnings = findings.some((f) => f.severity === 'warning')
  const drift = findings.some((f) => f.kind === 'not-admitted' || f.kind === 'debug-measurements')
  return {
    verdict: drift ? 'drift' : errors || warnings ? 'stale' : 'ok',
    exitCode: errors ? 1 : warnings ? 2 : 0,
    current,
    operations,
    sets,
    findings,
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

/** Render a report. `file` (a policy file path) is attached to GitHub annotations. */
export function formatCheck(report: CheckReport, format: CheckFormat, options: {file?: string} = {}): string {
  if (format === 'json') return JSON.stringify(report, null, 2) + '\n'
  const summary =
    report.verdict === 'ok'
      ? `ok: the current measurements (${short(report.current)}) are admitted; nothing stale.`
      : report.verdict === 'drift'
        ? 'drift: the current measurements are not admitted.'
        : 'stale: the current measurements are admitted, but see the warnings.'
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
  }
  return lines.join('\n') + '\n'
}
