/**
 * Every way a key policy lets the host obtain plaintext (pure). The host is the configured role
 * and its assumed-role sessions, however a statement reaches it: naming the role or a session,
 * `*` / `{"AWS": "*"}`, the account (delegation to IAM, whose policies nle cannot read — so it
 * counts), `NotPrincipal`, or `aws:PrincipalArn` / `aws:PrincipalAccount` conditions.
 *
 * What counts as reaching plaintext (AWS KMS Developer Guide: "Condition keys for Nitro
 * Enclaves", "Controlling access to grants", the ReEncrypt API reference):
 * - Decrypt, GenerateDataKey, GenerateDataKeyPair return the plaintext unless
 *   the request carries a `Recipient`; the `kms:RecipientAttestation:*` keys exist only then. A
 *   statement is safe for them only if every attestation it admits pins PCR0, PCR1, PCR2 (and
 *   PCR8 when nle pins it) to the lockfile's current set or a set `apply` keeps. A debug-mode
 *   enclave reports all-zero PCRs whatever it runs, and the host can read its memory. A set that
 *   one of nle's own statements (by Sid) pins is trusted only if the lockfile records it (the
 *   current build or one in `previous`): anyone who can write the policy can choose a Sid.
 * - ReEncryptFrom decrypts under this key inside KMS and re-encrypts under a key the caller
 *   picks; CreateGrant hands out operations that key-policy conditions do not govern (a grant
 *   has only encryption-context constraints); PutKeyPolicy rewrites this policy. None of them
 *   can carry a Recipient, so any access to them is a bypass.
 *
 * The host picks everything else in its requests (encryption context, grant parameters, source
 * IP, …): a condition on such a key is taken as satisfiable for an Allow and as avoidable for a
 * Deny. An operator nle does not implement is treated the same way. What the host cannot pick
 * — its identity, and the measurements of the enclave whose attestation it presents — is
 * evaluated with IAM's semantics (./evaluate.ts).
 */
import {type KeyIndex, type RequestContextKeys, evaluateCondition, identityKeys, indexKeys, matchesGlob, parseOperator, principalValueMatch, statementActionMatch, statementPrincipalMatch, statementResourceMatch} from './evaluate.js'
import {type KeyPolicy, type MeasurementSet, type PolicyStatement, JUDGED_OPERATIONS, RECIPIENT_KEY_PREFIX, RECIPIENT_OPERATIONS, UNATTESTABLE_OPERATIONS, isDebugSet, isOwned, sameImage, sameSet} from './policy.js'

export {JUDGED_OPERATIONS, RECIPIENT_OPERATIONS, UNATTESTABLE_OPERATIONS}

export type ExposureKind = 'unconditioned-access' | 'debug-pin' | 'unrecorded-measurements' | 'partial-pin' | 'stale-set'
/** How a statement reaches the host: naming the role (or a session), the account (through IAM), or everyone. */
export type HostPath = 'role' | 'account' | 'everyone'

export interface Exposure {
  kind: ExposureKind
  index: number
  sid: string | null
  owned: boolean
  via: HostPath
  /** The judged operations concerned. */
  actions: string[]
  /** For stale-set, unrecorded-measurements and debug-pin: the measurement set concerned (missing keys = not pinned). */
  set?: Partial<MeasurementSet>
  message: string
  /** For a foreign statement: the replacement that closes this (null: remove the statement). Owned statements are fixed by `apply`. */
  proposed: PolicyStatement | null
  fix: string
}

export interface PinnedSet {
  index: number
  sid: string | null
  owned: boolean
  set: MeasurementSet
  actions: string[]
  /** unrecorded: pinned by an nle statement, but neither the current build nor one the lockfile records. */
  status: 'current' | 'previous' | 'stale' | 'debug' | 'unrecorded'
}

