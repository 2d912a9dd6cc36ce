/** One regression case per bypass class (the property tests in ./bypass.test.ts vary them), plus the checker's verdicts. */
import {describe, expect, it} from 'vitest'

import {checkPolicy} from './check.js'
import {analyzeExposure, applyProposals, excludeHost, grantExposures} from './exposure.js'
import {type KeyPolicy, type MeasurementSet, type PolicyStatement, ownedStatement, parsePolicy, patchPolicy, starterPolicy} from './policy.js'

const ACCOUNT = '111122223333'
const ROLE = `arn:aws:iam::${ACCOUNT}:role/enclave-host`
const ROOT = `arn:aws:iam::${ACCOUNT}:root`
const h = (c: string): string => c.repeat(96)
const CURRENT: MeasurementSet = {PCR0: h('a'), PCR1: h('b'), PCR2: h('c')}
const OLD: MeasurementSet = {PCR0: h('d'), PCR1: h('e'), PCR2: h('f')}
const ZERO = h('0')
const P = 'kms:RecipientAttestation:'

/** A sound policy (admins keep the key, the host role is kept out of the delegation, nle's statement) plus `extra`. */
function policyWith(...extra: PolicyStatement[]): KeyPolicy {
  return parsePolicy(
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        {Sid: 'Key administrators', Effect: 'Allow', Principal: {AWS: ROOT}, Action: 'kms:*', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': ROLE}}},
        ownedStatement({sid: 'nle-demo-enclave-current', set: CURRENT, roleArn: ROLE, operations: ['Decrypt']}),
        ...extra,
      ],
    }),
  )
}

const check = (policy: KeyPolicy, extra: {strict?: boolean; allowDebug?: boolean; measurements?: MeasurementSet; recorded?: MeasurementSet[]} = {}) =>
  checkPolicy({policy, project: 'demo', roleArn: ROLE, measurements: extra.measurements ?? CURRENT, keepPrevious: 1, recordedPrevious: extra.recorded ?? [], operations: ['Decrypt'], strict: extra.strict, allowDebug: extra.allowDebug})
