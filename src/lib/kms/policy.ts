/**
 * KMS key policies, pure: parse and validate, patch the statements nle owns, report grants that
 * bypass the PCR gate, check lockout safety, and describe what a policy admits.
 *
 * Ownership: a statement is nle's when its Sid is `nle-<project>-enclave-current` or
 * `nle-<project>-enclave-previous-<n>`. Every other statement is foreign and is carried over
 * untouched (same object content, same order, same Sids, unknown fields kept); nle's statements
 * take the place of the first one found, or go last.
 *
 * Rollouts keep one statement per measurement set (current first, then up to `keepPrevious`
 * earlier ones). Each statement pins PCR0, PCR1, PCR2 (and PCR8 for a signed EIF) with
 * `StringEqualsIgnoreCase` on single values: arrays per key would admit mixed combinations.
 *
 * A Sid is a name anyone who can write the policy can give: it makes a statement nle's to
 * rewrite, never a set trusted. An earlier set stays admitted only when the lockfile records it
 * as an earlier build (`previous` in nle.lock.json, `recordedPrevious` here); every other set an
 * nle statement pins is dropped (PatchResult.dropped says why).
 */
import {parseDocument} from 'yaml'

import {type RequestContextKeys, accountOf, evaluatePolicy, principalOf} from './evaluate.js'
import {policyError} from './errors.js'

export interface PolicyStatement {
  Sid?: string
  Effect: 'Allow' | 'Deny'
  Principal?: unknown
  NotPrincipal?: unknown
  Action?: string | string[]
  NotAction?: string | string[]
  Resource?: string | string[]
  NotResource?: string | string[]
  Condition?: Record<string, Record<string, unknown>>
  [key: string]: unknown
}

export interface KeyPolicy {
  Version?: string
  Id?: string
  Statement: PolicyStatement[]
  [key: string]: unknown
}

/** A measurement set as the lockfile stores it: 96 lowercase hex characters per PCR. */
export interface MeasurementSet {
  PCR0: string
  PCR1: string
  PCR2: string
  PCR8?: string
}

export const MEASUREMENT_KEYS = ['PCR0', 'PCR1', 'PCR2', 'PCR8'] as const

/**
 * Operations a Recipient condition can gate; without a Recipient they return plaintext.
 * (DeriveSharedSecret is left out: it needs an asymmetric key-agreement key, and nle's key is
 * symmetric — SYMMETRIC_DEFAULT, as Encrypt/Decrypt of the clients' data keys require.)
 */
export const RECIPIENT_OPERATIONS = ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyPair'] as const
/**
 * Operations that reach plaintext and can never carry a Recipient: ReEncryptFrom decrypts under
 * this key and re-encrypts under a key the caller picks; CreateGrant hands out operations that
 * key-policy conditions do not govern; PutKeyPolicy rewrites the policy.
 */
export const UNATTESTABLE_OPERATIONS = ['kms:ReEncryptFrom', 'kms:CreateGrant', 'kms:PutKeyPolicy'] as const
/** Every operation judged for host principals (./exposure.ts). */
export const JUDGED_OPERATIONS: readonly string[] = [...RECIPIENT_OPERATIONS, ...UNATTESTABLE_OPERATIONS]
export const RECIPIENT_KEY_PREFIX = 'kms:RecipientAttestation:'
export type KmsOperation = 'Decrypt' | 'GenerateDataKey' | 'GenerateRandom'

/** The largest key policy KMS accepts (bytes). */
export const MAX_POLICY_BYTES = 32 * 1024
const HEX_96 = /^[0-9a-fA-F]{96}$/

function invalid(message: string, details?: Record<string, unknown>): never {
  throw policyError('POLICY_INVALID', `Key policy: ${message}`, {
    hint: 'Fix the policy so that it is a KMS key policy: {"Version": "2012-10-17", "Statement": [{"Effect", "Principal", "Action", "Resource"}, …]}.',
    details,
  })
}

const STATEMENT_ELEMENTS = ['Sid', 'Effect', 'Principal', 'NotPrincipal', 'Action', 'NotAction', 'Resource', 'NotResource', 'Condition'] as const

