/**
 * What `nle policy show|apply|check` do, without any CLI: read the config and lockfile, read the
 * key policy (a live key through ./aws.ts, or a JSON file), patch / check it, write it back.
 *
 * A sealed model (model.sealed, docs/kms.md) is unsealed by the enclave with kms:Decrypt of its
 * data key. On the project key (no kms.modelKeyId) nle's statements then admit Decrypt whatever
 * kms.operations says; a separate model key (kms.modelKeyId) gets its own nle-owned statements,
 * Decrypt only, the same measurement sets, and is read, patched, written and checked with the
 * project key — two documents, one verdict.
 */
import {readFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {loadConfig} from '../config/load.js'
import {writeFileAtomic} from '../files.js'
import {readLockfile} from '../lockfile.js'
import {type AwsOptions, type KeyGrant, awsClients, callerIdentity, describeKey, getKeyPolicy, getRole, listGrants, putKeyPolicy} from './aws.js'
import {type CheckReport, type KeyRef, checkPolicy, combineChecks} from './check.js'
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
  /** Overrides kms.modelKeyId. */
  modelKeyId?: string
  /** Overrides kms.region. */
  region?: string
}

export type KeyPurpose = KeyRef['purpose']

/** What the enclave does with a separate model key: Decrypt of the sealed model's data key, nothing else. */
export const MODEL_KEY_OPERATIONS: readonly KmsOperation[] = ['Decrypt']

export interface PolicyInputs {
  project: string
  roleArn: string | undefined
  keyId: string | undefined
  /** A separate key that seals the model (kms.modelKeyId); undefined when the project key does (or nothing is sealed). */
  modelKeyId: string | undefined
  /** model.sealed: the enclave unseals the model with kms:Decrypt at start. */
  sealed: boolean
  region: string | undefined
  keepPrevious: number
  /** kms.operations as configured (see projectOperations for what the project key's statements admit). */
  operations: KmsOperation[]
  lockfile: string
  measurements: MeasurementSet | undefined
  /** The earlier builds the lockfile records (`previous`, newest first; [] when it has none or was not read): the only other sets nle's statements may keep. */
  previous: MeasurementSet[]
}

/**
 * What nle's statements on the project key admit: kms.operations, plus Decrypt when the project
 * key also seals the model (model.sealed without a separate key, or a model key that turns out to
 * be the project key under another name).
 */
export function projectOperations(inputs: Pick<PolicyInputs, 'operations' | 'sealed' | 'modelKeyId'>, modelKeyIsProjectKey = false): KmsOperation[] {
  const unseals = modelKeyIsProjectKey || (inputs.sealed && inputs.modelKeyId === undefined)
  return [...new Set<KmsOperation>([...inputs.operations, ...(unseals ? MODEL_KEY_OPERATIONS : [])])]
}