export interface ExposureContext {
  project: string
  roleArn: string
  /** The lockfile's set (null: unknown, then nothing is judged current or stale). */
  current: MeasurementSet | null
  /** The earlier sets `apply` keeps (kms.keepPrevious). */
  kept: readonly MeasurementSet[]
  /** Every earlier build the lockfile records (its `previous`): what else nle's statements may pin without being forged. */
  recorded: readonly MeasurementSet[]
  /** The key's ARN when known (a statement for another resource then does not count). */
  keyArn?: string
  allowDebug?: boolean
}

export interface ExposureReport {
  exposures: Exposure[]
  /** Every fully pinned measurement set a statement admits for the host, judged. */
  sets: PinnedSet[]
}

const PINNED = ['PCR0', 'PCR1', 'PCR2', 'PCR8'] as const
type Pin = (typeof PINNED)[number]
const HEX_96 = /^[0-9a-f]{96}$/
const ZERO = '0'.repeat(96)
const MAX_COMBINATIONS = 256
const IDENTITY_KEYS = new Set(['aws:principalarn', 'aws:principalaccount', 'kms:calleraccount', 'aws:principaltype', 'aws:principalisawsservice'])
const RECIPIENT_PREFIX = RECIPIENT_KEY_PREFIX.toLowerCase()

/** The measurement a Recipient key names: `PCR<n>`, with ImageSha384 = PCR0; undefined for other keys. */
function measurementOf(key: string): string | undefined {
  const lower = key.toLowerCase()
  if (!lower.startsWith(RECIPIENT_PREFIX)) return undefined
  const rest = lower.slice(RECIPIENT_PREFIX.length)
  if (rest === 'imagesha384') return 'PCR0'
  const m = /^pcr(0|[1-9]\d?)$/.exec(rest)
  return m ? `PCR${m[1]}` : undefined
}

const isRecipientKey = (key: string): boolean => key.toLowerCase().startsWith(RECIPIENT_PREFIX)
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v])
const label = (s: {sid: string | null; index: number}): string => (s.sid ? JSON.stringify(s.sid) : `#${s.index}`)
const short = (set: Partial<MeasurementSet>): string => PINNED.filter((k) => set[k] !== undefined).map((k) => `${k} ${set[k]!.slice(0, 12)}…`).join(', ')

/**
 * The values a statement's condition requires each measurement to equal (a finite set), from
 * positive equality operators; patterns, negations, ForAllValues and Null do not pin (they are
 * still evaluated, per candidate, by the evaluator). StringEquals compares case-sensitively with
 * KMS's lowercase hex, so an uppercase value can never match and is dropped.
 */
function pinsOf(statement: PolicyStatement): Map<string, Set<string>> {
  const pins = new Map<string, Set<string>>()
  const condition = statement.Condition
  if (typeof condition !== 'object' || condition === null) return pins
  for (const [operator, block] of Object.entries(condition)) {
    const op = parseOperator(operator)
    if (op === null || op.negated || op.set === 'all' || !['StringEquals', 'StringEqualsIgnoreCase', 'StringLike'].includes(op.base)) continue
    if (typeof block !== 'object' || block === null) continue
    for (const [key, raw] of Object.entries(block)) {
      const m = measurementOf(key)
      if (m === undefined) continue
      const values = asList(raw).map(String)
      if ((op.base === 'StringLike' && values.some((v) => /[*?]/.test(v))) || values.some((v) => v.includes('${'))) continue
      const admitted = new Set(values.filter((v) => HEX_96.test(op.base === 'StringEqualsIgnoreCase' ? v.toLowerCase() : v)).map((v) => v.toLowerCase()))
      const before = pins.get(m)
      pins.set(m, before === undefined ? admitted : new Set([...before].filter((v) => admitted.has(v))))
    }
  }
  return pins
}

interface Judge {
  policy: KeyPolicy
  ctx: ExposureContext
  identity: RequestContextKeys
  /** The host's request without a Recipient, and from a debug-mode enclave, indexed once. */
  plain: KeyIndex
  debug: KeyIndex
}