const PRINCIPAL_TYPES = ['AWS', 'Service', 'Federated', 'CanonicalUser'] as const

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isStringOrStrings = (v: unknown): boolean => typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string'))

/** Validate a parsed value as a key policy (the shape KMS requires). Returns it typed. */
export function validatePolicy(value: unknown): KeyPolicy {
  if (!isObject(value)) invalid('the document is not a JSON object.')
  if (value.Version !== undefined && value.Version !== '2012-10-17' && value.Version !== '2008-10-17') invalid(`unknown Version ${JSON.stringify(value.Version)}.`)
  if (!Array.isArray(value.Statement)) invalid('"Statement" must be an array of statements.')
  if (value.Statement.length === 0) invalid('"Statement" is empty.')
  const sids = new Set<string>()
  value.Statement.forEach((s: unknown, i: number) => {
    const where = {statement: i}
    if (!isObject(s)) invalid(`statement ${i} is not an object.`, where)
    if (s.Sid !== undefined) {
      if (typeof s.Sid !== 'string') invalid(`statement ${i}: Sid must be a string.`, where)
      if (sids.has(s.Sid)) invalid(`statement ${i}: duplicate Sid ${JSON.stringify(s.Sid)}.`, where)
      sids.add(s.Sid)
    }
    // Element names are case-sensitive; a near miss ("condition") would be ignored here and is refused instead.
    for (const key of Object.keys(s)) {
      const known = STATEMENT_ELEMENTS.find((k) => k.toLowerCase() === key.toLowerCase())
      if (known !== undefined && known !== key) invalid(`statement ${i}: "${key}" is not "${known}" (policy element names are case-sensitive).`, where)
    }
    if (s.Effect !== 'Allow' && s.Effect !== 'Deny') invalid(`statement ${i}: Effect must be "Allow" or "Deny".`, where)
    if (('Action' in s) === ('NotAction' in s)) invalid(`statement ${i}: exactly one of Action and NotAction is required.`, where)
    if (!isStringOrStrings(s.Action ?? s.NotAction)) invalid(`statement ${i}: Action/NotAction must be a string or a non-empty array of strings.`, where)
    if (('Principal' in s) === ('NotPrincipal' in s)) invalid(`statement ${i}: exactly one of Principal and NotPrincipal is required in a key policy.`, where)
    const principal = s.Principal ?? s.NotPrincipal
    if (principal !== '*' && !isObject(principal)) invalid(`statement ${i}: Principal must be "*" or an object such as {"AWS": "<arn>"}.`, where)
    if (isObject(principal)) {
      for (const v of Object.values(principal)) if (!isStringOrStrings(v)) invalid(`statement ${i}: Principal values must be strings.`, where)
      for (const key of Object.keys(principal)) {
        const known = PRINCIPAL_TYPES.find((k) => k.toLowerCase() === key.toLowerCase())
        if (known !== undefined && known !== key) invalid(`statement ${i}: Principal type "${key}" is not "${known}" (case-sensitive).`, where)
      }
    }
    if ('Resource' in s && 'NotResource' in s) invalid(`statement ${i}: Resource and NotResource are exclusive.`, where)
    for (const k of ['Resource', 'NotResource'] as const) if (k in s && !isStringOrStrings(s[k])) invalid(`statement ${i}: ${k} must be a string or array of strings.`, where)
    if ('Condition' in s) {
      if (!isObject(s.Condition)) invalid(`statement ${i}: Condition must be an object.`, where)
      // Condition keys are case-insensitive: two spellings of one key (or of one operator) would be read differently by different parsers.
      const operators = new Set<string>()
      for (const [op, block] of Object.entries(s.Condition)) {
        if (!isObject(block)) invalid(`statement ${i}: Condition operator ${op} must map keys to values.`, where)
        if (operators.has(op.toLowerCase())) invalid(`statement ${i}: Condition operator ${op} appears twice.`, where)
        operators.add(op.toLowerCase())
        const keys = new Set<string>()
        for (const key of Object.keys(block)) {
          if (keys.has(key.toLowerCase())) invalid(`statement ${i}: Condition key ${key} appears twice under ${op} (keys are case-insensitive).`, where)
          keys.add(key.toLowerCase())
        }
        for (const v of Object.values(block)) {
          const ok = ['string', 'boolean', 'number'].includes(typeof v) || (Array.isArray(v) && v.every((x) => ['string', 'boolean', 'number'].includes(typeof x)))
          if (!ok) invalid(`statement ${i}: Condition values must be strings, numbers, booleans or arrays of them.`, where)
        }
      }
    }
  })
  return value as unknown as KeyPolicy
}

