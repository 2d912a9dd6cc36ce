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
    const not = parsePolicy(JSON.stringify({Statement: [{Effect: 'Deny', NotPrincipal: {AWS: ROLE}, Action: 'kms:*', Resource: '*'}, {Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*'}]}))
    expect(evaluatePolicy(not, {principalArn: ROLE, action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('allow')
    expect(evaluatePolicy(not, {principalArn: 'arn:aws:iam::111122223333:user/eve', action: 'kms:Decrypt', resourceArn: KEY}, {accountRoot: 'grant'}).decision).toBe('deny')
  })
})
