import {randomBytes} from 'node:crypto'

import {describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {NleError} from '../errors.js'
import {inspectAttestation} from '../attestation/verify.js'
import {buildEnvelope} from '../kms/recipient.js'
import {type RecipientDecryptInput, limitUnwrap, mapKmsError, recipientUnwrap} from './kms-mode.js'

describe('recipientUnwrap', () => {
  it('asks KMS with an attested RSA key, opens the envelope, and reuses one document within its TTL', async () => {
    const nsm = new NsmSimulator()
    const dataKey = randomBytes(32)
    const seen: RecipientDecryptInput[] = []
    let now = 0
    const unwrap = recipientUnwrap({
      nsm,
      keyId: 'arn:aws:kms:us-east-1:000000000000:key/k',
      now: () => now,
      documentTtlMs: 60_000,
      // KMS's part: the plaintext, only inside an envelope to the document's public key.
      decrypt: async (input) => {
        seen.push(input)
        return buildEnvelope(dataKey, inspectAttestation(input.attestationDocument).publicKey!)
      },
    })
    expect(Buffer.from(await unwrap(new Uint8Array([1]), {a: 'b'}))).toEqual(dataKey)
    now += 30_000
    await unwrap(new Uint8Array([2]), {a: 'c'})
    expect(unwrap.stats()).toEqual({decrypts: 2, documents: 1})
    now += 31_000
    await unwrap(new Uint8Array([3]), {})
    expect(unwrap.stats().documents).toBe(2)
    expect(seen[0]).toMatchObject({keyId: 'arn:aws:kms:us-east-1:000000000000:key/k', encryptionContext: {a: 'b'}})
    // The same RSA key throughout the process.
    expect(inspectAttestation(seen[0]!.attestationDocument).publicKey).toEqual(inspectAttestation(seen[2]!.attestationDocument).publicKey)
    await nsm.close()
  })

  it('an envelope to another key is CHANNEL_KMS_REJECTED', async () => {
    const other = new NsmSimulator()
    const {generateRecipientKeyPair} = await import('../kms/recipient.js')
    const stranger = generateRecipientKeyPair()
    const unwrap = recipientUnwrap({nsm: other, decrypt: async () => buildEnvelope(randomBytes(32), stranger.publicKeyDer)})
    await expect(unwrap(new Uint8Array([1]), {})).rejects.toMatchObject({code: 'CHANNEL_KMS_REJECTED'})
    await other.close()
  })
})

describe('mapKmsError', () => {
  it('maps KMS exceptions and the enclave plumbing to channel codes', () => {
    const named = (name: string): Error => Object.assign(new Error(name), {name})
    expect(mapKmsError(named('AccessDeniedException'))).toMatchObject({code: 'CHANNEL_KMS_DENIED'})
    expect(mapKmsError(named('InvalidCiphertextException'))).toMatchObject({code: 'CHANNEL_KMS_REJECTED'})
    expect(mapKmsError(named('IncorrectKeyException'))).toMatchObject({code: 'CHANNEL_KMS_REJECTED'})
    expect(mapKmsError(named('TimeoutError'))).toMatchObject({code: 'CHANNEL_KMS_UNAVAILABLE'})
    const plumbing = mapKmsError(new NleError('KMS_CREDENTIALS_UNAVAILABLE', 'x', {hint: 'start the proxy'}))
    expect(plumbing).toMatchObject({code: 'CHANNEL_KMS_UNAVAILABLE', hint: 'start the proxy. (docs/errors.md#channel_kms_unavailable)'})
    const passed = new NleError('CHANNEL_KMS_REJECTED', 'y')
    expect(mapKmsError(passed)).toBe(passed)
  })
})

describe('limitUnwrap', () => {
  it('lets `burst` calls through, then `perSecond`, and never more than `concurrency` at once; refusals never reach KMS', async () => {
    let now = 0
    let reached = 0
    const pending: (() => void)[] = []
    const slow = async (): Promise<Uint8Array> => {
      reached++
      await new Promise<void>((resolve) => pending.push(resolve))
      return new Uint8Array(32)
    }
    const code = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: {code?: string}) => e.code ?? 'raw')
    const unwrap = limitUnwrap(slow, {perSecond: 2, burst: 4, concurrency: 3, now: () => now})
    const first = Array.from({length: 5}, () => code(unwrap(new Uint8Array([1]), {})))
    // 3 in flight (the cap), the other 2 refused at once.
    expect(reached).toBe(3)
    for (const resolve of pending.splice(0)) resolve()
    expect(await Promise.all(first)).toEqual(['ok', 'ok', 'ok', 'CHANNEL_LIMIT', 'CHANNEL_LIMIT'])
    // One token left of the burst of 4, then the bucket is empty until the clock moves.
    const second = [code(unwrap(new Uint8Array([1]), {})), code(unwrap(new Uint8Array([1]), {}))]
    for (const resolve of pending.splice(0)) resolve()
    expect(await Promise.all(second)).toEqual(['ok', 'CHANNEL_LIMIT'])
    now += 500 // one token at 2 per second
    const third = [code(unwrap(new Uint8Array([1]), {})), code(unwrap(new Uint8Array([1]), {}))]
    for (const resolve of pending.splice(0)) resolve()
    expect(await Promise.all(third)).toEqual(['ok', 'CHANNEL_LIMIT'])
    expect(reached).toBe(5)
    expect(unwrap.stats()).toEqual({admitted: 5, limited: 4})
  })
})
