import {createCipheriv, hkdfSync} from 'node:crypto'

import {Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256} from '@hpke/core'
import {describe, expect, it} from 'vitest'

import {codeOf} from '../../test-support/rejection.js'
import {
  ResponseOpener,
  ResponseSealer,
  ServerKeyRing,
  decodeKeyConfig,
  encodeKeyConfig,
  openWholeResponse,
  pad,
  padToBucket,
  parseSealedRequest,
  prepareSeal,
  sealRequest,
  sealWholeResponse,
  unpad,
} from './index.js'
import {cipherSuite} from './suite.js'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const str = (b: Uint8Array): string => new TextDecoder().decode(b)

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = new Uint8Array(bytes)
  copy[at] = copy[at]! ^ 0x01
  return copy
}

async function setup(options = {}) {
  const ring = await ServerKeyRing.create(options)
  const config = decodeKeyConfig(await ring.keyConfig())
  return {ring, config}
}

describe('key configuration', () => {
  it('round-trips and refuses what is not one', async () => {
    const {ring, config} = await setup()
    expect(encodeKeyConfig(config)).toEqual(await ring.keyConfig())
    expect(codeOf(() => decodeKeyConfig(text('my super secret key')))).toBe('CHANNEL_BAD_KEY_CONFIG')
    expect(codeOf(() => decodeKeyConfig(null))).toBe('CHANNEL_BAD_KEY_CONFIG')
    const other = new Uint8Array(await ring.keyConfig())
    other[other.length - 1] = 0x03 // ChaCha20-Poly1305: not this suite
    expect(codeOf(() => decodeKeyConfig(other))).toBe('CHANNEL_UNSUPPORTED_SUITE')
  })
})

describe('sealed request and whole response', () => {
  it('round-trips a request and its response', async () => {
    const {ring, config} = await setup()
    const sealed = await sealRequest(config, text('{"q":"hello"}'))
    expect(Buffer.from(sealed.message).includes('hello')).toBe(false)
    const opened = await ring.open(sealed.message)
    expect(str(opened.plaintext)).toBe('{"q":"hello"}')
    expect(opened.requestId).toBe(sealed.requestId)
    const body = sealWholeResponse(opened.responseKeys, text('{"a":"world"}'))
    expect(Buffer.from(body).includes('world')).toBe(false)
    expect(str(openWholeResponse(sealed.responseKeys, body))).toBe('{"a":"world"}')
  })

  it('seals with a context prepared ahead, once', async () => {
    const {ring, config} = await setup()
    const prepared = await prepareSeal(config)
    const sealed = await prepared.seal(text('ahead'))
    expect(str((await ring.open(sealed.message)).plaintext)).toBe('ahead')
    await expect(prepared.seal(text('again'))).rejects.toThrow(/once/)
  })

  it('refuses a replayed request', async () => {
    const {ring, config} = await setup()
    const sealed = await sealRequest(config, text('once'))
    await ring.open(sealed.message)
    expect(await codeOf(ring.open(sealed.message))).toBe('CHANNEL_REPLAY')
    // Two copies racing: exactly one opens.
    const again = await sealRequest(config, text('race'))
    const results = await Promise.allSettled([ring.open(again.message), ring.open(again.message)])
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    expect(ring.stats().replayCacheSize).toBe(2)
  })

  it('gives each flipped byte of a request a distinct, clear error', async () => {
    const {ring, config} = await setup()
    const fresh = async () => (await sealRequest(config, text('payload'))).message
    const m = await fresh()
    expect(await codeOf(ring.open(flip(m, 0)))).toBe('CHANNEL_MALFORMED') // version
    expect(await codeOf(ring.open(flip(await fresh(), 1)))).toBe('CHANNEL_UNKNOWN_KEY') // key id
    expect(await codeOf(ring.open(flip(await fresh(), 3)))).toBe('CHANNEL_UNSUPPORTED_SUITE') // kem id
    expect(await codeOf(ring.open(flip(await fresh(), 10)))).toBe('CHANNEL_REQUEST_AUTH_FAILED') // request id (in info)
    expect(await codeOf(ring.open(flip(await fresh(), 30)))).toBe('CHANNEL_REQUEST_AUTH_FAILED') // enc
    const last = await fresh()
    expect(await codeOf(ring.open(flip(last, last.length - 1)))).toBe('CHANNEL_REQUEST_AUTH_FAILED') // tag
    expect(await codeOf(ring.open(m.subarray(0, 40)))).toBe('CHANNEL_MALFORMED')
    // A failed attempt does not burn the genuine request.
    expect(str((await ring.open(last)).plaintext)).toBe('payload')
  })

  it('pads plaintexts so lengths show only a bucket', async () => {
    const {config} = await setup()
    const a = await sealRequest(config, text('y'))
    const b = await sealRequest(config, text('a much longer question about something'))
    expect(a.message.length).toBe(b.message.length)
    expect(unpad(pad(text('x'), 16))).toEqual(text('x'))
    expect(unpad(new Uint8Array(16))).toBeNull()
  })

  it('pads answers to power-of-two buckets from a minimum, and every size unpads', () => {
    const sizes = new Set<number>()
    for (let n = 0; n <= 5000; n += 7) {
      const padded = padToBucket(new Uint8Array(n).fill(0x61), 512)
      sizes.add(padded.length)
      expect(padded.length).toBeGreaterThan(n)
      expect(unpad(padded)?.length).toBe(n)
    }
    expect([...sizes].sort((x, y) => x - y)).toEqual([512, 1024, 2048, 4096, 8192])
    // A whole answer: an error and a short completion fill the same smallest bucket.
    const keys = {secret: new Uint8Array(32).fill(1), enc: new Uint8Array(32).fill(2)}
    const error = sealWholeResponse(keys, text(JSON.stringify({error: {code: 'SERVER_BAD_REQUEST', message: 'x'.repeat(200)}})))
    const answer = sealWholeResponse(keys, text(JSON.stringify({id: `chatcmpl-${'0'.repeat(32)}`, object: 'chat.completion', choices: [{message: {content: 'Yes.'}}], usage: {}})))
    expect(error.length).toBe(answer.length)
  })
})