/** Parse a key policy's JSON text (GetKeyPolicy's `Policy`, or a file). */
export function parsePolicy(text: string, source = 'key policy'): KeyPolicy {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw policyError('POLICY_BAD_JSON', `${source} is not JSON: ${(error as Error).message}`, {
      hint: 'Pass the policy document itself (for Terraform/CloudFormation, the rendered JSON of the key policy).',
      cause: error,
    })
  }
  // JSON.parse keeps the last of duplicate keys; another parser (AWS's) may keep the first. A
  // policy that reads two ways is refused, not guessed at.
  const duplicate = parseDocument(text, {uniqueKeys: true}).errors.find((e) => e.code === 'DUPLICATE_KEY')
  if (duplicate) invalid(`duplicate key in the JSON (${duplicate.message.split('\n')[0]}).`, {source})
  // IAM's grammar also allows a single statement object; nle writes it back as a one-element array.
  if (isObject(value) && isObject(value.Statement)) value = {...value, Statement: [value.Statement]}
  return validatePolicy(value)
}

/** The canonical text nle writes: 2-space indentation and a trailing newline. Key order is kept. */
export function serializePolicy(policy: KeyPolicy): string {
  return JSON.stringify(policy, null, 2) + '\n'
}

// ---------------------------------------------------------------------------------------------
// Measurements and owned statements.

/** Normalize and check a measurement set (lowercase; 96 hex per PCR). Throws POLICY_BAD_MEASUREMENTS. */
export function normalizeMeasurements(value: MeasurementSet): MeasurementSet {
  const out: Record<string, string> = {}
  for (const key of MEASUREMENT_KEYS) {
    const v = (value as unknown as Record<string, unknown>)[key]
    if (v === undefined && key === 'PCR8') continue
    if (typeof v !== 'string' || !HEX_96.test(v)) {
      throw policyError('POLICY_BAD_MEASUREMENTS', `${key} must be 96 hex characters (SHA-384), got ${v === undefined ? 'nothing' : JSON.stringify(v)}.`, {
        hint: 'Take the measurements from nle.lock.json (nle build writes it).',
      })
    }
    out[key] = v.toLowerCase()
  }
  return out as unknown as MeasurementSet
}

/** A debug-mode enclave reports all-zero PCRs, whatever code it runs: a set whose PCR0 (the image) is zero admits it. */
export function isDebugSet(set: Pick<MeasurementSet, 'PCR0'>): boolean {
  return /^0+$/.test(set.PCR0)
}

export const measurementKey = (set: MeasurementSet): string => MEASUREMENT_KEYS.map((k) => set[k] ?? '').join(':')
export const sameSet = (a: MeasurementSet, b: MeasurementSet): boolean => measurementKey(a) === measurementKey(b)
/** The same image (PCR0..2), whether or not either pins the signer (PCR8). */
export const sameImage = (a: MeasurementSet, b: MeasurementSet): boolean => a.PCR0 === b.PCR0 && a.PCR1 === b.PCR1 && a.PCR2 === b.PCR2

export function ownedSidPrefix(project: string): string {
  return `nle-${project}-enclave`
}

export function ownedSid(project: string, position: number): string {
  return position === 0 ? `${ownedSidPrefix(project)}-current` : `${ownedSidPrefix(project)}-previous-${position}`
}

export function isOwned(statement: PolicyStatement, project: string): boolean {
  const prefix = ownedSidPrefix(project)
  return typeof statement.Sid === 'string' && (statement.Sid === `${prefix}-current` || new RegExp(`^${prefix.replace(/[-]/g, '\\-')}-previous-\\d+$`).test(statement.Sid))
}

