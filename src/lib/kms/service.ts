/**
 * What `nle policy show|apply|check` do, without any CLI: read the config and lockfile, read the
 * key policy (a live key through ./aws.ts, or a JSON file), patch / check it, write it back.
 */
import {readFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {loadConfig} from '../config/load.js'
import {writeFileAtomic} from '../files.js'
import {readLockfile} from '../lockfile.js'
import {type AwsOptions, type KeyGrant, awsClients, callerIdentity, describeKey, getKeyPolicy, getRole, listGrants, putKeyPolicy} from './aws.js'
import {type CheckReport, checkPolicy} from './check.js'
import {unifiedDiff} from '../diff.js'
import {policyError} from './errors.js'
import {type Exposure, analyzeExposure, grantExposures} from './exposure.js'
import {
  type KeyPolicy,
  type KmsOperation,
  type LockoutReport,
  type MeasurementSet,
  type PatchResult,
  conditionedSet,
  isOwned,
  lockoutCheck,
  parsePolicy,
  patchPolicy,
  sameSet,
  serializePolicy,
} from './policy.js'

export interface PolicyInputOptions {
  configFile: string
  /** Lockfile path; default: build.lockfile from the config (relative to nle.yaml). */
  lockfile?: string
  /** Overrides kms.hostRoleArn. */
  roleArn?: string
  /** Overrides kms.keyId. */
  keyId?: string
  /** Overrides kms.region. */
  region?: string
}

export interface PolicyInputs {
  project: string
  roleArn: string | undefined
  keyId: string | undefined
  region: string | undefined
  keepPrevious: number
  operations: KmsOperation[]
  lockfile: string
  measurements: MeasurementSet | undefined
}

/** Config + lockfile. The lockfile is optional here (show works without it); commands that need it call requireMeasurements. */
export async function loadPolicyInputs(options: PolicyInputOptions, needLockfile: boolean): Promise<PolicyInputs> {
  const {config, dir} = await loadConfig(options.configFile)
  const lockfile = resolve(dir, options.lockfile ?? config.build.lockfile)
  let measurements: MeasurementSet | undefined
  try {
    measurements = (await readLockfile(lockfile)).measurements
  } catch (error) {
    if (needLockfile) throw error
  }
  return {
    project: config.name,
    roleArn: options.roleArn ?? config.kms.hostRoleArn,
    keyId: options.keyId ?? config.kms.keyId,
    region: options.region ?? config.kms.region,
    keepPrevious: config.kms.keepPrevious,
    operations: [...config.kms.operations],
    lockfile,
    measurements,
  }
}

export function requireRole(inputs: PolicyInputs): string {
  if (!inputs.roleArn) {
    throw policyError('POLICY_CONFIG_MISSING', 'No host role: the key policy must name the IAM role the enclave host runs as.', {
      hint: 'Set kms.hostRoleArn in nle.yaml, or pass --role arn:aws:iam::<account>:role/<name>.',
    })
  }
  return inputs.roleArn
}

function requireMeasurements(inputs: PolicyInputs): MeasurementSet {
  if (!inputs.measurements) throw policyError('POLICY_CONFIG_MISSING', `No measurements: ${inputs.lockfile} was not read.`, {hint: 'Build the enclave image first; it writes the lockfile.'})
  return inputs.measurements
}

export type PolicySource = {kind: 'file'; path: string} | {kind: 'aws'; aws: AwsOptions}

export interface LoadedPolicy {
  text: string
  policy: KeyPolicy
  /** The key's ARN (live key only). */
  keyArn?: string
  /** The key's grants (live key only): grants are not in the policy and not bound by its conditions. */
  grants?: {grants: KeyGrant[]; complete: boolean}
  source: string
}

async function readPolicyFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    throw policyError('POLICY_FILE_IO', `Cannot read the policy file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {hint: 'Pass the path of a JSON key policy.', cause: error})
  }
}

/** Write a policy file atomically (../files.ts). */
async function writePolicyFile(path: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(path, text)
  } catch (error) {
    throw policyError('POLICY_FILE_IO', `Cannot write ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {hint: `Check that ${dirname(path)} exists and is writable.`, cause: error})
  }
}

function requireKey(inputs: PolicyInputs): string {
  if (!inputs.keyId) throw policyError('POLICY_CONFIG_MISSING', 'No KMS key: set kms.keyId in nle.yaml or pass --key-id.', {hint: 'Or work on a JSON file with --policy-file.'})
  return inputs.keyId
}

