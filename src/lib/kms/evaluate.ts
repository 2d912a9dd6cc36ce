/**
 * Key-policy evaluation (pure): does this policy allow this principal this KMS action on this key,
 * given these request context keys? Used by the local KMS endpoint for every request, by
 * `nle policy check` to decide whether the current measurements are admitted, and by the lockout
 * check (is kms:PutKeyPolicy still reachable for the caller?).
 *
 * Semantics follow IAM's: an explicit Deny wins over any Allow; without a matching Allow the
 * answer is an implicit deny. A condition on a context key the request does not carry is false
 * for ordinary operators (so an Allow gated on `kms:RecipientAttestation:PCR0` does not match a
 * request without an attestation document) and true for negated ones (`StringNot*`); `…IfExists`
 * is true when the key is absent. An operator nle does not know never grants: it makes an Allow
 * not match and a Deny match (fail closed both ways).
 */
import type {KeyPolicy, PolicyStatement} from './policy.js'

export type ContextValue = string | readonly string[] | boolean
export type RequestContextKeys = Record<string, ContextValue | undefined>

export interface RequestContext {
  /** The caller as an IAM ARN: `arn:aws:iam::<acct>:role/<name>` or `…:user/<name>`. */
  principalArn: string
  /** e.g. `kms:Decrypt`. */
  action: string
  /** The key's ARN. */
  resourceArn: string
  /** Condition keys of the request (`kms:RecipientAttestation:PCR0`, `aws:PrincipalArn`, …); names are case-insensitive. */
  keys?: RequestContextKeys
}

export interface EvaluateOptions {
  /**
   * How a principal naming the account (`arn:aws:iam::<acct>:root` or the bare account id) is
   * treated. On AWS it delegates to IAM: the caller is allowed when its IAM policies allow.
   * `grant` treats that delegation as allowing (the local endpoint: there are no IAM policies;
   * lockout checks: the path exists); `ignore` does not count it (is the role named itself?).
   */
  accountRoot: 'grant' | 'ignore'
}

export interface Decision {
  decision: 'allow' | 'deny' | 'implicit-deny'
  /** Indexes of the statements that matched (Deny ones when denied). */
  statements: number[]
}

const ACCOUNT_ID = /^\d{12}$/

/** The account id of an IAM or STS ARN, or undefined. */
export function accountOf(arn: string): string | undefined {
  const parts = arn.split(':')
  return parts.length >= 6 && parts[0] === 'arn' && ACCOUNT_ID.test(parts[4] ?? '') ? parts[4] : undefined
}

/**
 * The IAM principal behind an ARN: an STS assumed-role session becomes its role
 * (`arn:aws:sts::A:assumed-role/R/s` → `arn:aws:iam::A:role/R`); others are returned as they are.
 */
export function principalOf(arn: string): string {
  const m = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.+$/.exec(arn)
  return m ? `arn:${m[1]}:iam::${m[2]}:role/${m[3]}` : arn
}

/** Role ARNs compare by partition, account and role name (an assumed-role ARN has no path). */
function sameRole(a: string, b: string): boolean {
  const re = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/
  const ma = re.exec(a)
  const mb = re.exec(b)
  return ma !== null && mb !== null && ma[1] === mb[1] && ma[2] === mb[2] && ma[3] === mb[3]
}

