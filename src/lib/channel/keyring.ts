/**
 * The enclave's ephemeral HPKE keys and the replay cache.
 *
 * A key pair is generated in enclave memory and never leaves it; its key configuration goes into
 * every attestation document. Each key has a lifetime (and a request budget); after it a new key
 * is made, and the old one still opens requests for a grace period so that clients holding a cached
 * attestation are not cut off mid-session. A key past its grace period is forgotten together with
 * its replay cache: a request sealed to it is refused as CHANNEL_UNKNOWN_KEY, so a replay is
 * refused for as long as the key can open anything.
 *
 * Replay rule: the encapsulated key `enc` of every request that opened is remembered per key; a
 * second request with the same `enc` is CHANNEL_REPLAY. (`enc` is fresh per HPKE context, so a
 * genuine client never repeats it.)
 */
import {type HpkeKeyPair, type KeyConfig, AEAD_AES_256_GCM, KDF_HKDF_SHA256, KEM_X25519_HKDF_SHA256, cipherSuite, encodeKeyConfig} from './suite.js'
import {own} from './bytes.js'
import {channelError} from './errors.js'
import {type OpenedRequest, openParsedRequest, parseSealedRequest} from './request.js'

export interface KeyRingOptions {
  /** How long a key is handed out in attestation documents (default 1 h). */
  lifetimeMs?: number
  /** How long a retired key still opens requests (default 5 min). */
  graceMs?: number
  /** Requests one key may open before a new key is made (bounds the replay cache; default 100 000). */
  maxRequestsPerKey?: number
  now?: () => number
}

interface RingKey {
  keyId: number
  keyPair: HpkeKeyPair
  config: Uint8Array
  createdAt: number
  retiredAt: number | null
  seen: Set<string>
}

export interface KeyRingStats {
  keys: number
  currentKeyId: number
  replayCacheSize: number
}

export class ServerKeyRing {
  private readonly keys = new Map<number, RingKey>()
  private current!: RingKey
  private rotating: Promise<void> | null = null
  private readonly lifetimeMs: number
  private readonly graceMs: number
  private readonly maxRequests: number
  private readonly now: () => number

  private constructor(options: KeyRingOptions) {
    this.lifetimeMs = options.lifetimeMs ?? 3_600_000
    this.graceMs = options.graceMs ?? 300_000
    this.maxRequests = options.maxRequestsPerKey ?? 100_000
    this.now = options.now ?? Date.now
  }

  static async create(options: KeyRingOptions = {}): Promise<ServerKeyRing> {
    const ring = new ServerKeyRing(options)
    await ring.rotate()
    return ring
  }

  /** Make a new current key now (the previous one enters its grace period). */
  async rotate(): Promise<void> {
    const suite = cipherSuite()
    const keyPair = await suite.kem.generateKeyPair()
    const publicKey = own(await suite.kem.serializePublicKey(keyPair.publicKey))
    const keyId = this.keys.size === 0 ? 0 : (this.current.keyId + 1) & 0xff
    const now = this.now()
    if (this.keys.size > 0) this.current.retiredAt = now
    this.keys.delete(keyId) // a 256-rotation-old key with the same id
    const config: KeyConfig = {keyId, kemId: KEM_X25519_HKDF_SHA256, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_256_GCM, publicKey}
    const key: RingKey = {keyId, keyPair, config: encodeKeyConfig(config), createdAt: now, retiredAt: null, seen: new Set()}
    this.keys.set(keyId, key)
    this.current = key
  }

  private expire(): void {
    const now = this.now()
    for (const [id, key] of this.keys) if (key.retiredAt !== null && now - key.retiredAt > this.graceMs) this.keys.delete(id)
  }

  private async fresh(): Promise<RingKey> {
    this.expire()
    const key = this.current
    if (this.now() - key.createdAt >= this.lifetimeMs || key.seen.size >= this.maxRequests) {
      this.rotating ??= this.rotate().finally(() => {
        this.rotating = null
      })
      await this.rotating
    }
    return this.current
  }

  /** The key configuration to attest (the `public_key` of the document). */
  async keyConfig(): Promise<Uint8Array> {
    return (await this.fresh()).config
  }

  /**
   * The key pair a request names, after the checks that cost nothing: the key is held (else
   * CHANNEL_UNKNOWN_KEY) and `enc` was not opened under it (else CHANNEL_REPLAY). Call `accept()`
   * once the request opened: it checks again (another copy may have opened meanwhile) and remembers
   * `enc`.
   */
  async recipient(keyId: number, enc: Uint8Array, requestId: string): Promise<{keyPair: HpkeKeyPair; config: Uint8Array; accept(): void}> {
    await this.fresh()
    const key = this.keys.get(keyId)
    if (key === undefined) {
      throw channelError('CHANNEL_UNKNOWN_KEY', `The request was sealed to key ${keyId}, which this enclave does not hold (expired, or the enclave restarted).`, {
        hint: 'Fetch a fresh attestation and seal again.',
        details: {requestId, keyId},
      })
    }
    const id = Buffer.from(enc).toString('base64')
    const replay = (): never => {
      throw channelError('CHANNEL_REPLAY', 'This sealed request was already received: replays are refused.', {details: {requestId}})
    }
    if (key.seen.has(id)) replay()
    return {
      keyPair: key.keyPair,
      config: key.config,
      accept: () => {
        if (key.seen.has(id)) replay()
        key.seen.add(id)
      },
    }
  }

  /**
   * Open a sealed request. Throws CHANNEL_MALFORMED, CHANNEL_UNSUPPORTED_SUITE, CHANNEL_UNKNOWN_KEY,
   * CHANNEL_REPLAY or CHANNEL_REQUEST_AUTH_FAILED.
   */
  async open(message: Uint8Array): Promise<OpenedRequest> {
    const parsed = parseSealedRequest(message)
    const key = await this.recipient(parsed.keyId, parsed.enc, parsed.requestId)
    const opened = await openParsedRequest(parsed, key.keyPair)
    key.accept()
    return opened
  }

  stats(): KeyRingStats {
    let replayCacheSize = 0
    for (const key of this.keys.values()) replayCacheSize += key.seen.size
    return {keys: this.keys.size, currentKeyId: this.current.keyId, replayCacheSize}
  }
}