function recipientKeys(values: Partial<Record<string, string>>): RequestContextKeys {
  const keys: RequestContextKeys = {}
  for (const [m, v] of Object.entries(values)) if (v !== undefined) keys[`${RECIPIENT_KEY_PREFIX}${m}`] = v
  if (values.PCR0 !== undefined) keys[`${RECIPIENT_KEY_PREFIX}ImageSha384`] = values.PCR0
  return keys
}

/** A debug-mode enclave's attestation: every PCR zero. */
const DEBUG_KEYS: RequestContextKeys = recipientKeys(Object.fromEntries(Array.from({length: 32}, (_, i) => [`PCR${i}`, ZERO])))

const FREE_NONE = freeFor('none')
const FREE_ALL = freeFor('all')

/** Free keys for a state: everything but the identity, and the Recipient keys the state does not fix. */
function freeFor(fixedRecipient: 'none' | 'all' | Set<string>): (key: string) => boolean {
  return (key) => {
    const lower = key.toLowerCase()
    if (IDENTITY_KEYS.has(lower)) return false
    if (!isRecipientKey(key)) return true
    if (fixedRecipient === 'none' || fixedRecipient === 'all') return false
    const m = measurementOf(key)
    return m === undefined || !fixedRecipient.has(m)
  }
}

function resourceCovers(statement: PolicyStatement, keyArn: string | undefined, certain: boolean): boolean {
  if (keyArn !== undefined) return statementResourceMatch(statement, keyArn)
  if (!certain) return true
  return !('NotResource' in statement) && (!('Resource' in statement) || asList(statement.Resource).includes('*'))
}

/** Whether some Deny certainly stops the host's request in this state (it cannot avoid the Deny's conditions). */
function denied(j: Judge, action: string, keys: KeyIndex, free: (key: string) => boolean): boolean {
  return j.policy.Statement.some((d) => {
    if (d.Effect !== 'Deny') return false
    const via = statementPrincipalMatch(d, j.ctx.roleArn, 'grant')
    if (via === null || via === 'account-root') return false
    if (!statementActionMatch(d, action) || !resourceCovers(d, j.ctx.keyArn, true)) return false
    return evaluateCondition(d.Condition, keys, {free}) === true
  })
}

/**
 * Whether the Allow statement may apply to the host's request in this state, for this action, with
 * no Deny certainly in the way. `deny` is the same state as the Deny statements see it, when it
 * differs: a measurement the host picks freely is free for the Allow but, for a Deny, a value no
 * Deny names (the host can always pick one).
 */
function admitsState(j: Judge, statement: PolicyStatement, action: string, keys: KeyIndex, free: (key: string) => boolean, deny: {keys: KeyIndex; free: (key: string) => boolean} = {keys, free}): boolean {
  if (evaluateCondition(statement.Condition, keys, {free}) === false) return false
  return !denied(j, action, deny.keys, deny.free)
}

/** The values (lowercased) and pattern witnesses the Deny statements name per measurement: the choices where a Deny may tell requests apart. */
function denyCandidates(policy: KeyPolicy): Map<string, {values: Set<string>; patterns: string[]}> {
  const out = new Map<string, {values: Set<string>; patterns: string[]}>()
  for (const d of policy.Statement) {
    if (d.Effect !== 'Deny' || typeof d.Condition !== 'object' || d.Condition === null) continue
    for (const block of Object.values(d.Condition)) {
      if (typeof block !== 'object' || block === null) continue
      for (const [key, raw] of Object.entries(block)) {
        const m = measurementOf(key)
        if (m === undefined) continue
        const entry = out.get(m) ?? {values: new Set<string>(), patterns: []}
        for (const v of asList(raw).map(String)) {
          if (/[*?]/.test(v)) {
            entry.patterns.push(v)
            entry.values.add(witness(v))
          } else entry.values.add(v.toLowerCase())
        }
        out.set(m, entry)
      }
    }
  }
  return out
}

