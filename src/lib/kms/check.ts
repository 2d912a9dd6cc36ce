/**
 * The verdict of `nle policy check` (pure). Exit codes — documented in the README:
 *   0  the current measurements are admitted for every configured operation, and nothing else
 *      gives the host plaintext or admits another enclave;
 *   1  the host can reach plaintext without the attested enclave (unconditioned access to a
 *      decrypting operation, ReEncryptFrom, CreateGrant or PutKeyPolicy; a debug-mode pin; one
 *      of nle's statements pinning a set the lockfile does not record, unrecorded-measurements), or
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

/** Which key a finding is about: the project key (kms.keyId) or a separate model key (kms.modelKeyId), and where its policy came from (ARN or file). */
export interface KeyRef {
  purpose: 'project' | 'model'
  source: string
}

export interface CheckInput extends PatchOptions {
  policy: KeyPolicy
  /** The key judged (tags every finding, operation, set and exposure; a model key's messages name it). Default: the project key, source unnamed. */
  key?: KeyRef
  /** Warnings become errors (exit 1). */
  strict?: boolean
  keyArn?: string
  /** The key's grants (live key): `complete` false when they could not all be read. Absent for a policy file. */
  grants?: {grants: readonly GrantInfo[]; complete: boolean}
}

export type FindingKind = 'unconditioned-access' | 'debug-pin' | 'unrecorded-measurements' | 'not-admitted' | 'debug-measurements' | 'partial-pin' | 'stale-set' | 'grants-unread' | 'outdated-statements'

/** Most severe first: the report's headline names the first finding in this order. */
const PRIORITY: readonly FindingKind[] = ['unconditioned-access', 'debug-pin', 'unrecorded-measurements', 'debug-measurements', 'not-admitted', 'partial-pin', 'stale-set', 'grants-unread', 'outdated-statements']

export interface Finding {
  severity: 'error' | 'warning'
  kind: FindingKind
  message: string
  sid?: string | null
  fix?: string
  /** For a foreign statement: the replacement that closes the finding (null: remove it). */
  proposed?: Exposure['proposed']
  /** The key whose policy (or grants) this is about. */
  key?: KeyRef
}

export type CheckedSet = PinnedSet & {key?: KeyRef}

export interface CheckReport {
  /** unsafe: the host can reach plaintext without the attested enclave; drift: the current set is not admitted; partial / stale: see the warnings. */
  verdict: 'ok' | 'unsafe' | 'drift' | 'partial' | 'stale'
  /** The most severe finding, in words (the first line of the text report). */
  headline: string
  exitCode: 0 | 1 | 2
  current: MeasurementSet
  operations: {operation: KmsOperation; admitted: boolean; key?: KeyRef}[]
  sets: CheckedSet[]
  findings: Finding[]
  /** Every way the policy gives the host plaintext (the findings of kinds unconditioned-access, debug-pin, unrecorded-measurements, partial-pin, stale-set come from here). */
  exposures: (Exposure & {key?: KeyRef})[]
  /** The keys checked, project key first (one entry, or two with a separate model key). */
  keys?: KeyRef[]
}

const short = (set: MeasurementSet): string => `PCR0 ${set.PCR0.slice(0, 12)}…`

const VERDICT: Record<FindingKind, CheckReport['verdict']> = {
  'unconditioned-access': 'unsafe',
  'debug-pin': 'unsafe',
  'unrecorded-measurements': 'unsafe',
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
  'unrecorded-measurements': 'unrecorded measurements admitted',
  'debug-measurements': 'drift',
  'not-admitted': 'drift',
  'partial-pin': 'partial pin',
  'stale-set': 'stale',
  'grants-unread': 'grants not all read',
  'outdated-statements': 'outdated',
}

