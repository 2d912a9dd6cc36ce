import {describe, expect, it} from 'vitest'

import {unifiedDiff} from '../diff.js'
import {evaluatePolicy} from './evaluate.js'
import {JUDGED_OPERATIONS, analyzeExposure, applyProposals} from './exposure.js'
import {
  type KeyPolicy,
  type MeasurementSet,
  type PatchOptions,
  type PolicyStatement,
  admits,
  isOwned,
  lockoutCheck,
  ownedStatement,
  parsePolicy,
  patchPolicy,
  serializePolicy,
  starterPolicy,
} from './policy.js'
import {rng} from '../../test-support/rng.js'


const ACCOUNT = '111122223333'
const ROLE = `arn:aws:iam::${ACCOUNT}:role/enclave-host`
const hex = (r: () => number, n = 96): string => Array.from({length: n}, () => '0123456789abcdef'[Math.floor(r() * 16)]).join('')
const set = (r: () => number, signed = false): MeasurementSet => ({PCR0: hex(r), PCR1: hex(r), PCR2: hex(r), ...(signed ? {PCR8: hex(r)} : {})})
const options = (measurements: MeasurementSet, extra: Partial<PatchOptions> = {}): PatchOptions => ({project: 'demo', roleArn: ROLE, measurements, keepPrevious: 1, recordedPrevious: [], operations: ['Decrypt'], ...extra})

function randomStatement(r: () => number, i: number): PolicyStatement {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
  const actions = ['kms:Decrypt', 'kms:Encrypt', 'kms:*', 'kms:Describe*', 'kms:GenerateDataKey*', 'kms:PutKeyPolicy', 'kms:ReEncrypt*']
  const principals = ['*', {AWS: ROLE}, {AWS: `arn:aws:iam::${ACCOUNT}:root`}, {AWS: [`arn:aws:iam::${ACCOUNT}:user/alice`, ACCOUNT]}, {Service: 'logs.amazonaws.com'}]
  const entries: [string, unknown][] = []
  if (r() < 0.8) entries.push(['Sid', pick([`stmt-${i}`, `Enable IAM User Permissions ${i}`, `nle-other-enclave-current-${i}`, `nle-demo-enclave-currentx${i}`, `Allow ${i}`])])
  entries.push(['Effect', pick(['Allow', 'Deny'])])
  entries.push(r() < 0.9 ? ['Principal', pick(principals)] : ['NotPrincipal', {AWS: ROLE}])
  const actionValue = r() < 0.5 ? pick(actions) : [...new Set([pick(actions), pick(actions)])]
  entries.push([r() < 0.8 ? 'Action' : 'NotAction', actionValue])
  if (r() < 0.9) entries.push(['Resource', r() < 0.8 ? '*' : [`arn:aws:kms:eu-west-1:${ACCOUNT}:key/*`]])
  if (r() < 0.5) {
    const op = pick(['StringEquals', 'StringEqualsIgnoreCase', 'StringLike', 'Bool', 'StringNotEqualsIgnoreCase', 'ForAnyValue:StringEquals', 'NumericLessThan'])
    entries.push(['Condition', {[op]: {[pick(['kms:ViaService', 'kms:RecipientAttestation:PCR0', 'aws:SecureTransport', 'kms:EncryptionContext:app'])]: r() < 0.5 ? hex(r, 8) : [hex(r, 4), true]}}])
  }
  if (r() < 0.3) entries.push(['X-Unknown-Field', {nested: [1, 'two', {three: null}], n: r()}])
  // Random key order: nle must keep it.
  for (let k = entries.length - 1; k > 0; k--) {
    const j = Math.floor(r() * (k + 1))
    ;[entries[k], entries[j]] = [entries[j]!, entries[k]!]
  }
  return Object.fromEntries(entries) as PolicyStatement
}

function randomPolicy(r: () => number): KeyPolicy {
  const n = 1 + Math.floor(r() * 8)
  const statements: PolicyStatement[] = []
  for (let i = 0; i < n; i++) statements.push(randomStatement(r, i))
  // Sometimes nle already owns statements, at random places.
  const owned = Math.floor(r() * 3)
  for (let k = 0; k < owned; k++) {
    const at = Math.floor(r() * (statements.length + 1))
    statements.splice(at, 0, {Sid: k === 0 ? 'nle-demo-enclave-current' : `nle-demo-enclave-previous-${k}`, Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*', Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': hex(r), 'kms:RecipientAttestation:PCR1': hex(r), 'kms:RecipientAttestation:PCR2': hex(r)}}})
  }
  const policy: Record<string, unknown> = r() < 0.5 ? {Version: '2012-10-17', Id: `key-policy-${Math.floor(r() * 1000)}`} : {Version: '2012-10-17'}
  policy.Statement = statements
  if (r() < 0.3) policy['X-Top-Level'] = {keep: true}
  return policy as KeyPolicy
}