describe('rotation', () => {
  it('keeps a retired key for its grace period, then refuses it as unknown', async () => {
    let now = 1_000_000
    const {ring, config} = await setup({lifetimeMs: 1000, graceMs: 500, now: () => now})
    const early = await sealRequest(config, text('a'))
    const late = await sealRequest(config, text('b'))
    now += 1000
    const next = decodeKeyConfig(await ring.keyConfig())
    expect(next.keyId).toBe(config.keyId + 1)
    expect(str((await ring.open(early.message)).plaintext)).toBe('a')
    now += 600
    expect(await codeOf(ring.open(late.message))).toBe('CHANNEL_UNKNOWN_KEY')
  })

  it('rotates after the request budget', async () => {
    const {ring, config} = await setup({maxRequestsPerKey: 2})
    for (let i = 0; i < 2; i++) await ring.open((await sealRequest(config, text(String(i)))).message)
    expect(decodeKeyConfig(await ring.keyConfig()).keyId).toBe(1)
  })
})

describe('streamed response', () => {
  async function stream(chunks: string[]) {
    const {ring, config} = await setup()
    const sealed = await sealRequest(config, text('q'))
    const opened = await ring.open(sealed.message)
    const sealer = new ResponseSealer(opened.responseKeys)
    const frames = chunks.map((c, i) => sealer.seal(text(c), i === chunks.length - 1))
    return {frames, nonce: sealer.nonce, keys: sealed.responseKeys, sealer}
  }

  it('opens every chunk in order and ends on the final one', async () => {
    const {frames, nonce, keys} = await stream(['Hel', 'lo', ' world'])
    const opener = new ResponseOpener(keys, nonce)
    expect(frames.map((f) => str(opener.open(f).plaintext)).join('')).toBe('Hello world')
    expect(opener.finished).toBe(true)
    expect(() => opener.finish()).not.toThrow()
  })

  it('detects truncation, reordering, flipped bytes and data after the end', async () => {
    const {frames, nonce, keys, sealer} = await stream(['a', 'b', 'c'])
    const cut = new ResponseOpener(keys, nonce)
    cut.open(frames[0]!)
    cut.open(frames[1]!)
    expect(codeOf(() => cut.finish())).toBe('CHANNEL_TRUNCATED')

    expect(codeOf(() => new ResponseOpener(keys, nonce).open(frames[1]!))).toBe('CHANNEL_RESPONSE_AUTH_FAILED')
    for (const at of [1, 5, frames[0]!.length - 1]) {
      expect(codeOf(() => new ResponseOpener(keys, nonce).open(flip(frames[0]!, at)))).toBe('CHANNEL_RESPONSE_AUTH_FAILED')
    }
    // Marking a middle chunk final (to hide the tail) breaks its tag.
    const early = new ResponseOpener(keys, nonce)
    early.open(frames[0]!)
    expect(codeOf(() => early.open(flip(frames[1]!, 0)))).toBe('CHANNEL_RESPONSE_AUTH_FAILED')
    // A different response nonce gives different keys.
    expect(codeOf(() => new ResponseOpener(keys, flip(nonce, 0)).open(frames[0]!))).toBe('CHANNEL_RESPONSE_AUTH_FAILED')

    const full = new ResponseOpener(keys, nonce)
    for (const f of frames) full.open(f)
    expect(codeOf(() => full.open(frames[2]!))).toBe('CHANNEL_AFTER_FINAL')
    expect(codeOf(() => sealer.seal(text('more'), true))).toBe('CHANNEL_AFTER_FINAL')
  })

  it('refuses a response sealed for another request', async () => {
    const {ring, config} = await setup()
    const one = await sealRequest(config, text('1'))
    const two = await sealRequest(config, text('2'))
    const opened = await ring.open(one.message)
    await ring.open(two.message)
    const body = sealWholeResponse(opened.responseKeys, text('for one'))
    expect(codeOf(() => openWholeResponse(two.responseKeys, body))).toBe('CHANNEL_RESPONSE_AUTH_FAILED')
    expect(codeOf(() => openWholeResponse(one.responseKeys, body.subarray(0, 20)))).toBe('CHANNEL_TRUNCATED')
  })

  it('parses a sealed request header without opening it', async () => {
    const {config} = await setup()
    const sealed = await sealRequest(config, text('x'))
    const parsed = parseSealedRequest(sealed.message)
    expect(parsed.requestId).toBe(sealed.requestId)
    expect(parsed.keyId).toBe(config.keyId)
  })
})