function headline(top: Finding | undefined, current: MeasurementSet, keys: readonly KeyRef[]): string {
  const model = keys.find((k) => k.purpose === 'model')
  if (top === undefined) return `ok: the current measurements (${short(current)}) are admitted${model ? ' on the project key and the model key' : ''}; nothing else gives the host plaintext.`
  if (top.kind === 'not-admitted' || top.kind === 'debug-measurements') return `drift: the current measurements are not admitted${top.key?.purpose === 'model' ? ` by the model key ${top.key.source}` : ''}.`
  return `${HEADLINE[top.kind]}: ${top.message}`
}

/** "Model key <source>: " before a model key's messages, so that every output names the key; nothing for the project key (its messages are as they always were). */
const keyPrefix = (key: KeyRef | undefined): string => (key?.purpose === 'model' ? `Model key ${key.source}: ` : '')

export function checkPolicy(input: CheckInput): CheckReport {
  const current = normalizeMeasurements(input.measurements)
  const findings: Finding[] = []
  const debug = isDebugSet(current) && input.allowDebug !== true
  const key = input.key
  const tag = key ? {key} : {}
  const pre = keyPrefix(key)
  if (debug) {
    findings.push({severity: 'error', kind: 'debug-measurements', ...tag, message: pre + 'The lockfile measurements are all zero (a debug-mode build); a key policy must not admit them.', fix: 'Build without debug mode, or pass --allow-debug on a development key.'})
  }
  const operations = [...new Set(input.operations)].map((operation) => ({operation, admitted: admits(input.policy, {roleArn: input.roleArn, keyArn: input.keyArn, set: current, operation}), ...tag}))
  for (const op of operations.filter((o) => !o.admitted)) {
    findings.push({
      severity: 'error',
      kind: 'not-admitted',
      ...tag,
      message: `${pre}Drift: the key policy does not let ${input.roleArn} call kms:${op.operation} from an enclave measuring ${short(current)} (the lockfile's measurements).`,
      fix: 'Run `nle policy apply --apply` (or `--policy-file` for a policy kept in Terraform/CloudFormation).',
    })
  }
  // What apply would keep; without --allow-debug a debug lockfile cannot be patched, so nothing is "kept" but it.
  const recorded = input.recordedPrevious.map(normalizeMeasurements)
  const patch = debug
    ? undefined
    : patchPolicy(input.policy, {project: input.project, roleArn: input.roleArn, measurements: current, keepPrevious: input.keepPrevious, recordedPrevious: recorded, operations: input.operations, allowDebug: input.allowDebug})
  const kept = patch?.sets.filter((s) => !s.current).map((s) => s.set) ?? []
  const report = analyzeExposure(input.policy, {project: input.project, roleArn: input.roleArn, current, kept, recorded, keyArn: input.keyArn, allowDebug: input.allowDebug})
  const warning = input.strict ? 'error' : 'warning'
  for (const e of report.exposures) {
    const severity = e.kind === 'unconditioned-access' || e.kind === 'debug-pin' || e.kind === 'unrecorded-measurements' ? 'error' : warning
    findings.push({severity, kind: e.kind, sid: e.sid, ...tag, message: pre + e.message, fix: e.fix, ...(e.owned ? {} : {proposed: e.proposed})})
  }
  const grants = input.grants === undefined ? [] : grantExposures(input.grants.grants, {roleArn: input.roleArn, keyArn: input.keyArn})
  for (const e of grants) findings.push({severity: 'error', kind: e.kind, sid: null, ...tag, message: pre + e.message, fix: e.fix})
  if (input.grants !== undefined && !input.grants.complete) {
    findings.push({severity: warning, kind: 'grants-unread', ...tag, message: `${pre}The key has more grants than the check reads (${input.grants.grants.length}): a grant to the host role may be among the rest.`, fix: 'Retire or revoke grants that are no longer used.'})
  }
  if (patch && input.policy.Statement.some((s) => isOwned(s, input.project))) {
    const ownedNow = JSON.stringify(input.policy.Statement.filter((s) => isOwned(s, input.project)))
    const ownedThen = JSON.stringify(patch.policy.Statement.filter((s) => isOwned(s, input.project)))
    if (ownedNow !== ownedThen && findings.length === 0) {
      findings.push({severity: warning, kind: 'outdated-statements', ...tag, message: pre + "nle's statements differ from what `nle policy apply` writes for this config (role, operations or rollout window changed).", fix: 'Run `nle policy apply` to see the diff.'})
    }
  }
  return verdictOf({current, operations, sets: report.sets.map((s) => ({...s, ...tag})), findings, exposures: [...report.exposures, ...grants].map((e) => ({...e, ...tag}))}, key ? [key] : [])
}