const kinds = (policy: KeyPolicy, extra = {}): string[] => check(policy, extra).findings.map((f) => f.kind)
const allow = (s: Partial<PolicyStatement>): PolicyStatement => ({Sid: 'x', Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*', ...s})

describe('regressions, one per class', () => {
  it('the sound policy passes, and so does the starter policy nle writes for a new key', () => {
    expect(check(policyWith())).toMatchObject({verdict: 'ok', exitCode: 0, findings: []})
    expect(check(starterPolicy(ACCOUNT, {project: 'demo', roleArn: ROLE, measurements: CURRENT, keepPrevious: 1, operations: ['Decrypt']}))).toMatchObject({verdict: 'ok', exitCode: 0})
  })

  it('debug pin: PCR0 or ImageSha384 all zeros is an error unless --allow-debug', () => {
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: ZERO}}})))).toContain('debug-pin')
    expect(kinds(policyWith(allow({Condition: {StringEquals: {[`${P}ImageSha384`]: ZERO, [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}}})))).toContain('debug-pin')
    const full = check(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: ZERO, [`${P}PCR1`]: ZERO, [`${P}PCR2`]: ZERO}}})))
    expect(full).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(full.headline).toMatch(/^debug-mode enclave admitted: /)
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: ZERO, [`${P}PCR1`]: ZERO, [`${P}PCR2`]: ZERO}}})), {allowDebug: true})).not.toContain('debug-pin')
  })

  it('stale pin: a set that is neither current nor kept, also through multi-valued pins (mixed combinations)', () => {
    const stale = check(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: OLD.PCR0, [`${P}PCR1`]: OLD.PCR1, [`${P}PCR2`]: OLD.PCR2}}})))
    expect(stale).toMatchObject({verdict: 'stale', exitCode: 2})
    expect(check(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: OLD.PCR0, [`${P}PCR1`]: OLD.PCR1, [`${P}PCR2`]: OLD.PCR2}}})), {strict: true}).exitCode).toBe(1)
    const mixed = check(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: [CURRENT.PCR0, OLD.PCR0], [`${P}PCR1`]: [CURRENT.PCR1, OLD.PCR1], [`${P}PCR2`]: CURRENT.PCR2}}})))
    expect(mixed.findings.filter((f) => f.kind === 'stale-set')).toHaveLength(3)
  })

  it("unrecorded measurements: a set one of nle's statements pins is trusted only if the lockfile records it, whatever the Sid", () => {
    const owned = (sid: string, set: Partial<MeasurementSet>): PolicyStatement => ({...ownedStatement({sid, set: CURRENT, roleArn: ROLE, operations: ['Decrypt']}), Condition: {StringEqualsIgnoreCase: Object.fromEntries(Object.entries(set).map(([k, v]) => [`${P}${k}`, v]))}})
    // A statement named like a rollout's, pinning an image nobody built here.
    const forged = check(policyWith(owned('nle-demo-enclave-previous-1', OLD)))
    expect(forged).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(forged.findings).toEqual([expect.objectContaining({kind: 'unrecorded-measurements', severity: 'error', sid: 'nle-demo-enclave-previous-1'})])
    expect(forged.findings[0]!.message).toContain('"nle-demo-enclave-previous-1"')
    expect(forged.findings[0]!.message).toContain(`PCR0 ${OLD.PCR0.slice(0, 12)}…`)
    expect(forged.findings[0]!.fix).toMatch(/nle policy apply/)
    expect(forged.headline).toMatch(/^unrecorded measurements admitted: /)
    expect(forged.sets.find((s) => s.sid === 'nle-demo-enclave-previous-1')!.status).toBe('unrecorded')
    // The same statement when the lockfile records OLD as the last build: a rollout, ok.
    expect(check(policyWith(owned('nle-demo-enclave-previous-1', OLD)), {recorded: [OLD]})).toMatchObject({verdict: 'ok', exitCode: 0})
    // Recorded, but beyond kms.keepPrevious: stale, as before (a warning).
    const older = {PCR0: h('1'), PCR1: h('2'), PCR2: h('3')}
    const beyond = check(policyWith(owned('nle-demo-enclave-previous-1', OLD), owned('nle-demo-enclave-previous-2', older)), {recorded: [OLD, older]})
    expect(beyond).toMatchObject({verdict: 'stale', exitCode: 2, findings: [{kind: 'stale-set', sid: 'nle-demo-enclave-previous-2'}]})
    // Any nle Sid, with any pin of an unknown image: the current statement's name, a partial pin, a mixed one.
    expect(kinds(policyWith(owned('nle-demo-enclave-previous-7', OLD)))).toEqual(['unrecorded-measurements'])
    expect(kinds(policyWith(owned('nle-demo-enclave-previous-1', {PCR0: OLD.PCR0})))).toEqual(['unrecorded-measurements', 'partial-pin'])
    expect(kinds(policyWith(owned('nle-demo-enclave-previous-1', {PCR0: CURRENT.PCR0, PCR1: OLD.PCR1, PCR2: CURRENT.PCR2})))).toEqual(['unrecorded-measurements'])
    // A foreign statement for an old set is judged as before (stale, a warning): its Sid never claimed anything.
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: OLD.PCR0, [`${P}PCR1`]: OLD.PCR1, [`${P}PCR2`]: OLD.PCR2}}})))).toEqual(['stale-set'])
    // apply drops the forged statement, and check passes again.
    const patched = patchPolicy(policyWith(owned('nle-demo-enclave-previous-1', OLD)), {project: 'demo', roleArn: ROLE, measurements: CURRENT, keepPrevious: 1, recordedPrevious: [], operations: ['Decrypt']})
    expect(patched.dropped).toEqual([expect.objectContaining({sid: 'nle-demo-enclave-previous-1', reason: 'unrecorded'})])
    expect(check(patched.policy)).toMatchObject({verdict: 'ok', exitCode: 0})
  })

  it('partial pin: PCR0 only, a pattern in place of a value, PCR8 missing for a signed image', () => {
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: CURRENT.PCR0}}})))).toEqual(['partial-pin'])
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: CURRENT.PCR0, [`${P}PCR1`]: CURRENT.PCR1}, StringLike: {[`${P}PCR2`]: 'cc*'}}})))).toEqual(['partial-pin'])
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: OLD.PCR0}}})))).toEqual(['partial-pin', 'stale-set'])
    // A policy variable is substituted by AWS: it pins nothing nle can judge.
    expect(kinds(policyWith(allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: '${aws:PrincipalTag/pcr0}', [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}}})))).toEqual(['partial-pin'])
    const signed = {...CURRENT, PCR8: h('9')}
    const p = patchPolicy(policyWith(), {project: 'demo', roleArn: ROLE, measurements: signed, keepPrevious: 1, recordedPrevious: [], operations: ['Decrypt']}).policy
    expect(kinds({...p, Statement: [...p.Statement, allow({Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: CURRENT.PCR0, [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}}})]}, {measurements: signed})).toEqual(['partial-pin'])
  })

  it('operator tricks: IfExists, Null, negation, ForAllValues, StringLike "*" and unknown operators do not pin', () => {
    for (const condition of [
      {StringEqualsIgnoreCaseIfExists: {[`${P}PCR0`]: CURRENT.PCR0, [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}},
      {Null: {[`${P}PCR0`]: 'true'}},
      {Null: {[`${P}PCR0`]: 'false'}},
      {StringNotEqualsIgnoreCase: {[`${P}PCR0`]: ZERO}},
      {'ForAllValues:StringEquals': {[`${P}PCR0`]: CURRENT.PCR0, [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}},
      {StringLike: {[`${P}PCR0`]: '*'}},
      {NumericEquals: {[`${P}PCR0`]: '1'}},
      {StringEquals: {'kms:EncryptionContext:app': 'nle'}},
      {StringEquals: {'kms:CallerAccount': '${aws:PrincipalAccount}'}},
    ] as Record<string, Record<string, unknown>>[]) {
      const report = check(policyWith(allow({Condition: condition})))
      expect(report.findings.map((f) => f.kind), JSON.stringify(condition)).toContain('unconditioned-access')
      expect(report.headline, JSON.stringify(condition)).toMatch(/^unconditioned access: /)
    }
    // Uppercase hex under StringEquals can never match KMS's lowercase values: that statement admits nothing.
    expect(kinds(policyWith(allow({Condition: {StringEquals: {[`${P}PCR0`]: CURRENT.PCR0.toUpperCase(), [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}}})))).toEqual([])
  })

  it('ReEncrypt, CreateGrant, PutKeyPolicy: any access is a bypass, whatever the conditions (a positive Recipient pin makes them unreachable)', () => {
    for (const action of ['kms:ReEncrypt*', 'kms:ReEncryptFrom', 'kms:Re*', 'kms:CreateGrant', 'kms:PutKeyPolicy', 'kms:*crypt*']) {
      expect(kinds(policyWith(allow({Action: action}))), action).toContain('unconditioned-access')
      expect(kinds(policyWith(allow({Action: action, Condition: {Bool: {'kms:GrantIsForAWSResource': 'true'}}}))), action).toContain('unconditioned-access')
    }
    expect(kinds(policyWith(allow({Action: 'kms:ReEncrypt*', Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: CURRENT.PCR0, [`${P}PCR1`]: CURRENT.PCR1, [`${P}PCR2`]: CURRENT.PCR2}}})))).toEqual([])
    expect(kinds(policyWith(allow({Action: 'kms:ReEncryptTo'})))).toEqual([])
  })

  it('wildcard actions and NotAction that does not exclude them', () => {
    for (const s of [{Action: '*'}, {Action: 'kms:*'}, {Action: 'KMS:GENERATEDATAKEY'}, {NotAction: 'kms:Decrypt'}, {NotAction: ['iam:*']}]) {
      const statement = allow(s)
      if ('NotAction' in s) delete (statement as Partial<PolicyStatement>).Action
      expect(kinds(policyWith(statement)), JSON.stringify(s)).toContain('unconditioned-access')
    }
  })

  it('principals as AWS matches them: sessions, the account, *, {"AWS": "*"}, NotPrincipal, aws:PrincipalArn / aws:PrincipalAccount conditions', () => {
    const forms: Partial<PolicyStatement>[] = [
      {Principal: {AWS: `arn:aws:sts::${ACCOUNT}:assumed-role/enclave-host/i-0abc`}},
      {Principal: {AWS: `arn:aws:sts::${ACCOUNT}:assumed-role/enclave-host/*`}},
      {Principal: {AWS: ROOT}},
      {Principal: {AWS: ACCOUNT}},
      {Principal: '*'},
      {Principal: {AWS: '*'}},
      {Principal: {AWS: `arn:aws:iam::${ACCOUNT}:role/path/enclave-host`}},
      {Principal: '*', Condition: {ArnLike: {'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/enclave-*`}}},
      {Principal: '*', Condition: {'ForAnyValue:StringLike': {'aws:PrincipalArn': '*host*'}}},
      {Principal: '*', Condition: {StringEquals: {'aws:PrincipalAccount': ACCOUNT}}},
      {Principal: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/other`}}},
    ]
    for (const form of forms) expect(kinds(policyWith(allow(form))), JSON.stringify(form)).toContain('unconditioned-access')
    const notPrincipal = allow({NotPrincipal: {AWS: ROLE}})
    delete (notPrincipal as Partial<PolicyStatement>).Principal
    expect(kinds(policyWith(notPrincipal))).toContain('unconditioned-access')
    // Not the host: another account, another role by condition, a service.
    for (const form of [{Principal: {AWS: 'arn:aws:iam::999999999999:root'}}, {Principal: '*', Condition: {ArnEquals: {'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/other`}}}, {Principal: {Service: 'logs.amazonaws.com'}}]) {
      expect(kinds(policyWith(allow(form))), JSON.stringify(form)).toEqual([])
    }
  })

  it('a Deny the host cannot avoid closes a path; one it can avoid does not', () => {
    const open = allow({Principal: {AWS: ROOT}, Action: 'kms:*'})
    const denyUnattested: PolicyStatement = {Sid: 'deny', Effect: 'Deny', Principal: {AWS: ROLE}, Action: ['kms:Decrypt', 'kms:GenerateDataKey*', 'kms:DeriveSharedSecret'], Resource: '*', Condition: {Null: {[`${P}PCR0`]: 'true'}}}
    const denyRest: PolicyStatement = {Sid: 'deny-rest', Effect: 'Deny', Principal: '*', Action: ['kms:ReEncrypt*', 'kms:CreateGrant', 'kms:PutKeyPolicy'], Resource: '*', Condition: {ArnEquals: {'aws:PrincipalArn': ROLE}}}
    const withDenies = check(policyWith(open, denyUnattested, denyRest)).exposures
    // What is left is an enclave of the host's choosing (the delegation pins nothing): no request without a Recipient, no ReEncrypt/CreateGrant/PutKeyPolicy.
    expect(withDenies.map((e) => [e.kind, e.actions])).toEqual([['unconditioned-access', ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyPair']]])
    expect(withDenies[0]!.message).toMatch(/any enclave image/)
    expect(withDenies[0]!.message).not.toMatch(/without a Recipient|ReEncrypt/)
    // A guard that denies the host any enclave but the current one closes the delegation for the attested operations; one that pins PCR0 only leaves a partial pin.
    const guard = (keys: string[]): PolicyStatement[] => keys.map((k, i) => ({Sid: `guard-${i}`, Effect: 'Deny', Principal: {AWS: ROLE}, Action: ['kms:Decrypt', 'kms:GenerateDataKey*', 'kms:DeriveSharedSecret'], Resource: '*', Condition: {StringNotEqualsIgnoreCase: {[`${P}${k}`]: CURRENT[k as 'PCR0']}}}))
    expect(check(policyWith(open, denyRest, ...guard(['PCR0', 'PCR1', 'PCR2'])))).toMatchObject({exitCode: 0, findings: []})
    expect(kinds(policyWith(open, denyRest, ...guard(['PCR0'])))).toEqual(['partial-pin'])
    // A Deny pattern leaves every image it does not match: that is no pin either.
    const patterned: PolicyStatement = {Sid: 'pattern', Effect: 'Deny', Principal: {AWS: ROLE}, Action: ['kms:Decrypt', 'kms:GenerateDataKey*', 'kms:DeriveSharedSecret'], Resource: '*', Condition: {StringNotLike: {[`${P}PCR0`]: 'aa*'}}}
    expect(kinds(policyWith(open, denyRest, patterned, ...guard(['PCR1', 'PCR2'])))).toEqual(['partial-pin'])
    const avoidable: PolicyStatement = {...denyUnattested, Condition: {...denyUnattested.Condition, StringEquals: {'kms:EncryptionContext:app': 'x'}}}
    expect(check(policyWith(open, avoidable, denyRest)).exposures[0]!.message).toMatch(/without a Recipient gets the plaintext/)
  })
})

describe('grants (not in the policy, not bound by its conditions)', () => {
  it('a grant to the host role, a session or the account with a judged operation is unconditioned access; the check fails on it', () => {
    const grants = [
      {grantId: 'g1', granteePrincipal: ROLE, operations: ['Decrypt']},
      {grantId: 'g2', granteePrincipal: `arn:aws:sts::${ACCOUNT}:assumed-role/enclave-host/i-1`, operations: ['ReEncryptFrom', 'DescribeKey']},
      {grantId: 'g3', granteePrincipal: ROOT, operations: ['CreateGrant']},
      {grantId: 'g4', granteePrincipal: ROLE, operations: ['Encrypt', 'DescribeKey']},
      {grantId: 'g5', granteePrincipal: `arn:aws:iam::${ACCOUNT}:role/other`, operations: ['Decrypt']},
      {grantId: 'g6', granteePrincipal: 'ebs.amazonaws.com', operations: ['Decrypt']},
    ]
    expect(grantExposures(grants, {roleArn: ROLE}).map((e) => [e.message.split(' ')[1], e.actions])).toEqual([
      ['g1', ['kms:Decrypt']],
      ['g2', ['kms:ReEncryptFrom']],
      ['g3', ['kms:CreateGrant']],
    ])
    const report = checkPolicy({policy: policyWith(), project: 'demo', roleArn: ROLE, measurements: CURRENT, keepPrevious: 1, recordedPrevious: [], operations: ['Decrypt'], grants: {grants, complete: true}})
    expect(report).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(checkPolicy({policy: policyWith(), project: 'demo', roleArn: ROLE, measurements: CURRENT, keepPrevious: 1, recordedPrevious: [], operations: ['Decrypt'], grants: {grants: [], complete: false}})).toMatchObject({exitCode: 2, findings: [{kind: 'grants-unread'}]})
  })
})

describe('proposed fixes', () => {
  it('keep the host out of shared statements by aws:PrincipalArn, trim host-only ones, and close what they flag', () => {
    const policy = policyWith(
      {Sid: 'default', Effect: 'Allow', Principal: {AWS: ROOT}, Action: 'kms:*', Resource: '*'},
      {Sid: 'host-extra', Effect: 'Allow', Principal: {AWS: ROLE}, Action: ['kms:DescribeKey', 'kms:ReEncrypt*', 'kms:CreateGrant'], Resource: '*'},
      {Sid: 'anyone', Effect: 'Allow', Principal: '*', Action: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': 'arn:aws:iam::1:role/x'}}},
    )
    const ctx = {project: 'demo', roleArn: ROLE, current: CURRENT, kept: [], recorded: []}
    const report = analyzeExposure(policy, ctx)
    const bySid = Object.fromEntries(report.exposures.map((e) => [e.sid, e.proposed]))
    expect(bySid.default).toEqual({Sid: 'default', Effect: 'Allow', Principal: {AWS: ROOT}, Action: 'kms:*', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': ROLE}}})
    expect(bySid['host-extra']).toMatchObject({Action: 'kms:DescribeKey'})
    expect(bySid.anyone!.Condition).toEqual({ArnNotEquals: {'aws:PrincipalArn': ['arn:aws:iam::1:role/x', ROLE]}})
    expect(check(applyProposals(policy, report)).findings).toEqual([])
    expect(excludeHost({Effect: 'Allow', Principal: '*', Action: 'kms:*'}, ROLE).Condition).toEqual({ArnNotEquals: {'aws:PrincipalArn': ROLE}})
  })

  it('apply leaves foreign statements alone but reports them with the fix; owned ones it rewrites', () => {
    const {Condition: _pins, ...unpinned} = ownedStatement({sid: 'nle-demo-enclave-current', set: CURRENT, roleArn: ROLE, operations: ['Decrypt']})
    const tampered = {...unpinned, Principal: '*', Action: 'kms:*'}
    const policy = parsePolicy(JSON.stringify({Statement: [{Sid: 'Key administrators', Effect: 'Allow', Principal: {AWS: ROOT}, Action: 'kms:*', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': ROLE}}}, tampered]}))
    expect(kinds(policy)).toContain('unconditioned-access')
    const patched = patchPolicy(policy, {project: 'demo', roleArn: ROLE, measurements: CURRENT, keepPrevious: 1, recordedPrevious: [], operations: ['Decrypt']}).policy
    expect(check(patched).findings).toEqual([])
  })
})

describe('input errors are not drift', () => {
  it('duplicate keys, case variants of elements or condition keys are POLICY_INVALID with exit 3', () => {
    for (const text of [
      '{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*"}],"Statement":[]}',
      `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"${ROLE}"},"Action":"kms:Decrypt","Condition":{"StringEquals":{"${P}PCR0":"${CURRENT.PCR0}","${P}PCR0":"${ZERO}"}}}]}`,
      `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"${ROLE}"},"Action":"kms:Decrypt","condition":{"StringEquals":{"${P}PCR0":"${ZERO}"}}}]}`,
      `{"Statement":[{"Effect":"Allow","Principal":{"aws":"${ROLE}"},"Action":"kms:Decrypt"}]}`,
      `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"${ROLE}"},"Action":"kms:Decrypt","Condition":{"StringEquals":{"${P}PCR0":"${CURRENT.PCR0}","kms:recipientattestation:pcr0":"${ZERO}"}}}]}`,
    ]) {
      expect(() => parsePolicy(text), text).toThrow(expect.objectContaining({code: 'POLICY_INVALID', exitCode: 3}))
    }
    expect(() => parsePolicy('{')).toThrow(expect.objectContaining({code: 'POLICY_BAD_JSON', exitCode: 3}))
  })
})