/** The single-valued PCR conditions of a statement (StringEquals / StringEqualsIgnoreCase), as a measurement set; null when PCR0..2 are not all pinned to one value. */
export function conditionedSet(statement: PolicyStatement): MeasurementSet | null {
  const condition = statement.Condition
  if (!isObject(condition)) return null
  const found: Record<string, string> = {}
  for (const [op, block] of Object.entries(condition)) {
    if (op !== 'StringEqualsIgnoreCase' && op !== 'StringEquals') continue
    if (!isObject(block)) continue
    for (const [key, value] of Object.entries(block)) {
      const lower = key.toLowerCase()
      let name: string | undefined
      if (lower === `${RECIPIENT_KEY_PREFIX}imagesha384`.toLowerCase()) name = 'PCR0'
      else if (lower.startsWith(RECIPIENT_KEY_PREFIX.toLowerCase() + 'pcr')) name = `PCR${key.slice(RECIPIENT_KEY_PREFIX.length + 3)}`
      if (name === undefined || !(MEASUREMENT_KEYS as readonly string[]).includes(name)) continue
      const single = Array.isArray(value) ? (value.length === 1 ? value[0] : undefined) : value
      if (typeof single !== 'string' || !HEX_96.test(single)) return null
      if (found[name] !== undefined && found[name] !== single.toLowerCase()) return null
      found[name] = single.toLowerCase()
    }
  }
  if (!found.PCR0 || !found.PCR1 || !found.PCR2) return null
  return {PCR0: found.PCR0, PCR1: found.PCR1, PCR2: found.PCR2, ...(found.PCR8 ? {PCR8: found.PCR8} : {})}
}

export interface OwnedStatementSpec {
  sid: string
  set: MeasurementSet
  roleArn: string
  operations: readonly KmsOperation[]
}

/** The statement nle writes for one measurement set. */
export function ownedStatement(spec: OwnedStatementSpec): PolicyStatement {
  const pins: Record<string, string> = {}
  for (const key of MEASUREMENT_KEYS) if (spec.set[key] !== undefined) pins[`${RECIPIENT_KEY_PREFIX}${key}`] = spec.set[key]
  return {
    Sid: spec.sid,
    Effect: 'Allow',
    Principal: {AWS: spec.roleArn},
    Action: [...new Set(spec.operations)].map((op) => `kms:${op}`),
    Resource: '*',
    Condition: {StringEqualsIgnoreCase: pins},
  }
}

// ---------------------------------------------------------------------------------------------
// What a policy admits (for what a host principal can reach in other ways, see ./exposure.ts).

/** Whether the policy (Deny statements included) lets the role run `operation` with an enclave measuring `set`. */
export function admits(policy: KeyPolicy, options: {roleArn: string; keyArn?: string; set: MeasurementSet; operation: KmsOperation; extraKeys?: RequestContextKeys}): boolean {
  const keys: RequestContextKeys = {...options.extraKeys}
  const pcrs: Record<string, string> = {PCR0: options.set.PCR0, PCR1: options.set.PCR1, PCR2: options.set.PCR2, ...(options.set.PCR8 ? {PCR8: options.set.PCR8} : {})}
  for (const [k, v] of Object.entries(pcrs)) keys[`${RECIPIENT_KEY_PREFIX}${k}`] = v
  keys[`${RECIPIENT_KEY_PREFIX}ImageSha384`] = options.set.PCR0
  const account = accountOf(options.roleArn) ?? '000000000000'
  const decision = evaluatePolicy(
    policy,
    {principalArn: options.roleArn, action: `kms:${options.operation}`, resourceArn: options.keyArn ?? `arn:aws:kms:us-east-1:${account}:key/00000000-0000-0000-0000-000000000000`, keys},
    {accountRoot: 'ignore'},
  )
  return decision.decision === 'allow'
}

// ---------------------------------------------------------------------------------------------
// Lockout safety.