export async function loadPolicy(source: PolicySource, inputs: PolicyInputs): Promise<LoadedPolicy> {
  if (source.kind === 'file') {
    const text = await readPolicyFile(source.path)
    return {text, policy: parsePolicy(text, source.path), source: source.path}
  }
  const clients = awsClients({region: inputs.region, ...source.aws})
  const key = await describeKey(clients, requireKey(inputs))
  const text = await getKeyPolicy(clients, key.arn)
  const policy = parsePolicy(text, `the key policy of ${key.arn}`)
  return {text, policy, keyArn: key.arn, grants: await listGrants(clients, key.arn), source: key.arn}
}

// ---------------------------------------------------------------------------------------------
// show

export interface ShownStatement {
  index: number
  sid: string | null
  effect: 'Allow' | 'Deny'
  owned: boolean
  principals: string[]
  actions: string[]
  notAction: boolean
  /** The measurement set the statement pins, if it pins PCR0..2 to single values. */
  measurements: MeasurementSet | null
  /** current = the lockfile's set; other = another set. */
  status: 'current' | 'other' | null
}

export interface ShowReport {
  source: string
  project: string
  roleArn: string | null
  current: MeasurementSet | null
  statements: ShownStatement[]
  /** Every way the policy gives the host role plaintext (./exposure.ts), with the proposed fixes. */
  exposures: Exposure[]
}

const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)])

export async function showPolicy(source: PolicySource, options: PolicyInputOptions): Promise<ShowReport> {
  const inputs = await loadPolicyInputs(options, false)
  const loaded = await loadPolicy(source, inputs)
  const current = inputs.measurements ?? null
  const statements = loaded.policy.Statement.map((s, index): ShownStatement => {
    const set = conditionedSet(s)
    const principal = s.Principal ?? s.NotPrincipal
    const principals = principal === '*' ? ['*'] : typeof principal === 'object' && principal !== null ? Object.entries(principal as Record<string, unknown>).flatMap(([k, v]) => list(v).map((x) => (k === 'AWS' ? x : `${k}:${x}`))) : []
    return {
      index,
      sid: s.Sid ?? null,
      effect: s.Effect,
      owned: isOwned(s, inputs.project),
      principals: 'NotPrincipal' in s ? principals.map((p) => `not ${p}`) : principals,
      actions: list(s.Action ?? s.NotAction),
      notAction: 'NotAction' in s,
      measurements: set,
      status: set === null ? null : current !== null && sameSet(set, current) ? 'current' : 'other',
    }
  })
  let exposures: Exposure[] = []
  if (inputs.roleArn) {
    let kept: MeasurementSet[] = []
    try {
      if (current) kept = patchPolicy(loaded.policy, {project: inputs.project, roleArn: inputs.roleArn, measurements: current, keepPrevious: inputs.keepPrevious, operations: inputs.operations, allowDebug: true}).sets.filter((s) => !s.current).map((s) => s.set)
    } catch {
      // show reports what it can: a config apply would refuse still shows the statements.
    }
    exposures = [
      ...analyzeExposure(loaded.policy, {project: inputs.project, roleArn: inputs.roleArn, current, kept, keyArn: loaded.keyArn}).exposures,
      ...grantExposures(loaded.grants?.grants ?? [], {roleArn: inputs.roleArn, keyArn: loaded.keyArn}),
    ]
  }
  return {source: loaded.source, project: inputs.project, roleArn: inputs.roleArn ?? null, current, statements, exposures}
}

// ---------------------------------------------------------------------------------------------
// apply

export interface ApplyOptions extends PolicyInputOptions {
  source: PolicySource
  /** Write the result (live key: PutKeyPolicy; file: in place). Without it nothing changes. */
  apply: boolean
  /** File mode: write the result here (implies writing). */
  out?: string
  allowDebug: boolean
  force: boolean
  /** File mode: the identity that will later put the policy, for the lockout check. */
  caller?: string
}

export interface ApplyReport {
  source: string
  changed: boolean
  written: string | null
  diff: string
  sets: PatchResult['sets']
  removed: MeasurementSet[]
  /** What the patched policy still gives the host role (foreign statements nle does not edit), with the proposed fixes. */
  exposures: Exposure[]
  lockout: LockoutReport | null
}