/** Config + lockfile. The lockfile is optional here (show works without it); commands that need it call requireMeasurements. */
export async function loadPolicyInputs(options: PolicyInputOptions, needLockfile: boolean): Promise<PolicyInputs> {
  const {config, dir} = await loadConfig(options.configFile)
  const lockfile = resolve(dir, options.lockfile ?? config.build.lockfile)
  let measurements: MeasurementSet | undefined
  let previous: MeasurementSet[] = []
  try {
    const lock = await readLockfile(lockfile)
    measurements = lock.measurements
    previous = (lock.previous ?? []).map(({PCR0, PCR1, PCR2, PCR8}) => ({PCR0, PCR1, PCR2, ...(PCR8 === undefined ? {} : {PCR8})}))
  } catch (error) {
    if (needLockfile) throw error
  }
  const keyId = options.keyId ?? config.kms.keyId
  const modelKeyId = options.modelKeyId ?? config.kms.modelKeyId
  return {
    project: config.name,
    roleArn: options.roleArn ?? config.kms.hostRoleArn,
    keyId,
    // The same id as the project key's is the project key.
    modelKeyId: modelKeyId === keyId ? undefined : modelKeyId,
    sealed: config.model.sealed,
    region: options.region ?? config.kms.region,
    keepPrevious: config.kms.keepPrevious,
    operations: [...config.kms.operations],
    lockfile,
    measurements,
    previous,
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

/**
 * Where the policies come from: JSON files (the project key's, and with kms.modelKeyId the model
 * key's, `modelPath`), or the live keys.
 */
export type PolicySource = {kind: 'file'; path: string; modelPath?: string} | {kind: 'aws'; aws: AwsOptions}

export interface LoadedPolicy {
  text: string
  policy: KeyPolicy
  /** The key's ARN (live key only). */
  keyArn?: string
  /** The key's grants (live key only): grants are not in the policy and not bound by its conditions. */
  grants?: {grants: KeyGrant[]; complete: boolean}
  source: string
}

/** One key's policy with what nle's statements on it admit. */
export interface KeyTarget {
  key: KeyRef
  loaded: LoadedPolicy
  operations: KmsOperation[]
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

async function loadPolicyFile(path: string): Promise<LoadedPolicy> {
  const text = await readPolicyFile(path)
  return {text, policy: parsePolicy(text, path), source: path}
}

async function loadLiveKey(clients: ReturnType<typeof awsClients>, arn: string, grants = true): Promise<LoadedPolicy> {
  const text = await getKeyPolicy(clients, arn)
  const policy = parsePolicy(text, `the key policy of ${arn}`)
  return {text, policy, keyArn: arn, ...(grants ? {grants: await listGrants(clients, arn)} : {}), source: arn}
}

function modelFileMissing(inputs: PolicyInputs): never {
  throw policyError('POLICY_CONFIG_MISSING', `kms.modelKeyId names a separate model key (${inputs.modelKeyId}), but no policy file was given for it: both keys must be checked.`, {
    hint: 'Pass the model key\'s policy with --model-policy-file, or remove kms.modelKeyId if the project key seals the model.',
  })
}

/**
 * Every key nle's statements go on: the project key, and a separate model key when
 * kms.modelKeyId names one (on a live key: a different ARN; with files: a different path).
 */
export async function loadTargets(source: PolicySource, inputs: PolicyInputs, live: {clients?: ReturnType<typeof awsClients>; grants?: boolean} = {}): Promise<KeyTarget[]> {
  if (source.kind === 'file') {
    if (source.modelPath !== undefined && inputs.modelKeyId === undefined) {
      throw policyError('POLICY_CONFIG_MISSING', '--model-policy-file was given, but nle.yaml names no separate model key (kms.modelKeyId): the project key seals the model.', {
        hint: 'Set kms.modelKeyId in nle.yaml (or pass --model-key-id), or drop --model-policy-file.',
      })
    }
    const project = await loadPolicyFile(source.path)
    if (inputs.modelKeyId === undefined) return [{key: {purpose: 'project', source: project.source}, loaded: project, operations: projectOperations(inputs)}]
    if (source.modelPath === undefined) modelFileMissing(inputs)
    if (resolve(source.modelPath) === resolve(source.path)) return [{key: {purpose: 'project', source: project.source}, loaded: project, operations: projectOperations(inputs, true)}]
    const model = await loadPolicyFile(source.modelPath)
    return [
      {key: {purpose: 'project', source: project.source}, loaded: project, operations: projectOperations(inputs)},
      {key: {purpose: 'model', source: model.source}, loaded: model, operations: [...MODEL_KEY_OPERATIONS]},
    ]
  }
  const aws = live.clients ?? awsClients({region: inputs.region, ...source.aws})
  const grants = live.grants ?? true
  const projectKey = await describeKey(aws, requireKey(inputs))
  const modelKey = inputs.modelKeyId === undefined ? undefined : await describeKey(aws, inputs.modelKeyId)
  const project = await loadLiveKey(aws, projectKey.arn, grants)
  if (modelKey === undefined || modelKey.arn === projectKey.arn) {
    return [{key: {purpose: 'project', source: project.source}, loaded: project, operations: projectOperations(inputs, modelKey !== undefined)}]
  }
  const model = await loadLiveKey(aws, modelKey.arn, grants)
  return [
    {key: {purpose: 'project', source: project.source}, loaded: project, operations: projectOperations(inputs)},
    {key: {purpose: 'model', source: model.source}, loaded: model, operations: [...MODEL_KEY_OPERATIONS]},
  ]
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
  /** Which key this document is: the project key, or the separate model key. */
  key: KeyPurpose
  source: string
  project: string
  roleArn: string | null
  current: MeasurementSet | null
  statements: ShownStatement[]
  /** Every way the policy gives the host role plaintext (./exposure.ts), with the proposed fixes. */
  exposures: Exposure[]
}

/** The project key's document, and the model key's (same shape) when kms.modelKeyId names a separate key. */
export type ShowResult = ShowReport & {model: ShowReport | null}

const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)])