/** A 96-hex value a glob matches, where it can (`?` → 0, the first `*` → as many 0 as fit). */
function witness(pattern: string): string {
  const fixed = pattern.replace(/\?/g, '0')
  const first = fixed.indexOf('*')
  const bare = fixed.replace(/\*/g, '')
  if (first === -1) return bare.toLowerCase()
  const fill = '0'.repeat(Math.max(0, 96 - bare.length))
  return (fixed.slice(0, first).replace(/\*/g, '') + fill + fixed.slice(first + 1).replace(/\*/g, '')).toLowerCase()
}

/** A value of a measurement that no Deny names or matches (short of a pattern matching everything). */
function freshValue(denies: {values: Set<string>; patterns: string[]} | undefined): string {
  const options = ['f'.repeat(95) + 'e', '1'.repeat(95) + '2', 'a'.repeat(95) + '7']
  const hits = (v: string): boolean => denies !== undefined && (denies.values.has(v) || denies.patterns.some((p) => p.replace(/\*/g, '') !== '' && matchesGlob(p, v, true)))
  return options.find((v) => !hits(v)) ?? options[0]!
}

interface StatementFindings {
  via: HostPath
  unconditioned: Map<string, string>
  debug: Set<string>
  partial: {set: Partial<MeasurementSet>; actions: Set<string>}[]
  full: {set: MeasurementSet; actions: Set<string>}[]
}

function hostPath(statement: PolicyStatement, roleArn: string): HostPath | null {
  const via = statementPrincipalMatch(statement, roleArn, 'grant')
  return via === null ? null : via === 'exact' ? 'role' : via === 'account-root' ? 'account' : 'everyone'
}

