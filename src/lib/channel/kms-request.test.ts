import {createCipheriv, createDecipheriv, randomBytes} from 'node:crypto'

import {describe, expect, it} from 'vitest'

import {isNleError} from '../errors.js'
import {channelError} from './errors.js'
import {ServerKeyRing} from './keyring.js'
import {KMS_HEADER_BYTES, KmsRequestOpener, type KmsOpenerOptions, type UnwrapDataKey, type WrapDataKey, kmsEncryptionContext, parseKmsRequest, sealKmsRequest} from './kms-request.js'
import {ResponseOpener, ResponseSealer, openWholeResponse, sealWholeResponse} from './response.js'
import {type KeyConfig, decodeKeyConfig} from './suite.js'

/** A stand-in for KMS: AES-GCM under a master key, the encryption context as AAD (as KMS binds it). */
function fakeKms(): {wrap: WrapDataKey; unwrap: UnwrapDataKey; calls: {ec: Record<string, string>}[]} {
  const master = randomBytes(32)
  const calls: {ec: Record<string, string>}[] = []
  const aad = (ec: Record<string, string>): Buffer => Buffer.from(JSON.stringify(Object.entries(ec).sort()))
  return {
    calls,
    async wrap(key, ec) {
      const iv = randomBytes(12)
      const c = createCipheriv('aes-256-gcm', master, iv).setAAD(aad(ec))
      return new Uint8Array(Buffer.concat([iv, c.update(key), c.final(), c.getAuthTag()]))
    },
    async unwrap(blob, ec) {
      calls.push({ec})
      const b = Buffer.from(blob)
      const d = createDecipheriv('aes-256-gcm', master, b.subarray(0, 12)).setAAD(aad(ec))
      d.setAuthTag(b.subarray(b.length - 16))
      return new Uint8Array(Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]))
    },
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (error) {
    return isNleError(error) ? error.code : `not an NleError: ${String(error)}`
  }
  return 'resolved'
}

const question = new TextEncoder().encode('{"messages":[{"role":"user","content":"CANARY-kms-7781"}]}')

/** An enclave: its key ring (what it attests) and its KMS-mode opener. */
async function enclave(unwrap: UnwrapDataKey, extra: Partial<KmsOpenerOptions> = {}): Promise<{ring: ServerKeyRing; config: KeyConfig; opener: KmsRequestOpener}> {
  const ring = await ServerKeyRing.create()
  return {ring, config: decodeKeyConfig(await ring.keyConfig()), opener: new KmsRequestOpener({keys: ring, unwrap, ...extra})}
}

