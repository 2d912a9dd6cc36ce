import {createCipheriv, createDecipheriv, randomBytes} from 'node:crypto'

import {describe, expect, it} from 'vitest'

import {isNleError} from '../errors.js'
import {KMS_HEADER_BYTES, KmsRequestOpener, type UnwrapDataKey, type WrapDataKey, kmsEncryptionContext, parseKmsRequest, sealKmsRequest} from './kms-request.js'
import {ResponseOpener, ResponseSealer, openWholeResponse, sealWholeResponse} from './response.js'

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

describe('KMS-mode requests', () => {
  it('round-trips a request and a streamed answer, and binds the request id into the encryption context', async () => {
    const kms = fakeKms()
    const sealed = await sealKmsRequest(question, kms.wrap)
    expect(Buffer.from(sealed.message).includes(Buffer.from('CANARY-kms-7781'))).toBe(false)
    const opener = new KmsRequestOpener({unwrap: kms.unwrap})
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

  it('refuses a replay, a stale request and one from the future', async () => {
    const kms = fakeKms()
    let now = 1_800_000_000_000
    const opener = new KmsRequestOpener({unwrap: kms.unwrap, now: () => now, windowMs: 60_000})
    const sealed = await sealKmsRequest(question, kms.wrap, {now})
    await opener.open(sealed.message)
    expect(await code(opener.open(sealed.message))).toBe('CHANNEL_REPLAY')
    expect(await code(opener.open((await sealKmsRequest(question, kms.wrap, {now: now - 61_000})).message))).toBe('CHANNEL_STALE')
    expect(await code(opener.open((await sealKmsRequest(question, kms.wrap, {now: now + 61_000})).message))).toBe('CHANNEL_STALE')
    // After the window the id is forgotten, and the request is stale anyway.
    now += 61_000
    expect(await code(opener.open(sealed.message))).toBe('CHANNEL_STALE')
  })

  it('refuses every single-byte change', async () => {
    const kms = fakeKms()
    const sealed = await sealKmsRequest(question, kms.wrap)
    const codes = new Set<string>()
    for (let i = 0; i < sealed.message.length; i++) {
      const copy = new Uint8Array(sealed.message)
      copy[i]! ^= 0x01
      const c = await code(new KmsRequestOpener({unwrap: kms.unwrap}).open(copy))
      expect(c, `byte ${i}`).not.toBe('resolved')
      codes.add(c)
    }
    // The header's time and length bytes fail their own checks; the rest fails authentication.
    expect([...codes].every((c) => c.startsWith('CHANNEL_') || c.startsWith('not an NleError'))).toBe(true)
    expect(codes.has('CHANNEL_REQUEST_AUTH_FAILED')).toBe(true)
  })

  it('moving the wrapped key into another request does not unwrap it', async () => {
    const kms = fakeKms()
    const a = parseKmsRequest((await sealKmsRequest(question, kms.wrap)).message)
    const b = (await sealKmsRequest(question, kms.wrap)).message
    const forged = new Uint8Array(b)
    // same length blobs from the fake: put a's wrapped key in b
    forged.set(a.wrapped, KMS_HEADER_BYTES)
    const c = await code(new KmsRequestOpener({unwrap: kms.unwrap}).open(forged))
    expect(c).not.toBe('resolved')
  })

  it('rejects malformed bodies with CHANNEL_MALFORMED', async () => {
    const opener = new KmsRequestOpener({unwrap: fakeKms().unwrap})
    expect(await code(opener.open(new Uint8Array(10)))).toBe('CHANNEL_MALFORMED')
    expect(await code(opener.open(new Uint8Array(200)))).toBe('CHANNEL_MALFORMED')
  })
})