describe('the node:crypto primitives under the HPKE library', () => {
  // The stock suite: @hpke/core on WebCrypto, the reference the channel's wire bytes must match.
  const stock = (): CipherSuite => new CipherSuite({kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm()})
  const info = text('nle-chat request test info')
  const label = text('nle-chat response')
  const bytes = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex')

  it('produce the same bytes as the stock WebCrypto suite for the same keys', async () => {
    const ikmR = new Uint8Array(32).fill(0x52)
    const ikmE = new Uint8Array(32).fill(0x45)
    const out: string[][] = []
    for (const suite of [stock(), cipherSuite()]) {
      const recipient = await suite.kem.deriveKeyPair(ikmR)
      const sender = await suite.createSenderContext({recipientPublicKey: recipient.publicKey, info, ekm: ikmE})
      const ct = await sender.seal(text('{"messages":[]}'))
      const ct2 = await sender.seal(text('second message: the nonce sequence'))
      const exported = await sender.export(label, 32)
      const r = await suite.createRecipientContext({recipientKey: recipient, enc: sender.enc, info})
      expect(str(new Uint8Array(await r.open(ct)))).toBe('{"messages":[]}')
      expect(bytes(await r.export(label, 32))).toBe(bytes(exported))
      out.push([bytes(await suite.kem.serializePublicKey(recipient.publicKey)), bytes(sender.enc), bytes(ct), bytes(ct2), bytes(exported)])
    }
    expect(out[1]).toEqual(out[0])
  })

  it('interoperate with the stock suite in both directions, and refuse what is altered', async () => {
    for (const [from, to] of [
      [stock(), cipherSuite()],
      [cipherSuite(), stock()],
    ] as const) {
      const recipient = await to.kem.generateKeyPair()
      const pk = await from.kem.deserializePublicKey(await to.kem.serializePublicKey(recipient.publicKey))
      const sender = await from.createSenderContext({recipientPublicKey: pk, info})
      const ct = new Uint8Array(await sender.seal(text('hello enclave')))
      const r = await to.createRecipientContext({recipientKey: recipient, enc: sender.enc, info})
      expect(str(new Uint8Array(await r.open(ct)))).toBe('hello enclave')
      expect(bytes(await r.export(label, 32))).toBe(bytes(await sender.export(label, 32)))
      const altered = await to.createRecipientContext({recipientKey: recipient, enc: sender.enc, info})
      await expect(altered.open(flip(ct, ct.length - 1))).rejects.toThrow()
      const otherInfo = await to.createRecipientContext({recipientKey: recipient, enc: sender.enc, info: text('other')})
      await expect(otherInfo.open(ct)).rejects.toThrow()
    }
  })

  it('refuse a small-order public key and a short one', async () => {
    const suite = cipherSuite()
    const recipient = await suite.kem.generateKeyPair()
    await expect(suite.createRecipientContext({recipientKey: recipient, enc: new Uint8Array(32), info})).rejects.toThrow()
    await expect(suite.kem.deserializePublicKey(new Uint8Array(31))).rejects.toThrow()
  })
})

describe('response chunk keys', () => {
  it('are HKDF-SHA256(secret, salt = enc | response_nonce, "key" / "nonce") as specified', () => {
    const keys = {secret: new Uint8Array(32).fill(0x11), enc: new Uint8Array(32).fill(0x22)}
    const nonce = new Uint8Array(32).fill(0x33)
    const frame = new ResponseSealer(keys, 16, nonce).seal(text('hi'), true)
    const salt = Buffer.concat([keys.enc, nonce])
    const key = Buffer.from(hkdfSync('sha256', keys.secret, salt, 'key', 32))
    const iv = Buffer.from(hkdfSync('sha256', keys.secret, salt, 'nonce', 12)) // chunk 0: iv XOR 0
    const cipher = createCipheriv('aes-256-gcm', key, iv)
    cipher.setAAD(Buffer.concat([text('nle-chat chunk'), Buffer.from([1])]))
    const expected = Buffer.concat([Buffer.from([1]), cipher.update(pad(text('hi'), 16)), cipher.final(), cipher.getAuthTag()])
    expect(Buffer.from(frame).toString('hex')).toBe(expected.toString('hex'))
  })
})
