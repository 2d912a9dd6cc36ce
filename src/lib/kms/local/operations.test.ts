// The local KMS operations on their state, without HTTP: pagination markers, the ReEncrypt
// decisions against both key policies, the key lifecycle, tags, and the Recipient refusal's words.
import {describe, expect, it} from 'vitest'

import {NsmSimulator} from '../../attestation/simulator.js'
import {type KeyPolicy} from '../policy.js'
import {KmsApiError, LocalKms, recipientRefusal} from './operations.js'
import {type LocalIdentity, newIdentity, newState} from './state.js'

function setup() {
  const state = newState()
  const [admin, host] = state.identities as [LocalIdentity, LocalIdentity]
  let now = Date.UTC(2026, 0, 1)
  const kms = new LocalKms({state, root: new NsmSimulator().root, maxAttestationAgeMs: 300_000, now: () => now, save: async () => undefined})
  const call = (op: string, input: Record<string, unknown>, who: LocalIdentity = admin) => kms.handle(op, input, who)
  const refusal = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p
    } catch (error) {
      if (error instanceof KmsApiError) return error.type
      throw error
    }
    throw new Error('expected a refusal')
  }
  const key = async (policy?: KeyPolicy): Promise<string> => ((await call('CreateKey', policy ? {Policy: JSON.stringify(policy), BypassPolicyLockoutSafetyCheck: true} : {})).KeyMetadata as {KeyId: string}).KeyId
  return {state, admin, host, call, refusal, key, advance: (ms: number) => (now += ms)}
}