function showOne(target: KeyTarget, inputs: PolicyInputs): ShowReport {
  const {loaded} = target
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
      if (current) {
        kept = patchPolicy(loaded.policy, {project: inputs.project, roleArn: inputs.roleArn, measurements: current, keepPrevious: inputs.keepPrevious, recordedPrevious: inputs.previous, operations: target.operations, allowDebug: true})
          .sets.filter((s) => !s.current)
          .map((s) => s.set)
      }
    } catch {
      // show reports what it can: a config apply would refuse still shows the statements.
    }
    exposures = [
      ...analyzeExposure(loaded.policy, {project: inputs.project, roleArn: inputs.roleArn, current, kept, recorded: inputs.previous, keyArn: loaded.keyArn}).exposures,
      ...grantExposures(loaded.grants?.grants ?? [], {roleArn: inputs.roleArn, keyArn: loaded.keyArn}),
    ]
  }
  return {key: target.key.purpose, source: loaded.source, project: inputs.project, roleArn: inputs.roleArn ?? null, current, statements, exposures}
}

export async function showPolicy(source: PolicySource, options: PolicyInputOptions): Promise<ShowResult> {
  const inputs = await loadPolicyInputs(options, false)
  const [project, model] = await loadTargets(source, inputs)
  return {...showOne(project!, inputs), model: model ? showOne(model, inputs) : null}
}

// ---------------------------------------------------------------------------------------------
// apply

export interface ApplyOptions extends PolicyInputOptions {
  source: PolicySource
  /** Write the result (live key: PutKeyPolicy; file: in place). Without it nothing changes. */
  apply: boolean
  /** File mode: write the result here (implies writing). */
  out?: string
  /** File mode, separate model key: write its patched policy here (implies writing). */
  modelOut?: string
  allowDebug: boolean
  force: boolean
  /** File mode: the identity that will later put the policy, for the lockout check. */
  caller?: string
}

export interface ApplyReport {
  /** Which key this patch is for: the project key, or the separate model key. */
  key: KeyPurpose
  source: string
  changed: boolean
  written: string | null
  diff: string
  sets: PatchResult['sets']
  removed: MeasurementSet[]
  /** The same, per statement, with the reason (an nle statement pinning a set the lockfile does not record is dropped: `unrecorded`). */
  dropped: PatchResult['dropped']
  /** What the patched policy still gives the host role (foreign statements nle does not edit), with the proposed fixes. */
  exposures: Exposure[]
  lockout: LockoutReport | null
}

/** The project key's patch, and the model key's (same shape) when kms.modelKeyId names a separate key. */
export type ApplyResult = ApplyReport & {model: ApplyReport | null}

function refuseLockout(lockout: LockoutReport | null, force: boolean, key: KeyRef): void {
  if (lockout?.lost && !force) {
    throw policyError('POLICY_LOCKOUT', `The patched policy${key.purpose === 'model' ? ` of the model key ${key.source}` : ''} would no longer let ${lockout.caller} change the key policy (kms:PutKeyPolicy): you could lock yourself out of the key.`, {
      hint: 'Add a statement that keeps kms:PutKeyPolicy for an administrator, or pass --force if that is intended.',
      details: {caller: lockout.caller, key: key.source},
    })
  }
}

function patchedExposures(patch: PatchResult, options: {project: string; roleArn: string; allowDebug: boolean; recordedPrevious: readonly MeasurementSet[]}, keyArn: string | undefined): Exposure[] {
  const current = patch.sets.find((s) => s.current)!.set
  const kept = patch.sets.filter((s) => !s.current).map((s) => s.set)
  return analyzeExposure(patch.policy, {project: options.project, roleArn: options.roleArn, current, kept, recorded: options.recordedPrevious, keyArn, allowDebug: options.allowDebug}).exposures
}

interface Planned {
  target: KeyTarget
  patch: PatchResult
  lockout: LockoutReport | null
  next: string
}