export interface LockoutReport {
  caller: string
  before: boolean
  after: boolean
  /** True when the patch would take away the caller's only kms:PutKeyPolicy path. */
  lost: boolean
}

export function canPutKeyPolicy(policy: KeyPolicy, callerArn: string, keyArn?: string): boolean {
  const principal = principalOf(callerArn)
  const account = accountOf(principal) ?? '000000000000'
  return (
    evaluatePolicy(policy, {principalArn: principal, action: 'kms:PutKeyPolicy', resourceArn: keyArn ?? `arn:aws:kms:us-east-1:${account}:key/00000000-0000-0000-0000-000000000000`}, {accountRoot: 'grant'}).decision === 'allow'
  )
}

export function lockoutCheck(before: KeyPolicy, after: KeyPolicy, callerArn: string, keyArn?: string): LockoutReport {
  const b = canPutKeyPolicy(before, callerArn, keyArn)
  const a = canPutKeyPolicy(after, callerArn, keyArn)
  return {caller: principalOf(callerArn), before: b, after: a, lost: b && !a}
}

// ---------------------------------------------------------------------------------------------
// The patch.

export interface PatchOptions {
  project: string
  roleArn: string
  measurements: MeasurementSet
  /** How many earlier measurement sets stay admitted (rollouts). */
  keepPrevious: number
  /**
   * The earlier builds the lockfile records (its `previous`, newest first): the only sets other
   * than `measurements` that nle's statements may keep admitting. Required: [] keeps none.
   */
  recordedPrevious: readonly MeasurementSet[]
  operations: readonly KmsOperation[]
  /** Admit all-zero (debug-mode) measurements. Development only. */
  allowDebug?: boolean
}

export interface PatchResult {
  policy: KeyPolicy
  /** The owned statements written, current first. */
  sets: {sid: string; set: MeasurementSet; current: boolean}[]
  /** Sets that were admitted by nle's statements and no longer are. */
  removed: MeasurementSet[]
  /** The same, per statement, with the reason. */
  dropped: DroppedSet[]
  changed: boolean
}

export type DropReason = 'unrecorded' | 'outside-window' | 'debug' | 'same-image'

/** A set an nle statement pinned that the patch no longer admits. */
export interface DroppedSet {
  sid: string
  set: MeasurementSet
  reason: DropReason
  /** The reason in words (`nle policy apply` prints it under the diff). */
  message: string
}