describe('local KMS operations', () => {
  it('ListKeys pages with Limit and Marker over every key once; a marker it did not give is refused', async () => {
    const {call, refusal, key} = setup()
    const ids = new Set<string>()
    for (let i = 0; i < 7; i++) ids.add(await key())
    const seen: string[] = []
    let marker: string | undefined
    let pages = 0
    do {
      const page = await call('ListKeys', {Limit: 3, ...(marker ? {Marker: marker} : {})})
      pages++
      seen.push(...(page.Keys as {KeyId: string}[]).map((k) => k.KeyId))
      marker = page.Truncated ? (page.NextMarker as string) : undefined
      if (!page.Truncated) expect(page.NextMarker).toBeUndefined()
    } while (marker)
    expect(pages).toBe(3)
    expect(seen.sort()).toEqual([...ids].sort())
    for (const bad of ['not a marker!', 'AAAA', `AAAA.${'A'.repeat(22)}`, '', 'x'.repeat(2000)]) expect(await refusal(call('ListKeys', {Marker: bad}))).toMatch(/InvalidMarkerException|ValidationException/)
    expect(await refusal(call('ListKeys', {Limit: 0}))).toBe('ValidationException')
    expect(await refusal(call('ListKeys', {Limit: 1001}))).toBe('ValidationException')
  })

  it('ReEncrypt needs ReEncryptFrom on the source and ReEncryptTo on the destination; an attested-only Allow never grants it', async () => {
    const {state, host, call, refusal, key} = setup()
    const root = `arn:aws:iam::${state.accountId}:root`
    const source = await key({
      Version: '2012-10-17',
      Statement: [
        {Sid: 'admin', Effect: 'Allow', Principal: {AWS: root}, Action: ['kms:Create*', 'kms:Describe*', 'kms:Put*', 'kms:Get*'], Resource: '*'},
        {Sid: 'host encrypts', Effect: 'Allow', Principal: {AWS: host.arn}, Action: 'kms:Encrypt', Resource: '*'},
        {Sid: 'attested only', Effect: 'Allow', Principal: {AWS: host.arn}, Action: ['kms:Decrypt', 'kms:ReEncrypt*'], Resource: '*', Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': 'a'.repeat(96)}}},
      ],
    })
    const open = await key()
    const blob = (await call('Encrypt', {KeyId: source, Plaintext: Buffer.from('secret').toString('base64')}, host)).CiphertextBlob as string
    expect(await refusal(call('ReEncrypt', {CiphertextBlob: blob, DestinationKeyId: open}, host))).toBe('AccessDeniedException')
    expect(await refusal(call('ReEncrypt', {CiphertextBlob: blob, DestinationKeyId: open, Recipient: {}}, host))).toBe('ValidationException')
    // An unconditioned ReEncryptFrom on the source, but the destination's policy does not grant ReEncryptTo.
    const loose = await key({Version: '2012-10-17', Statement: [{Sid: 'all', Effect: 'Allow', Principal: {AWS: host.arn}, Action: 'kms:*', Resource: '*'}]})
    const closed = await key({Version: '2012-10-17', Statement: [{Sid: 'all', Effect: 'Allow', Principal: {AWS: host.arn}, Action: 'kms:*', Resource: '*'}, {Sid: 'no', Effect: 'Deny', Principal: {AWS: host.arn}, Action: 'kms:ReEncryptTo', Resource: '*'}]})
    const looseBlob = (await call('Encrypt', {KeyId: loose, Plaintext: Buffer.from('x').toString('base64')}, host)).CiphertextBlob as string
    expect(await refusal(call('ReEncrypt', {CiphertextBlob: looseBlob, DestinationKeyId: closed}, host))).toBe('AccessDeniedException')
    const moved = await call('ReEncrypt', {CiphertextBlob: looseBlob, DestinationKeyId: open}, host)
    expect(moved.SourceKeyId).toContain(loose)
    expect(Buffer.from((await call('Decrypt', {CiphertextBlob: moved.CiphertextBlob})).Plaintext as string, 'base64').toString()).toBe('x')
    // The source encryption context is checked like Decrypt's.
    const bound = (await call('Encrypt', {KeyId: loose, Plaintext: 'eA==', EncryptionContext: {a: 'b'}}, host)).CiphertextBlob as string
    expect(await refusal(call('ReEncrypt', {CiphertextBlob: bound, DestinationKeyId: open}, host))).toBe('InvalidCiphertextException')
  })

  it('disable, schedule deletion, cancel, and deletion once the window passed (aliases go with the key)', async () => {
    const {call, refusal, key, advance} = setup()
    const id = await key()
    await call('CreateAlias', {AliasName: 'alias/doomed', TargetKeyId: id})
    await call('DisableKey', {KeyId: id})
    expect(await refusal(call('GenerateDataKeyWithoutPlaintext', {KeyId: id, KeySpec: 'AES_256'}))).toBe('DisabledException')
    expect(await refusal(call('ScheduleKeyDeletion', {KeyId: id, PendingWindowInDays: 6}))).toBe('ValidationException')
    await call('ScheduleKeyDeletion', {KeyId: id, PendingWindowInDays: 7})
    expect(await refusal(call('EnableKey', {KeyId: id}))).toBe('KMSInvalidStateException')
    expect(await refusal(call('ScheduleKeyDeletion', {KeyId: id}))).toBe('KMSInvalidStateException')
    await call('CancelKeyDeletion', {KeyId: id})
    expect(await refusal(call('CancelKeyDeletion', {KeyId: id}))).toBe('KMSInvalidStateException')
    expect(((await call('DescribeKey', {KeyId: id})).KeyMetadata as {KeyState: string}).KeyState).toBe('Disabled')
    await call('ScheduleKeyDeletion', {KeyId: id, PendingWindowInDays: 7})
    advance(7 * 86_400_000 + 1000)
    expect(await refusal(call('DescribeKey', {KeyId: id}))).toBe('NotFoundException')
    expect(((await call('ListAliases', {})).Aliases as unknown[]).length).toBe(0)
  })

  it('tags: merged by key, aws: prefix refused, at most 50; only admins of the key may tag', async () => {
    const {call, refusal, key} = setup()
    const id = await key()
    await call('TagResource', {KeyId: id, Tags: [{TagKey: 'a', TagValue: '1'}]})
    await call('TagResource', {KeyId: id, Tags: [{TagKey: 'a', TagValue: '2'}, {TagKey: 'b', TagValue: ''}]})
    expect((await call('ListResourceTags', {KeyId: id})).Tags).toEqual([{TagKey: 'a', TagValue: '2'}, {TagKey: 'b', TagValue: ''}])
    expect(await refusal(call('TagResource', {KeyId: id, Tags: [{TagKey: 'aws:x', TagValue: '1'}]}))).toBe('TagException')
    expect(await refusal(call('TagResource', {KeyId: id, Tags: Array.from({length: 49}, (_, i) => ({TagKey: `t${i}`, TagValue: ''}))}))).toBe('LimitExceededException')
    expect(await refusal(call('TagResource', {KeyId: id, Tags: [{TagKey: 'c', TagValue: 1}]}))).toBe('ValidationException')
    const stranger = newIdentity('000000000000', 'stranger')
    expect(await refusal(call('TagResource', {KeyId: id, Tags: [{TagKey: 'c', TagValue: '1'}]}, {...stranger, arn: 'arn:aws:iam::111111111111:role/stranger'}))).toBe('AccessDeniedException')
  })

  it('CreateKey refuses what it cannot make, saying what it makes', async () => {
    const {call, refusal} = setup()
    for (const input of [{KeySpec: 'RSA_2048'}, {KeyUsage: 'SIGN_VERIFY'}, {KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC'}, {Origin: 'EXTERNAL'}, {MultiRegion: true}]) {
      expect(await refusal(call('CreateKey', input))).toBe('UnsupportedOperationException')
    }
  })

  it('a refused Recipient is explained in KMS terms, never with an nle code', () => {
    for (const code of ['ATTEST_ROOT_MISMATCH', 'ATTEST_BAD_SIGNATURE', 'ATTEST_TOO_OLD', 'CMS_BAD_KEY', 'ATTEST_UNPROCESSABLE', undefined]) {
      const message = recipientRefusal(code)
      expect(message).toMatch(/^The attestation document in the Recipient parameter is not valid: .+\.$/)
      expect(message).not.toMatch(/[A-Z]+_[A-Z_]+/)
    }
  })
})