export async function applyPolicy(options: ApplyOptions): Promise<ApplyResult> {
  const inputs = await loadPolicyInputs(options, true)
  const roleArn = requireRole(inputs)
  const measurements = requireMeasurements(inputs)
  const base = {project: inputs.project, roleArn, measurements, keepPrevious: inputs.keepPrevious, recordedPrevious: inputs.previous, allowDebug: options.allowDebug}
  const plan = (target: KeyTarget, caller: string | undefined): Planned => {
    const patch = patchPolicy(target.loaded.policy, {...base, operations: target.operations})
    const lockout = caller ? lockoutCheck(target.loaded.policy, patch.policy, caller, target.loaded.keyArn) : null
    return {target, patch, lockout, next: serializePolicy(patch.policy)}
  }
  // Every key is patched and checked before anything is written: a refusal on one writes neither.
  const finish = (p: Planned, written: string | null, diff: string): ApplyReport => ({
    key: p.target.key.purpose,
    source: p.target.loaded.source,
    changed: p.patch.changed,
    written,
    diff,
    sets: p.patch.sets,
    removed: p.patch.removed,
    dropped: p.patch.dropped,
    exposures: patchedExposures(p.patch, {...base, allowDebug: options.allowDebug}, p.target.loaded.keyArn),
    lockout: p.lockout,
  })

  if (options.source.kind === 'file') {
    const planned = (await loadTargets(options.source, inputs)).map((t) => plan(t, options.caller))
    for (const p of planned) refuseLockout(p.lockout, options.force, p.target.key)
    const reports: ApplyReport[] = []
    for (const p of planned) {
      const path = p.target.loaded.source
      const out = p.target.key.purpose === 'model' ? options.modelOut : options.out
      const target = out ?? (options.apply ? path : undefined)
      // Writing --out always happens (the file is a build artifact); in place only when it changes.
      const writes = target !== undefined && (out !== undefined || p.patch.changed)
      if (writes) await writePolicyFile(target, p.next)
      reports.push(finish(p, writes ? target : null, unifiedDiff(serializePolicy(p.target.loaded.policy), p.next, {from: `a/${path}`, to: `b/${out ?? path}`})))
    }
    return {...reports[0]!, model: reports[1] ?? null}
  }

  const clients = awsClients({region: inputs.region, ...options.source.aws})
  // apply reads no grants (it does not judge them; kms:ListGrants need not be the caller's).
  const targets = await loadTargets(options.source, inputs, {clients, grants: false})
  await getRole(clients, roleArn)
  const caller = await callerIdentity(clients)
  const planned = targets.map((t) => plan(t, caller.arn))
  for (const p of planned) refuseLockout(p.lockout, options.force, p.target.key)
  const reports: ApplyReport[] = []
  for (const p of planned) {
    const arn = p.target.loaded.keyArn!
    let written: string | null = null
    if (options.apply && p.patch.changed) {
      const again = await getKeyPolicy(clients, arn)
      if (again !== p.target.loaded.text) {
        const done = reports.filter((r) => r.written !== null).map((r) => r.written)
        throw policyError('POLICY_CHANGED_MEANWHILE', `The key policy of ${arn} changed while nle was preparing the patch; nothing was written to it${done.length > 0 ? ` (${done.join(', ')} was written)` : ''}.`, {
          hint: 'Someone else edited it: run `nle policy apply` again and review the new diff.',
        })
      }
      await putKeyPolicy(clients, arn, p.next)
      written = arn
    }
    const name = p.target.key.purpose === 'model' ? 'model-key-policy.json' : 'key-policy.json'
    reports.push(finish(p, written, unifiedDiff(serializePolicy(p.target.loaded.policy), p.next, {from: `a/${name}`, to: `b/${name}`})))
  }
  return {...reports[0]!, model: reports[1] ?? null}
}

// ---------------------------------------------------------------------------------------------
// check

export interface CheckOptions extends PolicyInputOptions {
  source: PolicySource
  strict: boolean
  allowDebug: boolean
}

/** One verdict over the project key and, with kms.modelKeyId, the model key (check.ts combineChecks). */
export async function runPolicyCheck(options: CheckOptions): Promise<CheckReport & {source: string}> {
  const inputs = await loadPolicyInputs(options, true)
  const roleArn = requireRole(inputs)
  const measurements = requireMeasurements(inputs)
  const targets = await loadTargets(options.source, inputs)
  const [first, ...rest] = targets.map((t) =>
    checkPolicy({
      policy: t.loaded.policy,
      key: t.key,
      project: inputs.project,
      roleArn,
      measurements,
      keepPrevious: inputs.keepPrevious,
      recordedPrevious: inputs.previous,
      operations: t.operations,
      allowDebug: options.allowDebug,
      strict: options.strict,
      keyArn: t.loaded.keyArn,
      grants: t.loaded.grants,
    }),
  )
  return {source: targets[0]!.loaded.source, ...combineChecks(first!, ...rest)}
}