describe('patchPolicy', () => {
  it('property: 1,000 random valid policies — every foreign statement is deep-equal and in order after the patch; apply twice = no diff', () => {
    const r = rng(0x5eed)
    for (let run = 0; run < 1000; run++) {
      const policy = parsePolicy(JSON.stringify(randomPolicy(r)))
      const before = structuredClone(policy)
      const keepPrevious = Math.floor(r() * 3)
      const opts = options(set(r, r() < 0.3), {keepPrevious, operations: r() < 0.5 ? ['Decrypt'] : ['Decrypt', 'GenerateDataKey']})
      const once = patchPolicy(policy, opts)
      expect(policy, `run ${run}: input untouched`).toEqual(before)
      const foreignBefore = before.Statement.filter((s) => !isOwned(s, 'demo'))
      const foreignAfter = once.policy.Statement.filter((s) => !isOwned(s, 'demo'))
      expect(foreignAfter, `run ${run}`).toEqual(foreignBefore)
      foreignAfter.forEach((s, i) => expect(Object.keys(s)).toEqual(Object.keys(foreignBefore[i]!)))
      for (const [k, v] of Object.entries(before)) if (k !== 'Statement') expect(once.policy[k]).toEqual(v)
      const owned = once.policy.Statement.filter((s) => isOwned(s, 'demo'))
      expect(owned.length).toBeGreaterThanOrEqual(1)
      expect(owned.length).toBeLessThanOrEqual(1 + keepPrevious)
      expect(owned[0]!.Sid).toBe('nle-demo-enclave-current')
      expect(admits(once.policy, {roleArn: ROLE, set: opts.measurements, operation: 'Decrypt'}) || once.policy.Statement.some((s) => s.Effect === 'Deny')).toBe(true)
      const twice = patchPolicy(once.policy, opts)
      expect(twice.changed, `run ${run}: second apply changes nothing`).toBe(false)
      expect(unifiedDiff(serializePolicy(once.policy), serializePolicy(twice.policy), {from: 'a', to: 'b'})).toBe('')
    }
  })

  it('rolls out: one statement per measurement set, previous kept, oldest dropped, never arrays of values', () => {
    const r = rng(7)
    const [a, b, c] = [set(r), set(r), set(r)]
    const base = parsePolicy(JSON.stringify({Version: '2012-10-17', Statement: [{Sid: 'admin', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, NotAction: 'kms:Decrypt', Resource: '*'}]}))
    // The lockfile's history as `nle build` keeps it: newest earlier build first.
    const p1 = patchPolicy(base, options(a)).policy
    const p2 = patchPolicy(p1, options(b, {recordedPrevious: [a]})).policy
    const p3 = patchPolicy(p2, options(c, {recordedPrevious: [b, a]}))
    const owned = p3.policy.Statement.filter((s) => isOwned(s, 'demo'))
    expect(owned.map((s) => s.Sid)).toEqual(['nle-demo-enclave-current', 'nle-demo-enclave-previous-1'])
    expect(owned[0]!.Condition!.StringEqualsIgnoreCase!['kms:RecipientAttestation:PCR0']).toBe(c.PCR0)
    expect(owned[1]!.Condition!.StringEqualsIgnoreCase!['kms:RecipientAttestation:PCR0']).toBe(b.PCR0)
    expect(p3.removed).toEqual([a])
    expect(p3.dropped).toEqual([expect.objectContaining({sid: 'nle-demo-enclave-previous-1', set: a, reason: 'outside-window'})])
    for (const s of owned) for (const v of Object.values(s.Condition!.StringEqualsIgnoreCase!)) expect(typeof v).toBe('string')
    // A mixed combination (PCR0 of c with PCR1 of b) is not admitted.
    expect(admits(p3.policy, {roleArn: ROLE, set: {...c, PCR1: b.PCR1}, operation: 'Decrypt'})).toBe(false)
    expect(admits(p3.policy, {roleArn: ROLE, set: b, operation: 'Decrypt'})).toBe(true)
    expect(admits(p3.policy, {roleArn: ROLE, set: a, operation: 'Decrypt'})).toBe(false)
    // A rollback moves the set back to current without duplicating it.
    const back = patchPolicy(p3.policy, options(b, {recordedPrevious: [c, a]})).policy.Statement.filter((s) => isOwned(s, 'demo'))
    expect(back).toHaveLength(2)
    expect(back[0]!.Condition!.StringEqualsIgnoreCase!['kms:RecipientAttestation:PCR0']).toBe(b.PCR0)
  })

  it('keeps an earlier set only when the lockfile records it: a forged "previous" statement is dropped, with the reason', () => {
    const r = rng(11)
    const [a, b, forged] = [set(r), set(r), set(r)]
    const admin = {Sid: 'admin', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, NotAction: 'kms:Decrypt', Resource: '*'}
    const rolled = patchPolicy(patchPolicy(parsePolicy(JSON.stringify({Statement: [admin]})), options(a)).policy, options(b, {recordedPrevious: [a]})).policy
    // Someone who can write the policy adds a statement under nle's Sid scheme for an image of their own.
    const hostile = structuredClone(rolled)
    hostile.Statement.push(ownedStatement({sid: 'nle-demo-enclave-previous-2', set: forged, roleArn: ROLE, operations: ['Decrypt']}))
    for (const keepPrevious of [1, 2, 5]) {
      const patched = patchPolicy(hostile, options(b, {recordedPrevious: [a], keepPrevious}))
      expect(patched.sets.map((x) => x.set)).toEqual([b, a])
      expect(patched.dropped).toEqual([{sid: 'nle-demo-enclave-previous-2', set: forged, reason: 'unrecorded', message: expect.stringContaining('lockfile')}])
      expect(admits(patched.policy, {roleArn: ROLE, set: forged, operation: 'Decrypt'})).toBe(false)
      expect(admits(patched.policy, {roleArn: ROLE, set: a, operation: 'Decrypt'})).toBe(true)
    }
    // The forged set in place of the real previous one (same Sid): dropped too, and the real one is not brought back.
    const swapped = structuredClone(rolled)
    swapped.Statement = swapped.Statement.map((x) => (x.Sid === 'nle-demo-enclave-previous-1' ? ownedStatement({sid: x.Sid, set: forged, roleArn: ROLE, operations: ['Decrypt']}) : x))
    const again = patchPolicy(swapped, options(b, {recordedPrevious: [a]}))
    expect(again.sets.map((x) => x.set)).toEqual([b])
    expect(again.dropped.map((d) => d.reason)).toEqual(['unrecorded'])
    // A lockfile without history (an older one, or a first build): no earlier set is kept.
    expect(patchPolicy(rolled, options(b)).dropped).toEqual([expect.objectContaining({set: a, reason: 'unrecorded'})])
    // The record decides the order kept (newest first), not the statements' order.
    const c = set(r)
    const both = patchPolicy(patchPolicy(rolled, options(c, {recordedPrevious: [b, a], keepPrevious: 2})).policy, options(c, {recordedPrevious: [a, b], keepPrevious: 1}))
    expect(both.sets.map((x) => x.set)).toEqual([c, a])
  })

  it('pins PCR8 for a signed EIF and lists the configured operations', () => {
    const m = set(rng(3), true)
    const s = patchPolicy(parsePolicy('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}]}'), options(m, {operations: ['Decrypt', 'GenerateDataKey', 'GenerateRandom']})).policy.Statement.at(-1)!
    expect(s.Action).toEqual(['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateRandom'])
    expect(s.Principal).toEqual({AWS: ROLE})
    expect(Object.keys(s.Condition!.StringEqualsIgnoreCase!)).toEqual(['kms:RecipientAttestation:PCR0', 'kms:RecipientAttestation:PCR1', 'kms:RecipientAttestation:PCR2', 'kms:RecipientAttestation:PCR8'])
  })

  it('refuses all-zero measurements unless allowDebug', () => {
    const zero = {PCR0: '0'.repeat(96), PCR1: '0'.repeat(96), PCR2: '0'.repeat(96)}
    const p = parsePolicy('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}]}')
    expect(() => patchPolicy(p, options(zero))).toThrow(expect.objectContaining({code: 'POLICY_DEBUG_PCRS'}))
    expect(patchPolicy(p, options(zero, {allowDebug: true})).sets).toHaveLength(1)
    expect(() => patchPolicy(p, options({...zero, PCR0: 'xyz'}))).toThrow(expect.objectContaining({code: 'POLICY_BAD_MEASUREMENTS'}))
  })

  it('rejects invalid policies with POLICY_BAD_JSON / POLICY_INVALID', () => {
    expect(() => parsePolicy('{')).toThrow(expect.objectContaining({code: 'POLICY_BAD_JSON'}))
    for (const bad of ['[]', '{"Statement":[]}', '{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*"}]}', '{"Statement":[{"Effect":"Allow","Action":"kms:*"}]}', '{"Statement":[{"Sid":"a","Effect":"Allow","Principal":"*","Action":"x"},{"Sid":"a","Effect":"Allow","Principal":"*","Action":"y"}]}', '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"x","NotAction":"y"}]}']) {
      expect(() => parsePolicy(bad), bad).toThrow(expect.objectContaining({code: 'POLICY_INVALID'}))
    }
  })
})

