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

export function matchesGlob(pattern: string, value: string, caseInsensitive = false): boolean {
  return globToRegExp(pattern, caseInsensitive).test(value)
}

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v])

export type PrincipalMatch = 'exact' | 'wildcard' | 'account-root' | null

/** How one principal value of a policy (`*`, an ARN, an account id) covers `principalArn`. */
export function principalValueMatch(value: unknown, principalArn: string): PrincipalMatch {
  if (typeof value !== 'string') return null
  if (value === '*') return 'wildcard'
  const caller = principalOf(principalArn)
  const account = accountOf(caller)
  if (ACCOUNT_ID.test(value)) return value === account ? 'account-root' : null
  const root = /^arn:aws[a-z-]*:iam::(\d{12}):root$/.exec(value)
  if (root) return root[1] === account ? 'account-root' : null
  if (value === caller || sameRole(value, caller)) return 'exact'
  return null
}

/** The strongest way a statement's Principal covers the caller (or null). */
export function statementPrincipalMatch(statement: PolicyStatement, principalArn: string): PrincipalMatch {
  const check = (principal: unknown): PrincipalMatch => {
    if (principal === '*') return 'wildcard'
    if (typeof principal !== 'object' || principal === null) return null
    let best: PrincipalMatch = null
    for (const value of asList((principal as Record<string, unknown>).AWS)) {
      const m = principalValueMatch(value, principalArn)
      if (m === 'exact') return 'exact'
      if (m === 'wildcard' || (m === 'account-root' && best === null)) best = m
    }
    return best
  }
  if ('NotPrincipal' in statement) return check(statement.NotPrincipal) === null ? 'wildcard' : null
  return check(statement.Principal)
}

/** Whether the statement's Action / NotAction covers `action`. */
export function statementActionMatch(statement: PolicyStatement, action: string): boolean {
  if ('NotAction' in statement) return !asList(statement.NotAction).some((a) => typeof a === 'string' && matchesGlob(a, action, true))
  return asList(statement.Action).some((a) => typeof a === 'string' && matchesGlob(a, action, true))
}

function statementResourceMatch(statement: PolicyStatement, resource: string): boolean {
  if ('NotResource' in statement) return !asList(statement.NotResource).some((r) => typeof r === 'string' && matchesGlob(r, resource))
  if (!('Resource' in statement)) return true
  return asList(statement.Resource).some((r) => typeof r === 'string' && matchesGlob(r, resource))
}

type Comparator = (policyValue: string, requestValue: string) => boolean
const COMPARATORS: Record<string, Comparator> = {
  StringEquals: (p, r) => p === r,
  StringEqualsIgnoreCase: (p, r) => p.toLowerCase() === r.toLowerCase(),
  StringLike: (p, r) => matchesGlob(p, r),
  ArnEquals: (p, r) => p === r,
  ArnLike: (p, r) => matchesGlob(p, r),
}
const NEGATED: Record<string, string> = {
  StringNotEquals: 'StringEquals',
  StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
  StringNotLike: 'StringLike',
  ArnNotEquals: 'ArnEquals',
  ArnNotLike: 'ArnLike',
}

function lookup(keys: RequestContextKeys, name: string): ContextValue | undefined {
  const wanted = name.toLowerCase()
  for (const [k, v] of Object.entries(keys)) if (k.toLowerCase() === wanted) return v
  return undefined
}

/** One operator block; `unknown` when nle does not implement the operator. */
function evaluateOperator(operator: string, block: unknown, keys: RequestContextKeys): boolean | 'unknown' {
  if (typeof block !== 'object' || block === null || Array.isArray(block)) return 'unknown'
  let op = operator
  let setOp: 'any' | 'all' | undefined
  if (op.startsWith('ForAnyValue:')) [setOp, op] = ['any', op.slice('ForAnyValue:'.length)]
  else if (op.startsWith('ForAllValues:')) [setOp, op] = ['all', op.slice('ForAllValues:'.length)]
  const ifExists = op.endsWith('IfExists')
  if (ifExists) op = op.slice(0, -'IfExists'.length)
  for (const [key, policyValues] of Object.entries(block as Record<string, unknown>)) {
    const wanted = asList(policyValues).map(String)
    const present = lookup(keys, key)
    if (op === 'Null') {
      const isNull = present === undefined
      if (!wanted.some((w) => (w.toLowerCase() === 'true') === isNull)) return false
      continue
    }
    if (op === 'Bool') {
      if (present === undefined) {
        if (!ifExists) return false
        continue
      }
      if (!wanted.some((w) => w.toLowerCase() === String(present).toLowerCase())) return false
      continue
    }
    const negatedOf = NEGATED[op]
    const compare = COMPARATORS[negatedOf ?? op]
    if (!compare) return 'unknown'
    if (present === undefined) {
      // Absent key: true only for IfExists and negated operators.
      if (ifExists || negatedOf !== undefined || setOp === 'all') continue
      return false
    }
    const values = (Array.isArray(present) ? present : [present]).map(String)
    const hit = (v: string): boolean => wanted.some((w) => compare(w, v))
    let ok: boolean
    if (negatedOf !== undefined) ok = setOp === 'any' ? values.some((v) => !hit(v)) : values.every((v) => !hit(v))
    else if (setOp === 'all') ok = values.every(hit)
    else ok = values.some(hit)
    if (!ok) return false
  }
  return true
}

/** The Condition of a statement; `unknown` when it uses an operator nle does not implement. */
export function evaluateCondition(condition: unknown, keys: RequestContextKeys): boolean | 'unknown' {
  if (condition === undefined) return true
  if (typeof condition !== 'object' || condition === null) return 'unknown'
  let unknown = false
  for (const [operator, block] of Object.entries(condition as Record<string, unknown>)) {
    const r = evaluateOperator(operator, block, keys)
    if (r === false) return false
    if (r === 'unknown') unknown = true
  }
  return unknown ? 'unknown' : true
}

/** Evaluate a key policy for one request. */
export function evaluatePolicy(policy: KeyPolicy, request: RequestContext, options: EvaluateOptions): Decision {
  const keys: RequestContextKeys = {'aws:PrincipalArn': principalOf(request.principalArn), 'kms:CallerAccount': accountOf(request.principalArn), ...request.keys}
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