function dropMessage(reason: DropReason, keepPrevious: number): string {
  switch (reason) {
    case 'unrecorded':
      return 'not the current build nor an earlier build the lockfile records (previous in nle.lock.json): a Sid alone does not make a set trusted'
    case 'outside-window':
      return `an earlier build, but beyond kms.keepPrevious (${keepPrevious})`
    case 'debug':
      return 'all-zero PCR0: a debug-mode enclave, whatever code it runs'
    case 'same-image':
      return 'the current image, pinned by the current statement'
  }
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/
const PROJECT = /^[a-z0-9][a-z0-9-]{0,62}$/

/** Add or update nle's statements. Foreign statements are deep-copied, unchanged, in order. */
export function patchPolicy(policy: KeyPolicy, options: PatchOptions): PatchResult {
  if (!PROJECT.test(options.project)) throw policyError('POLICY_CONFIG_MISSING', `The project name ${JSON.stringify(options.project)} cannot name a statement.`, {hint: 'Set name in nle.yaml (lowercase letters, digits, dashes).'})
  if (!ROLE_ARN.test(options.roleArn)) {
    throw policyError('POLICY_CONFIG_MISSING', `The host role ${JSON.stringify(options.roleArn)} is not an IAM role ARN.`, {hint: 'Set kms.hostRoleArn in nle.yaml to arn:aws:iam::<account>:role/<name>.'})
  }
  if (!Number.isInteger(options.keepPrevious) || options.keepPrevious < 0) throw policyError('POLICY_CONFIG_MISSING', 'keepPrevious must be a non-negative integer.')
  if (options.operations.length === 0) throw policyError('POLICY_CONFIG_MISSING', 'No KMS operations to grant.', {hint: 'Set kms.operations in nle.yaml.'})
  const current = normalizeMeasurements(options.measurements)
  const allowDebug = options.allowDebug === true
  if (isDebugSet(current) && !allowDebug) {
    throw policyError('POLICY_DEBUG_PCRS', 'The measurements are all zero: that is what a debug-mode enclave reports, whatever code it runs.', {
      hint: 'Build without debug mode; to admit a debug enclave on a development key, pass --allow-debug.',
    })
  }
  const recorded: MeasurementSet[] = []
  for (const r of options.recordedPrevious.map(normalizeMeasurements)) if (!recorded.some((x) => sameSet(x, r))) recorded.push(r)
  const validated = validatePolicy(structuredClone(policy))
  const previous: {sid: string; set: MeasurementSet}[] = []
  let insertAt = -1
  const foreign: PolicyStatement[] = []
  for (const statement of validated.Statement) {
    if (isOwned(statement, options.project)) {
      if (insertAt === -1) insertAt = foreign.length
      const set = conditionedSet(statement)
      if (set !== null && !previous.some((p) => sameSet(p.set, set))) previous.push({sid: statement.Sid!, set})
    } else foreign.push(statement)
  }
  // The current image is admitted by the current statement only (a copy without its PCR8 pin would weaken it).
  const eligible = (s: MeasurementSet): boolean => !sameImage(s, current) && (allowDebug || !isDebugSet(s))
  // Kept: sets nle's statements admit now that the lockfile records, newest build first.
  const kept = recorded.filter((r) => eligible(r) && previous.some((p) => sameSet(p.set, r))).slice(0, options.keepPrevious)
  const sets = [current, ...kept].map((set, position) => ({sid: ownedSid(options.project, position), set, current: position === 0}))
  const owned = sets.map((s) => ownedStatement({sid: s.sid, set: s.set, roleArn: options.roleArn, operations: options.operations}))
  const statements = [...foreign]
  statements.splice(insertAt === -1 ? statements.length : insertAt, 0, ...owned)
  const patched: KeyPolicy = {...validated, Statement: statements}
  const dropped = previous
    .filter((p) => !sets.some((s) => sameSet(s.set, p.set)))
    .map((p): DroppedSet => {
      const reason: DropReason = sameImage(p.set, current) ? 'same-image' : !allowDebug && isDebugSet(p.set) ? 'debug' : recorded.some((r) => sameSet(r, p.set)) ? 'outside-window' : 'unrecorded'
      return {sid: p.sid, set: p.set, reason, message: dropMessage(reason, options.keepPrevious)}
    })
  return {
    policy: patched,
    sets,
    removed: dropped.map((d) => d.set),
    dropped,
    changed: serializePolicy(patched) !== serializePolicy(policy),
  }
}

/**
 * A fresh key policy for a new key: through IAM, the account's principals may do everything but
 * what reaches plaintext; those operations (but the attested ones) stay with every principal
 * except the host role, kept out by `aws:PrincipalArn` (IAM's advice over NotPrincipal) — so no
 * IAM policy can give the host ReEncryptFrom, CreateGrant, PutKeyPolicy or an unattested data key.
 * The attested operations go to the host role through nle's statements only.
 */
export function starterPolicy(account: string, options: Omit<PatchOptions, 'recordedPrevious'>): KeyPolicy {
  const attested = [...new Set(options.operations)].map((op) => `kms:${op}`)
  const base: KeyPolicy = {
    Version: '2012-10-17',
    Statement: [
      {Sid: 'Enable IAM policies except what reaches plaintext', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${account}:root`}, NotAction: [...JUDGED_OPERATIONS], Resource: '*'},
      {
        Sid: 'Administration, not for the enclave host',
        Effect: 'Allow',
        Principal: {AWS: `arn:aws:iam::${account}:root`},
        Action: JUDGED_OPERATIONS.filter((a) => !attested.includes(a)),
        Resource: '*',
        Condition: {ArnNotEquals: {'aws:PrincipalArn': options.roleArn}},
      },
    ],
  }
  // A new key has no earlier statements: nothing to keep.
  return patchPolicy(base, {...options, recordedPrevious: []}).policy
}