function refuseLockout(lockout: LockoutReport | null, force: boolean): void {
  if (lockout?.lost && !force) {
    throw policyError('POLICY_LOCKOUT', `The patched policy would no longer let ${lockout.caller} change the key policy (kms:PutKeyPolicy): you could lock yourself out of the key.`, {
      hint: 'Add a statement that keeps kms:PutKeyPolicy for an administrator, or pass --force if that is intended.',
      details: {caller: lockout.caller},
    })
  }
}

function patchedExposures(patch: PatchResult, options: {project: string; roleArn: string; allowDebug: boolean}, keyArn: string | undefined): Exposure[] {
  const current = patch.sets.find((s) => s.current)!.set
  const kept = patch.sets.filter((s) => !s.current).map((s) => s.set)
  return analyzeExposure(patch.policy, {project: options.project, roleArn: options.roleArn, current, kept, keyArn, allowDebug: options.allowDebug}).exposures
}

export async function applyPolicy(options: ApplyOptions): Promise<ApplyReport> {
  const inputs = await loadPolicyInputs(options, true)
  const roleArn = requireRole(inputs)
  const measurements = requireMeasurements(inputs)
  const patchOptions = {project: inputs.project, roleArn, measurements, keepPrevious: inputs.keepPrevious, operations: inputs.operations, allowDebug: options.allowDebug}

  if (options.source.kind === 'file') {
    const loaded = await loadPolicy(options.source, inputs)
    const patch = patchPolicy(loaded.policy, patchOptions)
    const lockout = options.caller ? lockoutCheck(loaded.policy, patch.policy, options.caller) : null
    refuseLockout(lockout, options.force)
    const text = serializePolicy(patch.policy)
    const target = options.out ?? (options.apply ? options.source.path : undefined)
    // Writing --out always happens (the file is a build artifact); in place only when it changes.
    if (target !== undefined && (options.out !== undefined || patch.changed)) await writePolicyFile(target, text)
    return {
      source: loaded.source,
      changed: patch.changed,
      written: target !== undefined && (options.out !== undefined || patch.changed) ? target : null,
      diff: unifiedDiff(serializePolicy(loaded.policy), text, {from: `a/${options.source.path}`, to: `b/${options.out ?? options.source.path}`}),
      sets: patch.sets,
      removed: patch.removed,
      exposures: patchedExposures(patch, patchOptions, undefined),
      lockout,
    }
  }

  const clients = awsClients({region: inputs.region, ...options.source.aws})
  const key = await describeKey(clients, requireKey(inputs))
  await getRole(clients, roleArn)
  const caller = await callerIdentity(clients)
  const text = await getKeyPolicy(clients, key.arn)
  const policy = parsePolicy(text, `the key policy of ${key.arn}`)
  const patch = patchPolicy(policy, patchOptions)
  const lockout = lockoutCheck(policy, patch.policy, caller.arn, key.arn)
  refuseLockout(lockout, options.force)
  const next = serializePolicy(patch.policy)
  let written: string | null = null
  if (options.apply && patch.changed) {
    const again = await getKeyPolicy(clients, key.arn)
    if (again !== text) {
      throw policyError('POLICY_CHANGED_MEANWHILE', `The key policy of ${key.arn} changed while nle was preparing the patch; nothing was written.`, {
        hint: 'Someone else edited it: run `nle policy apply` again and review the new diff.',
      })
    }
    await putKeyPolicy(clients, key.arn, next)
    written = key.arn
  }
  return {
    source: key.arn,
    changed: patch.changed,
    written,
    diff: unifiedDiff(serializePolicy(policy), next, {from: 'a/key-policy.json', to: 'b/key-policy.json'}),
    sets: patch.sets,
    removed: patch.removed,
    exposures: patchedExposures(patch, patchOptions, key.arn),
    lockout,
  }
}

// ---------------------------------------------------------------------------------------------
// check

export interface CheckOptions extends PolicyInputOptions {
  source: PolicySource
  strict: boolean
  allowDebug: boolean
}

export async function runPolicyCheck(options: CheckOptions): Promise<CheckReport & {source: string}> {
  const inputs = await loadPolicyInputs(options, true)
  const roleArn = requireRole(inputs)
  const loaded = await loadPolicy(options.source, inputs)
  const report = checkPolicy({
    policy: loaded.policy,
    project: inputs.project,
    roleArn,
    measurements: requireMeasurements(inputs),
    keepPrevious: inputs.keepPrevious,
    operations: inputs.operations,
    allowDebug: options.allowDebug,
    strict: options.strict,
    keyArn: loaded.keyArn,
    grants: loaded.grants,
  })
  return {source: loaded.source, ...report}
}