/** What one Allow statement gives the host; null when it gives nothing judged. */
function judgeStatement(j: Judge, statement: PolicyStatement): StatementFindings | null {
  if (statement.Effect !== 'Allow') return null
  const via = hostPath(statement, j.ctx.roleArn)
  if (via === null || !resourceCovers(statement, j.ctx.keyArn, false)) return null
  const actions = JUDGED_OPERATIONS.filter((a) => statementActionMatch(statement, a))
  if (actions.length === 0) return null
  const out: StatementFindings = {via, unconditioned: new Map(), debug: new Set(), partial: [], full: []}
  // No Recipient: recipient keys absent.
  for (const a of actions) {
    if (admitsState(j, statement, a, j.plain, FREE_NONE)) {
      out.unconditioned.set(a, (UNATTESTABLE_OPERATIONS as readonly string[]).includes(a) ? 'no request of it can carry an attestation' : 'a request without a Recipient gets the plaintext')
    }
  }
  const recipientActions = actions.filter((a) => (RECIPIENT_OPERATIONS as readonly string[]).includes(a) && !out.unconditioned.has(a))
  if (recipientActions.length === 0) return out
  // A debug-mode enclave (all zeros).
  for (const a of recipientActions) if (admitsState(j, statement, a, j.debug, FREE_ALL)) out.debug.add(a)
  // Enclaves whose measurements the statement pins; what it leaves unpinned, the host picks — any
  // value (free for the Allow, a value no Deny names for the Denies), or one a Deny names.
  const pins = pinsOf(statement)
  const denies = denyCandidates(j.policy)
  const dimensions = PINNED.filter((m) => m !== 'PCR8' || pins.has(m) || denies.has(m) || j.ctx.current?.PCR8 !== undefined)
  type Choice = {value: string; free: boolean}
  let combinations: Partial<Record<Pin, Choice>>[] = [{}]
  for (const m of dimensions) {
    const named = denies.get(m)
    // A value a Deny names exactly is one image; a pattern's witness stands for the many it matches (still the host's pick).
    const options: Choice[] = pins.has(m)
      ? [...pins.get(m)!].map((value) => ({value, free: false}))
      : [
          {value: freshValue(named), free: true},
          ...[...(named?.values ?? [])].filter((v) => HEX_96.test(v)).map((value) => ({value, free: named!.patterns.some((p) => witness(p) === value)})),
        ]
    combinations = combinations.flatMap((c) => options.map((o) => ({...c, [m]: o})))
    if (combinations.length > MAX_COMBINATIONS) combinations = combinations.slice(0, MAX_COMBINATIONS)
  }
  for (const combo of combinations) {
    const concrete: Partial<Record<Pin, string>> = {}
    const chosen: Partial<Record<Pin, string>> = {}
    const fixed = new Set<string>()
    for (const m of dimensions) {
      const c = combo[m]!
      chosen[m] = c.value
      if (!c.free) {
        concrete[m] = c.value
        fixed.add(m)
      }
    }
    const allowKeys = indexKeys({...recipientKeys(concrete), ...j.identity})
    const denyView = {keys: indexKeys({...recipientKeys(chosen), ...j.identity}), free: freeFor(new Set(dimensions))}
    const admitted = new Set(recipientActions.filter((a) => admitsState(j, statement, a, allowKeys, freeFor(fixed), denyView)))
    if (admitted.size === 0) continue
    const image = (['PCR0', 'PCR1', 'PCR2'] as const).filter((m) => concrete[m] !== undefined)
    if (image.length === 0) {
      for (const a of admitted) out.unconditioned.set(a, 'it admits any enclave image, debug-mode included')
      continue
    }
    if (concrete.PCR0 !== undefined && isDebugSet({PCR0: concrete.PCR0})) for (const a of admitted) out.debug.add(a)
    const full = image.length === 3
    // Without PCR8, a full pin is partial only where nle pins the signer for that image (an earlier unsigned set has no PCR8 to pin).
    const unsigned = full && concrete.PCR8 === undefined && [j.ctx.current, ...j.ctx.kept].some((k) => k?.PCR8 !== undefined && sameImage(k, concrete as MeasurementSet))
    if (full && !unsigned) out.full.push({set: concrete as MeasurementSet, actions: admitted})
    else out.partial.push({set: concrete, actions: admitted})
  }
  for (const a of out.unconditioned.keys()) out.debug.delete(a)
  out.partial = out.partial.filter((p) => [...p.actions].some((a) => !out.unconditioned.has(a)))
  out.full = out.full.filter((f) => [...f.actions].some((a) => !out.unconditioned.has(a)))
  return out
}

function statusOf(set: MeasurementSet, ctx: ExposureContext, owned: boolean): PinnedSet['status'] {
  if (ctx.current !== null && sameSet(set, ctx.current)) return 'current'
  if (isDebugSet(set) && ctx.allowDebug !== true) return 'debug'
  if (ctx.kept.some((k) => sameSet(k, set))) return 'previous'
  if (owned && ctx.current !== null && !ctx.recorded.some((k) => sameSet(k, set))) return 'unrecorded'
  return 'stale'
}

const unrecordedMessage = (where: string, set: Partial<MeasurementSet>): string =>
  `Statement ${where} admits a measurement set that is neither the current build nor an earlier build the lockfile records (${short(set)}): the Sid is nle's, but nothing in the repository says this image was built here.`

const REASON_ORDER = ['kms:ReEncryptFrom', 'kms:CreateGrant', 'kms:PutKeyPolicy']
const REASONS: Record<string, string> = {
  'kms:ReEncryptFrom': 'ReEncryptFrom decrypts inside KMS and re-encrypts under a key the caller picks',
  'kms:CreateGrant': 'CreateGrant can grant Decrypt, and grants are not bound by key-policy conditions',
  'kms:PutKeyPolicy': 'PutKeyPolicy can rewrite this policy',
}

function who(via: HostPath): string {
  return via === 'role' ? 'the host role' : via === 'account' ? 'the account (through IAM policies, the host role included)' : 'every principal, the host role included'
}