type Parts = Pick<CheckReport, 'current' | 'operations' | 'sets' | 'findings' | 'exposures'>

/** Verdict, headline and exit code from the findings (most severe first). */
function verdictOf(parts: Parts, keys: KeyRef[]): CheckReport {
  const findings = [...parts.findings].sort((a, b) => PRIORITY.indexOf(a.kind) - PRIORITY.indexOf(b.kind))
  const errors = findings.some((f) => f.severity === 'error')
  const top = findings[0]
  return {
    verdict: top === undefined ? 'ok' : VERDICT[top.kind],
    headline: headline(top, parts.current, keys),
    exitCode: errors ? 1 : findings.length > 0 ? 2 : 0,
    ...parts,
    findings,
    ...(keys.length > 0 ? {keys} : {}),
  }
}

/**
 * One verdict over the checks of several keys (the project key and a separate model key): the
 * same report shape as one key's, every operation, set, finding and exposure tagged with its key;
 * the worst finding of either key decides the verdict and the exit code.
 */
export function combineChecks(first: CheckReport, ...rest: CheckReport[]): CheckReport & {keys: KeyRef[]} {
  const reports = [first, ...rest]
  const keys = reports.flatMap((r) => r.keys ?? [])
  return verdictOf(
    {
      current: first.current,
      operations: reports.flatMap((r) => r.operations),
      sets: reports.flatMap((r) => r.sets),
      findings: reports.flatMap((r) => r.findings),
      exposures: reports.flatMap((r) => r.exposures),
    },
    keys,
  ) as CheckReport & {keys: KeyRef[]}
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

/** Render a report. `file` (a policy file path; `modelFile`, the model key's) is attached to GitHub annotations. */
export function formatCheck(report: CheckReport, format: CheckFormat, options: {file?: string; modelFile?: string} = {}): string {
  if (format === 'json') return JSON.stringify(report, null, 2) + '\n'
  const summary = report.headline
  if (format === 'github') {
    const fileOf = (f: Finding): string => {
      const path = f.key?.purpose === 'model' ? options.modelFile : options.file
      return path ? `,file=${escapeProperty(path)}` : ''
    }
    const lines = report.findings.map((f) => `::${f.severity} title=${escapeProperty(`nle policy check: ${f.kind}`)}${fileOf(f)}::${escapeAnnotation(f.fix ? `${f.message} Fix: ${f.fix}` : f.message)}`)
    if (report.verdict === 'ok') lines.push(`::notice title=nle policy check::${escapeAnnotation(summary)}`)
    else lines.push(summary)
    return lines.join('\n') + '\n'
  }
  const lines = [summary]
  const several = (report.keys?.length ?? 0) > 1
  for (const k of several ? report.keys! : [undefined]) {
    if (k) lines.push(`${k.purpose} key ${k.source}:`)
    for (const s of report.sets.filter((x) => k === undefined || x.key?.purpose === k.purpose)) lines.push(`  ${s.status.padEnd(8)} ${s.sid ?? `#${s.index}`}  ${short(s.set)}${s.set.PCR8 ? ' (signed)' : ''}  ${s.actions.join(', ')}`)
  }
  for (const f of report.findings) {
    lines.push(`${f.severity === 'error' ? 'error' : 'warning'}: ${f.message}`)
    if (f.fix) lines.push(`  fix: ${f.fix}`)
    if (f.proposed) lines.push(`  proposed statement: ${JSON.stringify(f.proposed)}`)
  }
  return lines.join('\n') + '\n'
}