describe('KMS-mode requests', () => {
  it('round-trips a request and a streamed answer, and binds the request id into the encryption context', async () => {
    const kms = fakeKms()
    const {config, opener} = await enclave(kms.unwrap)
    const sealed = await sealKmsRequest(config, question, kms.wrap)
    expect(Buffer.from(sealed.message).includes(Buffer.from('CANARY-kms-7781'))).toBe(false)
    const opened = await opener.open(sealed.message)
    expect(Buffer.from(opened.plaintext).toString()).toContain('CANARY-kms-7781')
    expect(opened.requestId).toBe(sealed.requestId)
    expect(kms.calls[0]!.ec).toEqual(kmsEncryptionContext(sealed.requestId))

    const sealer = new ResponseSealer(opened.responseKeys)
    const client = new ResponseOpener(sealed.responseKeys, sealer.nonce)
    expect(Buffer.from(client.open(sealer.seal(new TextEncoder().encode('part 1'), false)).plaintext).toString()).toBe('part 1')
    expect(client.open(sealer.seal(new TextEncoder().encode('end'), true)).final).toBe(true)
    expect(Buffer.from(openWholeResponse(sealed.responseKeys, sealWholeResponse(opened.responseKeys, new Uint8Array([1, 2, 3]))))).toEqual(Buffer.from([1, 2, 3]))
  })

  it('another enclave the key policy also admits (a previous image, a debug one) cannot open a request made for this one', async () => {
    const kms = fakeKms() // releases the data key to every enclave that asks: both are admitted
    const verified = await enclave(kms.unwrap)
    const other = await enclave(kms.unwrap)
    const sealed = await sealKmsRequest(verified.config, question, kms.wrap)
    // Same key id (both rings start at 0), KMS consents, and still it does not open there.
    expect(other.config.keyId).toBe(verified.config.keyId)
    expect(await code(other.opener.open(sealed.message))).toBe('CHANNEL_REQUEST_AUTH_FAILED')
    expect(kms.calls).toHaveLength(1)
    // The enclave it was sealed to opens it.
    expect(Buffer.from((await verified.opener.open(sealed.message)).plaintext).toString()).toContain('CANARY-kms-7781')
  })

  it('concurrent copies of one request reach KMS once: one opens, the others are replays', async () => {
    const kms = fakeKms()
    const {config, opener} = await enclave(kms.unwrap)
    const sealed = await sealKmsRequest(config, question, kms.wrap)
    const codes = await Promise.all(Array.from({length: 10}, () => code(opener.open(sealed.message))))
    expect(kms.calls).toHaveLength(1)
    expect(codes.filter((c) => c === 'resolved')).toHaveLength(1)
    expect(codes.filter((c) => c === 'CHANNEL_REPLAY')).toHaveLength(9)
  })

  it('the attested enclave itself cannot open a request without KMS releasing the data key', async () => {
    const kms = fakeKms()
    const denied = await enclave(async () => {
      throw channelError('CHANNEL_KMS_DENIED', 'The key policy does not admit these measurements.')
    })
    expect(await code(denied.opener.open((await sealKmsRequest(denied.config, question, kms.wrap)).message))).toBe('CHANNEL_KMS_DENIED')
    // An enclave that skips KMS (any other 32 bytes as the data key) has the right HPKE key and still fails.
    const guessing = await enclave(async () => new Uint8Array(randomBytes(32)))
    expect(await code(guessing.opener.open((await sealKmsRequest(guessing.config, question, kms.wrap)).message))).toBe('CHANNEL_REQUEST_AUTH_FAILED')
  })

  it('a request is bound to the key it was sealed to: moved to another key of the same enclave, it does not open', async () => {
    const kms = fakeKms()
    const {ring, config, opener} = await enclave(kms.unwrap)
    const sealed = await sealKmsRequest(config, question, kms.wrap)
    await ring.rotate() // key 1 is current, key 0 still held (grace)
    const moved = new Uint8Array(sealed.message)
    moved[2] = 1
    expect(await code(opener.open(moved))).toBe('CHANNEL_REQUEST_AUTH_FAILED')
    const unknown = new Uint8Array((await sealKmsRequest(config, question, kms.wrap)).message)
    unknown[2] = 7
    expect(await code(opener.open(unknown))).toBe('CHANNEL_UNKNOWN_KEY')
  })

  it('refuses a replay, a stale request and one from the future', async () => {
    const kms = fakeKms()
    let now = 1_800_000_000_000
    const {config, opener} = await enclave(kms.unwrap, {now: () => now, windowMs: 60_000})
    const sealed = await sealKmsRequest(config, question, kms.wrap, {now})
    await opener.open(sealed.message)
    expect(await code(opener.open(sealed.message))).toBe('CHANNEL_REPLAY')
    expect(await code(opener.open((await sealKmsRequest(config, question, kms.wrap, {now: now - 61_000})).message))).toBe('CHANNEL_STALE')
    expect(await code(opener.open((await sealKmsRequest(config, question, kms.wrap, {now: now + 61_000})).message))).toBe('CHANNEL_STALE')
    // After the window the id is forgotten, and the request is stale anyway.
    now += 61_000
    expect(await code(opener.open(sealed.message))).toBe('CHANNEL_STALE')
  })

  it('refuses every single-byte change, and asks KMS at most once per request id', async () => {
    const kms = fakeKms()
    const {config, ring} = await enclave(kms.unwrap)
    const sealed = await sealKmsRequest(config, question, kms.wrap)
    const codes = new Set<string>()
    const opener = new KmsRequestOpener({keys: ring, unwrap: kms.unwrap})
    for (let i = 0; i < sealed.message.length; i++) {
      const copy = new Uint8Array(sealed.message)
      copy[i]! ^= 0x01
      const c = await code(opener.open(copy))
      expect(c, `byte ${i}`).not.toBe('resolved')
      codes.add(c)
    }
    // The header's time and length bytes fail their own checks; the rest fails authentication or
    // is a replay of an id already spent on KMS.
    expect([...codes].every((c) => c.startsWith('CHANNEL_') || c.startsWith('not an NleError'))).toBe(true)
    expect(codes.has('CHANNEL_REPLAY')).toBe(true)
    // One KMS call for the original id, one per flipped request-id byte (16 bytes × 1 flip).
    console.log(`single-byte changes: ${sealed.message.length}, KMS calls: ${kms.calls.length}, codes: ${[...codes].join(' ')}`)
    expect(kms.calls.length).toBeLessThanOrEqual(17)
  })

  it('moving the wrapped key into another request does not unwrap it', async () => {
    const kms = fakeKms()
    const {config, opener} = await enclave(kms.unwrap)
    const a = parseKmsRequest((await sealKmsRequest(config, question, kms.wrap)).message)
    const b = (await sealKmsRequest(config, question, kms.wrap)).message
    const forged = new Uint8Array(b)
    // same length blobs from the fake: put a's wrapped key in b
    forged.set(a.wrapped, KMS_HEADER_BYTES)
    expect(await code(opener.open(forged))).not.toBe('resolved')
  })

  it('rejects malformed bodies with CHANNEL_MALFORMED, without asking KMS', async () => {
    const kms = fakeKms()
    const {opener} = await enclave(kms.unwrap)
    expect(await code(opener.open(new Uint8Array(10)))).toBe('CHANNEL_MALFORMED')
    expect(await code(opener.open(new Uint8Array(200)))).toBe('CHANNEL_MALFORMED')
    expect(kms.calls).toHaveLength(0)
  })
})