/** The exposures of one statement, without proposals. */
function exposuresOf(j: Judge, statement: PolicyStatement, index: number): {exposures: Exposure[]; sets: PinnedSet[]} {
  const found = judgeStatement(j, statement)
  if (found === null) return {exposures: [], sets: []}
  const owned = isOwned(statement, j.ctx.project)
  const base = {index, sid: statement.Sid ?? null, owned, via: found.via, proposed: null, fix: ''}
  const exposures: Exposure[] = []
  const sets: PinnedSet[] = []
  if (found.unconditioned.size > 0) {
    const actions = [...found.unconditioned.keys()]
    // One reason per kind: "Decrypt, GenerateDataKey: a request without a Recipient gets the plaintext; ReEncryptFrom …".
    const byWhy = new Map<string, string[]>()
    for (const [a, why] of found.unconditioned) if (REASONS[a] === undefined) byWhy.set(why, [...(byWhy.get(why) ?? []), a.slice(4)])
    const reasons = [...[...byWhy].map(([why, ops]) => `${ops.join(', ')}: ${why}`), ...REASON_ORDER.filter((a) => found.unconditioned.has(a)).map((a) => REASONS[a]!)]
    exposures.push({...base, kind: 'unconditioned-access', actions, message: `Statement ${label(base)} grants ${who(found.via)} ${actions.join(', ')} without a pinned attested enclave: ${reasons.join('; ')}.`})
  }
  for (const a of found.unconditioned.keys()) found.debug.delete(a)
  if (found.debug.size > 0 && j.ctx.allowDebug !== true && !(j.ctx.current !== null && isDebugSet(j.ctx.current))) {
    exposures.push({...base, kind: 'debug-pin', actions: [...found.debug], set: {PCR0: ZERO}, message: `Statement ${label(base)} admits a debug-mode enclave (all-zero PCR0) for ${[...found.debug].join(', ')}: any code, with memory the host can read.`})
  }
  for (const p of found.partial) {
    const actions = [...p.actions]
    const pinnedKeys = PINNED.filter((k) => p.set[k] !== undefined)
    const wanted = PINNED.filter((k) => k !== 'PCR8' || j.ctx.current?.PCR8 !== undefined)
    exposures.push({...base, kind: 'partial-pin', actions, set: p.set, message: `Statement ${label(base)} pins only ${pinnedKeys.join(', ')} of the ${wanted.join(', ')} nle pins (${short(p.set)}), for ${actions.join(', ')}.`})
    const matches = (k: MeasurementSet): boolean => pinnedKeys.every((key) => k[key] === p.set[key])
    const known = [...(j.ctx.current === null ? [] : [j.ctx.current]), ...j.ctx.kept]
    if (j.ctx.current !== null && !known.some(matches) && !(isDebugSet({PCR0: p.set.PCR0 ?? '1'}) && j.ctx.allowDebug !== true)) {
      if (owned && !j.ctx.recorded.some(matches)) exposures.push({...base, kind: 'unrecorded-measurements', actions, set: p.set, message: unrecordedMessage(label(base), p.set)})
      else exposures.push({...base, kind: 'stale-set', actions, set: p.set, message: `Statement ${label(base)} still admits an old measurement set (${short(p.set)}).`})
    }
  }
  for (const f of found.full) {
    const status = statusOf(f.set, j.ctx, owned)
    sets.push({index, sid: base.sid, owned, set: f.set, actions: [...f.actions], status})
    if (status === 'stale' && j.ctx.current !== null) exposures.push({...base, kind: 'stale-set', actions: [...f.actions], set: f.set, message: `Statement ${label(base)} still admits an old measurement set (${short(f.set)}).`})
    if (status === 'unrecorded') exposures.push({...base, kind: 'unrecorded-measurements', actions: [...f.actions], set: f.set, message: unrecordedMessage(label(base), f.set)})
  }
  return {exposures, sets}
}

