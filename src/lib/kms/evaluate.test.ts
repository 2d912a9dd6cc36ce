import {describe, expect, it} from 'vitest'

import {evaluateCondition, evaluatePolicy, principalOf, recipientContextKeys} from './evaluate.js'
import {parsePolicy} from './policy.js'

const ROLE = 'arn:aws:iam::111122223333:role/host'
const KEY = 'arn:aws:kms:us-east-1:111122223333:key/k'
const PCR0 = 'ab'.repeat(48)

describe('condition evaluation', () => {
  const keys = recipientContextKeys({0: PCR0.toUpperCase(), 1: 'cd'.repeat(48)})

  it('compares recipient PCRs case-insensitively with StringEqualsIgnoreCase, ImageSha384 = PCR0', () => {
    expect(keys['kms:RecipientAttestation:PCR0']).toBe(PCR0)
    expect(evaluateCondition({StringEqualsIgnoreCase: {'kms:RecipientAttestation:ImageSha384': PCR0.toUpperCase()}}, keys)).toBe(true)
    expect(evaluateCondition({StringEquals: {'kms:recipientattestation:pcr0': PCR0}}, keys)).toBe(true)
    expect(evaluateCondition({StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': 'ff'.repeat(48)}}, keys)).toBe(false)
  })

  it('an absent key fails ordinary operators, passes negated ones and IfExists; Null checks presence', () => {
    expect(evaluateCondition({StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': PCR0}}, {})).toBe(false)
    expect(evaluateCondition({StringNotEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': PCR0}}, {})).toBe(true)
    expect(evaluateCondition({StringEqualsIgnoreCaseIfExists: {'kms:RecipientAttestation:PCR0': PCR0}}, {})).toBe(true)
    expect(evaluateCondition({Null: {'kms:RecipientAttestation:PCR0': 'true'}}, {})).toBe(true)
    expect(evaluateCondition({Null: {'kms:RecipientAttestation:PCR0': 'false'}}, keys)).toBe(true)
    expect(evaluateCondition({StringLike: {'kms:RecipientAttestation:PCR1': 'cdcd*'}}, keys)).toBe(true)
  })

  it('an unknown operator never grants and always denies', () => {
    const policy = parsePolicy(
      JSON.stringify({
        Statement: [
          {Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*', Condition: {NumericLessThan: {'kms:x': '1'}}},
          {Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Encrypt', Resource: '*'},
          {Effect: 'Deny', Principal: '*', Action: 'kms:Encrypt', Resource: '*', Condition: {DateLessThan: {'aws:CurrentTime': '2000-01-01T00:00:00Z'}}},
        ],
      }),
    )
    expect(evaluatePolicy(policy, {principalArn: ROLE, action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('implicit-deny')
    expect(evaluatePolicy(policy, {principalArn: ROLE, action: 'kms:Encrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('deny')
  })
})

describe('principals, actions, resources', () => {
  it('matches roles, assumed-role sessions, the account root (by option), wildcards and NotPrincipal', () => {
    expect(principalOf('arn:aws:sts::111122223333:assumed-role/host/i-123')).toBe(ROLE)
    const policy = parsePolicy(JSON.stringify({Statement: [{Effect: 'Allow', Principal: {AWS: '111122223333'}, Action: 'kms:Describe*', Resource: '*'}, {Effect: 'Allow', Principal: {AWS: 'arn:aws:iam::111122223333:role/path/host'}, Action: ['kms:Encrypt'], Resource: KEY}]}))
    const ask = (principalArn: string, action: string, accountRoot: 'grant' | 'ignore' = 'grant', resourceArn = KEY): string => evaluatePolicy(policy, {principalArn, action, resourceArn}, {accountRoot}).decision
    expect(ask('arn:aws:sts::111122223333:assumed-role/host/s', 'kms:Encrypt')).toBe('allow')
    expect(ask(ROLE, 'kms:DescribeKey')).toBe('allow')
    expect(ask(ROLE, 'kms:describekey', 'ignore')).toBe('implicit-deny')
    expect(ask('arn:aws:iam::999999999999:role/host', 'kms:Encrypt')).toBe('implicit-deny')
    expect(ask(ROLE, 'kms:Encrypt', 'grant', 'arn:aws:kms:us-east-1:111122223333:key/other')).toBe('implicit-deny')
    // Deny + NotPrincipal excludes a principal only when it names it and its account (IAM: otherwise the account, and so the principal, stays denied).
    const not = parsePolicy(JSON.stringify({Statement: [{Effect: 'Deny', NotPrincipal: {AWS: [ROLE, '111122223333']}, Action: 'kms:*', Resource: '*'}, {Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*'}]}))
    expect(evaluatePolicy(not, {principalArn: ROLE, action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('allow')
    expect(evaluatePolicy(not, {principalArn: 'arn:aws:iam::111122223333:user/eve', action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('deny')
    const roleOnly = parsePolicy(JSON.stringify({Statement: [{Effect: 'Deny', NotPrincipal: {AWS: ROLE}, Action: 'kms:*', Resource: '*'}, {Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*'}]}))
    expect(evaluatePolicy(roleOnly, {principalArn: ROLE, action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('deny')
    // Allow + NotPrincipal is not supported by AWS: it never allows here.
    const allowNot = parsePolicy(JSON.stringify({Statement: [{Effect: 'Allow', NotPrincipal: {AWS: 'arn:aws:iam::111122223333:user/eve'}, Action: 'kms:*', Resource: '*'}]}))
    expect(evaluatePolicy(allowNot, {principalArn: ROLE, action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('implicit-deny')
  })
})

describe('IAM semantics the local KMS must not be more permissive than', () => {
  const ask = (statement: Record<string, unknown>, principalArn = ROLE, keys = {}): string =>
    evaluatePolicy(parsePolicy(JSON.stringify({Statement: [{Effect: 'Allow', Action: 'kms:Decrypt', Resource: '*', ...statement}]})), {principalArn, action: 'kms:Decrypt', resourceArn: KEY, keys}, {accountRoot: 'grant'}).decision

  it('set operators: ForAllValues with a missing key is true, ForAnyValue with a missing key is false (negated too)', () => {
    expect(evaluateCondition({'ForAllValues:StringEquals': {'kms:EncryptionContextKeys': 'app'}}, {})).toBe(true)
    expect(evaluateCondition({'ForAllValues:StringEquals': {'kms:EncryptionContextKeys': 'app'}}, {'kms:EncryptionContextKeys': []})).toBe(true)
    expect(evaluateCondition({'ForAllValues:StringEquals': {'kms:EncryptionContextKeys': 'app'}}, {'kms:EncryptionContextKeys': ['app', 'x']})).toBe(false)
    expect(evaluateCondition({'ForAnyValue:StringEquals': {'kms:EncryptionContextKeys': 'app'}}, {})).toBe(false)
    expect(evaluateCondition({'ForAnyValue:StringNotEquals': {'kms:EncryptionContextKeys': 'app'}}, {})).toBe(false)
    expect(evaluateCondition({'ForAnyValue:StringEquals': {'kms:EncryptionContextKeys': 'app'}}, {'kms:EncryptionContextKeys': ['x', 'app']})).toBe(true)
    expect(evaluateCondition({'ForAllValues:StringNotEquals': {'kms:EncryptionContextKeys': 'app'}}, {})).toBe(true)
  })

  it('ARN operators compare each of the six parts; a * never crosses a colon; case-sensitive', () => {
    expect(evaluateCondition({ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::*:role/host'}}, {'aws:PrincipalArn': ROLE})).toBe(true)
    expect(evaluateCondition({ArnLike: {'aws:PrincipalArn': 'arn:aws:*'}}, {'aws:PrincipalArn': ROLE})).toBe(false)
    expect(evaluateCondition({ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::111122223333:role/*'}}, {'aws:PrincipalArn': ROLE})).toBe(true)
    expect(evaluateCondition({ArnEquals: {'aws:PrincipalArn': ROLE.toUpperCase()}}, {'aws:PrincipalArn': ROLE})).toBe(false)
    expect(evaluateCondition({ArnNotEquals: {'aws:PrincipalArn': [ROLE, 'arn:aws:iam::111122223333:role/x']}}, {'aws:PrincipalArn': ROLE})).toBe(false)
    expect(evaluateCondition({ArnEquals: {'aws:PrincipalArn': 'not-an-arn'}}, {'aws:PrincipalArn': 'not-an-arn'})).toBe(false)
  })

  it('principals in conditions: aws:PrincipalArn is the role for its sessions, and a request cannot set it', () => {
    const byArn = {Principal: '*', Condition: {ArnEquals: {'aws:PrincipalArn': ROLE}}}
    expect(ask(byArn, 'arn:aws:sts::111122223333:assumed-role/host/i-0abc')).toBe('allow')
    expect(ask(byArn, 'arn:aws:iam::111122223333:role/other', {'aws:PrincipalArn': ROLE})).toBe('implicit-deny')
    expect(ask({Principal: '*', Condition: {StringEquals: {'aws:PrincipalAccount': '111122223333'}}})).toBe('allow')
    expect(ask({Principal: '*', Condition: {StringEquals: {'aws:PrincipalAccount': '999999999999'}}})).toBe('implicit-deny')
    // Policy variables are not substituted here: such a block never grants.
    expect(ask({Principal: '*', Condition: {StringEquals: {'kms:CallerAccount': '${aws:PrincipalAccount}'}}})).toBe('implicit-deny')
  })

  it('principal values: {"AWS": "*"} is everyone, a session ARN names that session only, globs never match an Allow', () => {
    expect(ask({Principal: {AWS: '*'}})).toBe('allow')
    expect(ask({Principal: {AWS: 'arn:aws:sts::111122223333:assumed-role/host/i-1'}}, 'arn:aws:sts::111122223333:assumed-role/host/i-1')).toBe('allow')
    expect(ask({Principal: {AWS: 'arn:aws:sts::111122223333:assumed-role/host/i-1'}}, 'arn:aws:sts::111122223333:assumed-role/host/i-2')).toBe('implicit-deny')
    expect(ask({Principal: {AWS: 'arn:aws:sts::111122223333:assumed-role/host/*'}}, 'arn:aws:sts::111122223333:assumed-role/host/i-2')).toBe('implicit-deny')
    expect(ask({Principal: {AWS: 'arn:aws:iam::111122223333:role/*'}})).toBe('implicit-deny')
  })

  it('a debug-mode document (all zeros) only matches a policy that pins zeros; IfExists passes a request without a Recipient', () => {
    const zeros = recipientContextKeys({0: '0'.repeat(96), 1: '0'.repeat(96), 2: '0'.repeat(96)})
    expect(ask({Principal: {AWS: ROLE}, Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': PCR0}}}, ROLE, zeros)).toBe('implicit-deny')
    expect(ask({Principal: {AWS: ROLE}, Condition: {StringEqualsIgnoreCaseIfExists: {'kms:RecipientAttestation:PCR0': PCR0}}}, ROLE, {})).toBe('allow')
  })
})