describe('exposures (what reaches the host without the attested enclave)', () => {
  it('reports statements that let the host role decrypt without attestation, and proposes fixes that close them', () => {
    const m = set(rng(11))
    const policy = parsePolicy(
      JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: 'kms:*', Resource: '*'},
          {Sid: 'direct', Effect: 'Allow', Principal: {AWS: ROLE}, Action: ['kms:Decrypt', 'kms:Encrypt'], Resource: '*'},
          {Sid: 'gated', Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*', Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': m.PCR0, 'kms:RecipientAttestation:PCR1': m.PCR1, 'kms:RecipientAttestation:PCR2': m.PCR2}}},
          {Sid: 'pattern', Effect: 'Allow', Principal: '*', Action: 'kms:Decrypt', Resource: '*', Condition: {StringLike: {'kms:RecipientAttestation:PCR0': '*'}}},
          {Sid: 'other', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::999999999999:role/x`}, Action: 'kms:Decrypt', Resource: '*'},
        ],
      }),
    )
    const ctx = {project: 'demo', roleArn: ROLE, current: m, kept: [], recorded: []}
    const found = analyzeExposure(policy, ctx).exposures
    expect(found.map((f) => [f.sid, f.kind, f.via])).toEqual([
      ['Enable IAM User Permissions', 'unconditioned-access', 'account'],
      ['direct', 'unconditioned-access', 'role'],
      ['pattern', 'unconditioned-access', 'everyone'],
    ])
    // The account statement: the host role is kept out by aws:PrincipalArn (not NotAction: ["kms:Decrypt"], which left ReEncrypt, CreateGrant and PutKeyPolicy to IAM).
    expect(found[0]!.actions).toEqual([...JUDGED_OPERATIONS])
    expect(found[0]!.proposed).toEqual({Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: 'kms:*', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': ROLE}}})
    expect(found[1]!.proposed!.Action).toBe('kms:Encrypt')
    const fixed = applyProposals(policy, analyzeExposure(policy, ctx))
    expect(analyzeExposure(fixed, ctx).exposures).toEqual([])
    expect(fixed.Statement.map((s) => s.Sid)).toEqual(['Enable IAM User Permissions', 'direct', 'gated', 'pattern', 'other'])
  })
})

describe('lockout safety and evaluation', () => {
  it('detects a patch that removes the caller\'s PutKeyPolicy path', () => {
    const admin = `arn:aws:sts::${ACCOUNT}:assumed-role/admin/session-1`
    const before = parsePolicy(JSON.stringify({Statement: [{Sid: 'nle-demo-enclave-current', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:role/admin`}, Action: 'kms:*', Resource: '*'}]}))
    const after = patchPolicy(before, options(set(rng(1)))).policy
    expect(lockoutCheck(before, after, admin)).toMatchObject({before: true, after: false, lost: true, caller: `arn:aws:iam::${ACCOUNT}:role/admin`})
    const starter = starterPolicy(ACCOUNT, options(set(rng(2))))
    expect(lockoutCheck(starter, patchPolicy(starter, options(set(rng(4)))).policy, admin).lost).toBe(false)
  })

  it('explicit Deny wins; a missing attestation fails a conditioned Allow', () => {
    const m = set(rng(9))
    const p = starterPolicy(ACCOUNT, options(m))
    const key = `arn:aws:kms:us-east-1:${ACCOUNT}:key/k`
    expect(evaluatePolicy(p, {principalArn: ROLE, action: 'kms:Decrypt', resourceArn: key}, {accountRoot: 'grant'}).decision).toBe('implicit-deny')
    expect(admits(p, {roleArn: ROLE, set: m, operation: 'Decrypt'})).toBe(true)
    const denied = {...p, Statement: [...p.Statement, {Effect: 'Deny' as const, Principal: '*', Action: 'kms:Decrypt', Resource: '*', Condition: {StringNotEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': 'ff'.repeat(48)}}}]}
    expect(admits(denied, {roleArn: ROLE, set: m, operation: 'Decrypt'})).toBe(false)
  })
})