/** Does the statement (at `index` in `policy`) still give the host anything judged? */
function stillExposed(j: Judge, policy: KeyPolicy, index: number, statement: PolicyStatement): boolean {
  const probe: KeyPolicy = {...policy, Statement: policy.Statement.map((s, i) => (i === index ? statement : s))}
  return exposuresOf({...j, policy: probe}, statement, index).exposures.length > 0
}

/** Add `ArnNotEquals aws:PrincipalArn <host role>` to a statement (IAM's advice over NotPrincipal): everyone else keeps what it grants. */
export function excludeHost(statement: PolicyStatement, roleArn: string): PolicyStatement {
  const copy = structuredClone(statement)
  const condition: Record<string, Record<string, unknown>> = {...copy.Condition}
  const block: Record<string, unknown> = {...condition.ArnNotEquals}
  const key = Object.keys(block).find((k) => k.toLowerCase() === 'aws:principalarn') ?? 'aws:PrincipalArn'
  const values = asList(block[key]).map(String)
  block[key] = values.length === 0 ? roleArn : [...new Set([...values, roleArn])]
  condition.ArnNotEquals = block
  copy.Condition = condition
  return copy
}

/** A statement naming nothing but the host (its role or sessions): removing actions from it affects no one else. */
function onlyHost(statement: PolicyStatement, roleArn: string): boolean {
  const p = statement.Principal
  if (typeof p !== 'object' || p === null || 'NotPrincipal' in statement) return false
  const entries = Object.entries(p as Record<string, unknown>)
  return entries.length === 1 && entries[0]![0] === 'AWS' && asList(entries[0]![1]).every((v) => principalValueMatch(v, roleArn, true) === 'exact')
}

function withoutActions(statement: PolicyStatement, actions: readonly string[]): PolicyStatement | null {
  const copy = structuredClone(statement)
  if ('NotAction' in copy) {
    const current = asList(copy.NotAction).map(String)
    copy.NotAction = [...current, ...actions.filter((a) => !current.some((c) => c.toLowerCase() === a.toLowerCase()))]
    return copy
  }
  const list = asList(copy.Action).map(String)
  if (list.length === 1 && (list[0] === '*' || list[0]!.toLowerCase() === 'kms:*')) {
    return Object.fromEntries(Object.entries(statement).map(([k, v]) => (k === 'Action' ? ['NotAction', [...actions]] : [k, v]))) as PolicyStatement
  }
  // Entries (wildcards included) that cover an exposed action go: only the host loses them.
  const covering = (a: string): boolean => actions.some((x) => statementActionMatch({Effect: 'Allow', Action: a}, x))
  const rest = list.filter((a) => !covering(a))
  if (rest.length === 0) return null
  copy.Action = rest.length === 1 ? rest[0] : rest
  return copy
}

/** The smallest change to a foreign statement that closes what it gives the host; verified, else the statement's removal. */
function propose(j: Judge, statement: PolicyStatement, index: number, actions: readonly string[]): {proposed: PolicyStatement | null; fix: string} {
  if ('NotPrincipal' in statement) return {proposed: null, fix: 'Remove this statement: AWS does not support NotPrincipal with Allow; name the principals, or use an aws:PrincipalArn condition.'}
  if (onlyHost(statement, j.ctx.roleArn)) {
    const trimmed = withoutActions(statement, actions)
    if (trimmed === null) return {proposed: null, fix: `Remove this statement: it grants the host role nothing but ${actions.join(', ')}, which nle's own statements grant under a full pin.`}
    if (!stillExposed(j, j.policy, index, trimmed)) return {proposed: trimmed, fix: `Take ${actions.join(', ')} out of it (nle's own statements grant what the enclave needs, under a full pin).`}
  }
  const excluded = excludeHost(statement, j.ctx.roleArn)
  if (!stillExposed(j, j.policy, index, excluded)) return {proposed: excluded, fix: `Keep the host role out of it with "ArnNotEquals": {"aws:PrincipalArn": "${j.ctx.roleArn}"}; every other principal keeps what it grants.`}
  return {proposed: null, fix: 'Remove this statement.'}
}