function globToRegExp(pattern: string, caseInsensitive: boolean): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${body}$`, caseInsensitive ? 'is' : 's')
}

const GLOBS = new Map<string, RegExp>()

export function matchesGlob(pattern: string, value: string, caseInsensitive = false): boolean {
  if (!/[*?]/.test(pattern)) return caseInsensitive ? pattern.toLowerCase() === value.toLowerCase() : pattern === value
  const id = `${caseInsensitive ? 'i' : 's'}${pattern}`
  let re = GLOBS.get(id)
  if (re === undefined) {
    if (GLOBS.size > 4096) GLOBS.clear()
    re = globToRegExp(pattern, caseInsensitive)
    GLOBS.set(id, re)
  }
  return re.test(value)
}

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v])

export type PrincipalMatch = 'exact' | 'wildcard' | 'account-root' | null

/**
 * Which way to err where nle cannot be sure how AWS matches (globs or odd case in principal ARNs,
 * `NotPrincipal`): `deny` for the evaluator (the local KMS must never be more permissive than
 * AWS: an uncertain Allow does not apply, an uncertain Deny does), `grant` for the checker (could
 * the host get this? an uncertain Allow applies, an uncertain Deny does not protect).
 */
export type ErrTowards = 'deny' | 'grant'

const ROLE_ARN = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/
const SESSION_ARN = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/(.+)$/
const ROOT_ARN = /^arn:aws[a-z-]*:iam::(\d{12}):root$/

/**
 * How one principal value of a policy (`*`, an ARN, an account id) covers `principalArn`. A role
 * ARN covers the role's sessions (role names are unique in an account, whatever their path).
 * `lenient` also takes globs and case variants as matching (AWS accepts neither in a Principal,
 * but a checker must not assume it rejects them).
 */
export function principalValueMatch(value: unknown, principalArn: string, lenient = false): PrincipalMatch {
  if (typeof value !== 'string') return null
  if (value === '*') return 'wildcard'
  const caller = principalOf(principalArn)
  const account = accountOf(caller)
  if (ACCOUNT_ID.test(value)) return value === account ? 'account-root' : null
  const root = ROOT_ARN.exec(value)
  if (root) return root[1] === account ? 'account-root' : null
  if (value === principalArn || value === caller || sameRole(value, caller)) return 'exact'
  if (!lenient) return null
  if (sameRole(value.toLowerCase(), caller.toLowerCase())) return 'exact'
  const session = SESSION_ARN.exec(value)
  const role = ROLE_ARN.exec(caller)
  if (session && role && session[2] === role[2] && session[3]!.toLowerCase() === role[3]!.toLowerCase()) return 'exact'
  if (/[*?]/.test(value)) {
    const forms = [principalArn, caller]
    if (role) forms.push(`arn:${role[1]}:sts::${role[2]}:assumed-role/${role[3]}/i-0123456789abcdef0`)
    if (forms.some((f) => matchesGlob(value, f, true))) return value.replace(/[*?]/g, '') === '' ? 'wildcard' : 'exact'
    if (account !== undefined && matchesGlob(value, `arn:aws:iam::${account}:root`, true)) return 'account-root'
  }
  return null
}

/** Whether a NotPrincipal value list certainly names the caller: its exact ARN and its account (AWS needs both, or the account itself stays denied). */
function notPrincipalExcludes(principal: unknown, principalArn: string, lenient: boolean): boolean {
  if (principal === '*') return true
  if (typeof principal !== 'object' || principal === null) return false
  const values = asList((principal as Record<string, unknown>).AWS)
  if (lenient) return values.some((v) => principalValueMatch(v, principalArn, true) !== null)
  const account = accountOf(principalOf(principalArn))
  const names = values.some((v) => v === principalArn)
  const accountListed = values.some((v) => typeof v === 'string' && (v === account || ROOT_ARN.exec(v)?.[1] === account))
  return (names && accountListed) || values.includes('*')
}

/**
 * The strongest way a statement's Principal covers the caller (or null). `NotPrincipal` with Allow
 * is not supported by AWS: the evaluator never lets it allow; the checker takes it as covering
 * everyone. With Deny it covers everyone it does not certainly exclude.
 */
export function statementPrincipalMatch(statement: PolicyStatement, principalArn: string, err: ErrTowards = 'deny'): PrincipalMatch {
  const allow = statement.Effect === 'Allow'
  // Lenient where a wrong "match" errs the chosen way: Allow for the checker, Deny for the evaluator.
  const lenient = allow === (err === 'grant')
  if ('NotPrincipal' in statement) {
    if (allow) return err === 'grant' && !asList((statement.NotPrincipal as Record<string, unknown> | undefined)?.AWS ?? statement.NotPrincipal).includes('*') ? 'wildcard' : null
    return notPrincipalExcludes(statement.NotPrincipal, principalArn, err === 'grant') ? null : 'wildcard'
  }
  const principal = statement.Principal
  if (principal === '*') return 'wildcard'
  if (typeof principal !== 'object' || principal === null) return null
  let best: PrincipalMatch = null
  for (const value of asList((principal as Record<string, unknown>).AWS)) {
    const m = principalValueMatch(value, principalArn, lenient)
    if (m === 'exact') return 'exact'
    if (m === 'wildcard' || (m === 'account-root' && best === null)) best = m
  }
  return best
}

/** Whether the statement's Action / NotAction covers `action`. */
export function statementActionMatch(statement: PolicyStatement, action: string): boolean {
  if ('NotAction' in statement) return !asList(statement.NotAction).some((a) => typeof a === 'string' && matchesGlob(a, action, true))
  return asList(statement.Action).some((a) => typeof a === 'string' && matchesGlob(a, action, true))
}

export function statementResourceMatch(statement: PolicyStatement, resource: string): boolean {
  if ('NotResource' in statement) return !asList(statement.NotResource).some((r) => typeof r === 'string' && matchesGlob(r, resource))
  if (!('Resource' in statement)) return true
  return asList(statement.Resource).some((r) => typeof r === 'string' && matchesGlob(r, resource))
}

/** ARN operators compare each of the six colon-separated parts on its own (a `*` never crosses a colon), case-sensitively. */
function arnMatch(pattern: string, value: string, glob: boolean): boolean {
  const split = (arn: string): string[] | null => {
    const parts = arn.split(':')
    return parts.length >= 6 && parts[0] === 'arn' ? [...parts.slice(0, 5), parts.slice(5).join(':')] : null
  }
  const p = split(pattern)
  const v = split(value)
  return p !== null && v !== null && p.every((part, i) => (glob ? matchesGlob(part, v[i]!) : part === v[i]))
}

type Comparator = (policyValue: string, requestValue: string) => boolean
const COMPARATORS: Record<string, Comparator> = {
  StringEquals: (p, r) => p === r,
  StringEqualsIgnoreCase: (p, r) => p.toLowerCase() === r.toLowerCase(),
  StringLike: (p, r) => matchesGlob(p, r),
  ArnEquals: (p, r) => arnMatch(p, r, false),
  ArnLike: (p, r) => arnMatch(p, r, true),
  Bool: (p, r) => p.toLowerCase() === r.toLowerCase(),
}
const NEGATED: Record<string, string> = {
  StringNotEquals: 'StringEquals',
  StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
  StringNotLike: 'StringLike',
  ArnNotEquals: 'ArnEquals',
  ArnNotLike: 'ArnLike',
}

export interface ParsedOperator {
  /** ForAnyValue / ForAllValues. */
  set: 'any' | 'all' | undefined
  /** The positive operator (StringNotEquals → StringEquals), or Null. */
  base: string
  negated: boolean
  ifExists: boolean
}

/** An operator nle implements, split into its parts; null for one it does not (its block is then unknown). Names are case-sensitive. */
export function parseOperator(operator: string): ParsedOperator | null {
  let op = operator
  let set: ParsedOperator['set']
  if (op.startsWith('ForAnyValue:')) [set, op] = ['any', op.slice('ForAnyValue:'.length)]
  else if (op.startsWith('ForAllValues:')) [set, op] = ['all', op.slice('ForAllValues:'.length)]
  if (op === 'Null') return set === undefined ? {set, base: 'Null', negated: false, ifExists: false} : null
  const ifExists = op.endsWith('IfExists')
  if (ifExists) op = op.slice(0, -'IfExists'.length)
  const negatedOf = NEGATED[op]
  const base = negatedOf ?? op
  if (!COMPARATORS[base]) return null
  return {set, base, negated: negatedOf !== undefined, ifExists}
}

/** Request keys by lowercase name (condition key names are case-insensitive). */
export type KeyIndex = Map<string, ContextValue | undefined>
/** Index request keys once when one context is evaluated against many conditions. */
export const indexKeys = (keys: RequestContextKeys): KeyIndex => new Map(Object.entries(keys).map(([k, v]) => [k.toLowerCase(), v]))

export interface ConditionOptions {
  /**
   * Keys whose value the caller picks (the checker: encryption context, grant parameters, source
   * IP, …): a block on one is `unknown` — it may hold or not, as the caller likes.
   */
  free?: (key: string) => boolean
}

/**
 * One key of one operator block, with IAM's documented semantics: several policy values are ORed
 * (NORed for a negated operator); a key missing from the request (or an empty list) makes
 * ForAllValues true, ForAnyValue false, …IfExists true, a negated operator true and any other
 * false; Null tests presence.
 */
function evaluateKey(op: ParsedOperator, key: string, policyValues: unknown, keys: KeyIndex, options: ConditionOptions): boolean | 'unknown' {
  if (options.free?.(key)) return 'unknown'
  const wanted = asList(policyValues).map(String)
  // A policy variable (`${aws:PrincipalAccount}`, `${*}`) is substituted by AWS; nle does not: unknown.
  if (wanted.some((w) => w.includes('${'))) return 'unknown'
  const raw = keys.get(key.toLowerCase())
  const values = raw === undefined ? [] : (Array.isArray(raw) ? raw : [raw]).map(String)
  const missing = values.length === 0
  if (op.base === 'Null') return wanted.some((w) => (w.toLowerCase() === 'true') === missing)
  if (missing) {
    if (op.set === 'all') return true
    if (op.set === 'any') return false
    return op.ifExists || op.negated
  }
  const compare = COMPARATORS[op.base]!
  const matches = (v: string): boolean => (op.negated ? !wanted.some((w) => compare(w, v)) : wanted.some((w) => compare(w, v)))
  if (op.set === 'all') return values.every(matches)
  if (op.set === 'any') return values.some(matches)
  return op.negated ? values.every(matches) : values.some(matches)
}

/** One operator block; `unknown` when nle does not implement the operator, or a key of it is free. */
function evaluateOperator(operator: string, block: unknown, keys: KeyIndex, options: ConditionOptions): boolean | 'unknown' {
  if (typeof block !== 'object' || block === null || Array.isArray(block)) return 'unknown'
  const op = parseOperator(operator)
  if (op === null) return 'unknown'
  let unknown = false
  for (const [key, policyValues] of Object.entries(block as Record<string, unknown>)) {
    const r = evaluateKey(op, key, policyValues, keys, options)
    if (r === false) return false
    if (r === 'unknown') unknown = true
  }
  return unknown ? 'unknown' : true
}

/** The Condition of a statement (blocks ANDed); `unknown` when it depends on an operator nle does not implement or on a free key. */
export function evaluateCondition(condition: unknown, keys: RequestContextKeys | KeyIndex, options: ConditionOptions = {}): boolean | 'unknown' {
  if (condition === undefined) return true
  if (typeof condition !== 'object' || condition === null) return 'unknown'
  const index = keys instanceof Map ? keys : indexKeys(keys)
  let unknown = false
  for (const [operator, block] of Object.entries(condition as Record<string, unknown>)) {
    const r = evaluateOperator(operator, block, index, options)
    if (r === false) return false
    if (r === 'unknown') unknown = true
  }
  return unknown ? 'unknown' : true
}

/** The identity keys AWS puts in every request context of `principalArn` (an assumed-role session's aws:PrincipalArn is its role). */
export function identityKeys(principalArn: string): RequestContextKeys {
  const principal = principalOf(principalArn)
  const account = accountOf(principal)
  return {'aws:PrincipalArn': principal, ...(account === undefined ? {} : {'aws:PrincipalAccount': account, 'kms:CallerAccount': account})}
}

/** Evaluate a key policy for one request. */
export function evaluatePolicy(policy: KeyPolicy, request: RequestContext, options: EvaluateOptions): Decision {
  const keys: RequestContextKeys = {...request.keys, ...identityKeys(request.principalArn)}
  const allows: number[] = []
  const denies: number[] = []
  policy.Statement.forEach((statement, index) => {
    const principal = statementPrincipalMatch(statement, request.principalArn)
    if (principal === null) return
    if (principal === 'account-root' && options.accountRoot === 'ignore' && statement.Effect === 'Allow') return
    if (!statementActionMatch(statement, request.action)) return
    if (!statementResourceMatch(statement, request.resourceArn)) return
    const condition = evaluateCondition(statement.Condition, keys)
    if (statement.Effect === 'Deny') {
      if (condition !== false) denies.push(index)
    } else if (condition === true) allows.push(index)
  })
  if (denies.length > 0) return {decision: 'deny', statements: denies}
  if (allows.length > 0) return {decision: 'allow', statements: allows}
  return {decision: 'implicit-deny', statements: []}
}

/** The request context keys an attestation document's PCRs produce (`PCR<n>` and `ImageSha384`), lowercase hex. */
export function recipientContextKeys(pcrs: Record<number, string>): RequestContextKeys {
  const keys: RequestContextKeys = {}
  for (const [index, value] of Object.entries(pcrs)) keys[`kms:RecipientAttestation:PCR${index}`] = value.toLowerCase()
  if (pcrs[0] !== undefined) keys['kms:RecipientAttestation:ImageSha384'] = pcrs[0].toLowerCase()
  return keys
}