const OWNED_FIX = 'Run `nle policy apply --apply`: it rewrites the statements nle owns (full pins of the current and kms.keepPrevious earlier sets, the host role only, kms.operations only).'
const UNRECORDED_FIX =
  'Run `nle policy apply --apply` (or rebuild, then apply): it drops nle statements whose set the lockfile does not record. Only if this truly is an earlier build of this project, add its measurements to "previous" in nle.lock.json (docs/lockfile.md).'

/** Every way the policy gives the host plaintext, with a verified fix for each foreign statement. */
export function analyzeExposure(policy: KeyPolicy, ctx: ExposureContext): ExposureReport {
  const identity: RequestContextKeys = {...identityKeys(ctx.roleArn), 'aws:PrincipalType': 'AssumedRole', 'aws:PrincipalIsAWSService': 'false'}
  const j: Judge = {policy, ctx, identity, plain: indexKeys(identity), debug: indexKeys({...DEBUG_KEYS, ...identity})}
  const exposures: Exposure[] = []
  const sets: PinnedSet[] = []
  policy.Statement.forEach((statement, index) => {
    const found = exposuresOf(j, statement, index)
    sets.push(...found.sets)
    if (found.exposures.length === 0) return
    const actions = [...new Set(found.exposures.flatMap((e) => e.actions))]
    const remedy = found.exposures[0]!.owned ? undefined : propose(j, statement, index, actions)
    for (const e of found.exposures) exposures.push({...e, ...(remedy ?? {proposed: null, fix: e.kind === 'unrecorded-measurements' ? UNRECORDED_FIX : OWNED_FIX})})
  })
  return {exposures, sets}
}

/** Apply every proposed fix of a report (what an operator would do for foreign statements). */
export function applyProposals(policy: KeyPolicy, report: ExposureReport): KeyPolicy {
  const replaced = new Map<number, PolicyStatement | null>()
  for (const e of report.exposures) if (!e.owned) replaced.set(e.index, e.proposed)
  const statements: PolicyStatement[] = []
  policy.Statement.forEach((s, i) => {
    if (!replaced.has(i)) statements.push(s)
    else if (replaced.get(i) !== null) statements.push(replaced.get(i)!)
  })
  return {...policy, Statement: statements}
}

/** A grant on the key, as ListGrants reports it. */
export interface GrantInfo {
  grantId: string
  granteePrincipal: string
  operations: readonly string[]
}

/**
 * Grants that give the host a judged operation. A grant is not bound by the key policy's
 * conditions (its only constraints are on the encryption context, which the caller sets), so any
 * such grant is unconditioned access.
 */
export function grantExposures(grants: readonly GrantInfo[], ctx: {roleArn: string; keyArn?: string}): Exposure[] {
  const out: Exposure[] = []
  for (const g of grants) {
    const via = principalValueMatch(g.granteePrincipal, ctx.roleArn, true)
    if (via === null) continue
    const actions = g.operations.map((o) => `kms:${o}`).filter((a) => JUDGED_OPERATIONS.some((j) => j.toLowerCase() === a.toLowerCase()))
    if (actions.length === 0) continue
    out.push({
      kind: 'unconditioned-access',
      index: -1,
      sid: null,
      owned: false,
      via: via === 'exact' ? 'role' : via === 'account-root' ? 'account' : 'everyone',
      actions,
      message: `Grant ${g.grantId} gives ${g.granteePrincipal} ${actions.join(', ')}: grants are not bound by the key policy's conditions, so no attestation is needed.`,
      proposed: null,
      fix: `Revoke it: aws kms revoke-grant --key-id ${ctx.keyArn ?? '<key>'} --grant-id ${g.grantId}`,
    })
  }
  return out
}
