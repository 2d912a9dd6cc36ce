/**
 * KMS mode's sealed requests: the question is sealed to the attested enclave's HPKE key *and* under
 * a data key that only KMS can unwrap, for an enclave whose attested measurements the key policy
 * admits. Both are needed to open it: the attested key pair (in that one enclave's memory) and
 * KMS's consent.
 *
 *   client   data_key (32 random bytes)
 *            wrapped = KMS Encrypt(key, data_key, encryption context) — under the client's own identity
 *   header   = version (1) = 2 | kind (1) = 'K' | key_id (1) | request_id (16) | issued_at (8, ms, BE) | wrapped_len (2)
 *   message  = header | wrapped | enc (32) | HPKE ciphertext of the padded plaintext
 *   HPKE     = RFC 9180 mode_psk, the suite of the attested key configuration, to its public key:
 *              psk    = data_key
 *              psk_id = "nle-kms data key" | 0x00 | wrapped
 *              info   = "nle-kms request" | 0x00 | header | key configuration (the attested public_key, 40 bytes)
 *   context  = {"nle:purpose": "chat-request", "nle:request-id": hex(request_id)}
 *
 * mode_psk is HPKE's own combiner of a KEM shared secret and a pre-shared key: its key schedule
 * (labelled HKDF-SHA256, "HPKE-v1" and the suite id in every label) extracts the context's secret from
 * the X25519 shared secret with the PSK, and binds psk_id and info — so the header (key id, request id,
 * time), the wrapped key and the attested key configuration — into every key it derives; `enc` and the
 * recipient's public key are bound by the KEM. The AEAD tag then covers all of it.
 *
 * The enclave rebuilds the encryption context from the header, so a wrapped key moved into another
 * request does not unwrap (KMS checks the context). The answer is sealed exactly as on the attested
 * channel (./response.ts), with `secret = Export(context, "nle-kms response", 32)` and `enc = enc`.
 *
 * Replays: a request is accepted only within `windowMs` of its issued_at, each request id reaches KMS
 * at most once within that window, and each `enc` opens once per key (./keyring.ts).
 */
import {randomBytes} from 'node:crypto'

import {concatBytes, own, pad, readU16, u16, unpad, utf8} from './bytes.js'
import {channelError} from './errors.js'
import type {ServerKeyRing} from './keyring.js'
import {type OpenedRequest, type SealedRequest, REQUEST_ID_BYTES, REQUEST_PAD_BLOCK, recipientKey} from './request.js'
import {RESPONSE_SECRET_BYTES} from './response.js'
import {type KeyConfig, AEAD_TAG_BYTES, ENC_BYTES, checkSuite, cipherSuite, encodeKeyConfig} from './suite.js'

/** Media type of a KMS-mode request body. */
/** 2: bound to the attested key (1 was KMS-only). */
export const KMS_PROTOCOL_VERSION = 2
const KIND_KMS = 0x4b // 'K'
const ID_AT = 3
const ISSUED_AT = ID_AT + REQUEST_ID_BYTES
export const KMS_HEADER_BYTES = ISSUED_AT + 8 + 2
export const DATA_KEY_BYTES = 32
/** KMS Encrypt returns at most 6 KiB of CiphertextBlob. */
export const MAX_WRAPPED_BYTES = 6144
/** How long after it was issued a request is accepted (and its id remembered). */
export const DEFAULT_KMS_WINDOW_MS = 5 * 60 * 1000
const INFO_LABEL = utf8('nle-kms request')
const PSK_ID_LABEL = utf8('nle-kms data key')
const RESPONSE_LABEL = utf8('nle-kms response')

/** Encrypt a data key under the client's KMS key (KMS Encrypt with this encryption context). */
export type WrapDataKey = (dataKey: Uint8Array, encryptionContext: Record<string, string>) => Promise<Uint8Array>
/** Recover a data key inside the enclave (KMS Decrypt with a Recipient). */
export type UnwrapDataKey = (wrapped: Uint8Array, encryptionContext: Record<string, string>) => Promise<Uint8Array>

/** The encryption context both sides use for a request id (hex). */
export function kmsEncryptionContext(requestId: string): Record<string, string> {
  return {'nle:purpose': 'chat-request', 'nle:request-id': requestId}
}

function encodeHeader(keyId: number, requestId: Uint8Array, issuedAt: number, wrappedLength: number): Uint8Array {
  const out = new Uint8Array(KMS_HEADER_BYTES)
  out[0] = KMS_PROTOCOL_VERSION
  out[1] = KIND_KMS
  out[2] = keyId & 0xff
  out.set(requestId, ID_AT)
  new DataView(out.buffer).setBigUint64(ISSUED_AT, BigInt(issuedAt))
  out.set(u16(wrappedLength), KMS_HEADER_BYTES - 2)
  return out
}

/** The HPKE parameters both sides derive from the clear parts: the transcript the keys are bound to. */
function hpkeParams(header: Uint8Array, keyConfig: Uint8Array, wrapped: Uint8Array, dataKey: Uint8Array): {info: Uint8Array; psk: {id: Uint8Array; key: Uint8Array}} {
  return {
    info: concatBytes(INFO_LABEL, new Uint8Array([0]), header, keyConfig),
    psk: {id: concatBytes(PSK_ID_LABEL, new Uint8Array([0]), wrapped), key: own(dataKey)},
  }
}

export interface KmsSealOptions {
  padBlock?: number
  requestId?: Uint8Array
  now?: number
}

/**
 * Seal a request for KMS mode to the attested key configuration (from a verified attestation only).
 * `wrap` calls KMS Encrypt with the client's own credentials.
 */
export async function sealKmsRequest(config: KeyConfig, plaintext: Uint8Array, wrap: WrapDataKey, options: KmsSealOptions = {}): Promise<SealedRequest> {
  checkSuite(config.kemId, config.kdfId, config.aeadId)
  const requestId = options.requestId ?? new Uint8Array(randomBytes(REQUEST_ID_BYTES))
  if (requestId.length !== REQUEST_ID_BYTES) throw new RangeError(`A request id is ${REQUEST_ID_BYTES} bytes.`)
  const requestHex = Buffer.from(requestId).toString('hex')
  const dataKey = randomBytes(DATA_KEY_BYTES)
  try {
    const wrapped = await wrap(new Uint8Array(dataKey), kmsEncryptionContext(requestHex))
    if (wrapped.length === 0 || wrapped.length > MAX_WRAPPED_BYTES) throw new RangeError(`KMS returned a ${wrapped.length}-byte CiphertextBlob.`)
    const header = encodeHeader(config.keyId, requestId, options.now ?? Date.now(), wrapped.length)
    const params = hpkeParams(header, encodeKeyConfig(config), wrapped, dataKey)
    try {
      const sender = await cipherSuite().createSenderContext({recipientPublicKey: await recipientKey(config), ...params})
      const enc = own(sender.enc)
      const ct = own(await sender.seal(pad(plaintext, options.padBlock ?? REQUEST_PAD_BLOCK)))
      const secret = own(await sender.export(RESPONSE_LABEL, RESPONSE_SECRET_BYTES))
      return {message: concatBytes(header, wrapped, enc, ct), requestId: requestHex, responseKeys: {secret, enc}}
    } finally {
      params.psk.key.fill(0)
    }
  } finally {
    dataKey.fill(0)
  }
}

export interface ParsedKmsRequest {
  keyId: number
  requestId: string
  issuedAt: number
  header: Uint8Array
  wrapped: Uint8Array
  enc: Uint8Array
  /** HPKE ciphertext (with its tag). */
  ciphertext: Uint8Array
}

/** Split a KMS-mode request (no cryptography). Throws CHANNEL_MALFORMED. */
export function parseKmsRequest(message: Uint8Array): ParsedKmsRequest {
  const malformed = (why: string): never => {
    throw channelError('CHANNEL_MALFORMED', `Not a KMS-mode request: ${why}.`, {hint: 'Client and enclave speak different protocol versions, or the body was cut.'})
  }
  if (message.length < KMS_HEADER_BYTES + 1 + ENC_BYTES + AEAD_TAG_BYTES) malformed(`${message.length} bytes is too short`)
  if (message[0] !== KMS_PROTOCOL_VERSION || message[1] !== KIND_KMS) malformed(`unknown version/kind ${message[0]}/${message[1]}`)
  const wrappedLength = readU16(message, KMS_HEADER_BYTES - 2)
  if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_BYTES) malformed(`wrapped key of ${wrappedLength} bytes`)
  const encAt = KMS_HEADER_BYTES + wrappedLength
  if (message.length < encAt + ENC_BYTES + AEAD_TAG_BYTES) malformed('the wrapped key runs past the body')
  const header = message.subarray(0, KMS_HEADER_BYTES)
  const issued = new DataView(header.buffer, header.byteOffset, header.byteLength).getBigUint64(ISSUED_AT)
  if (issued > BigInt(Number.MAX_SAFE_INTEGER)) malformed('issued_at out of range')
  return {
    keyId: header[2]!,
    requestId: Buffer.from(header.subarray(ID_AT, ID_AT + REQUEST_ID_BYTES)).toString('hex'),
    issuedAt: Number(issued),
    header,
    wrapped: message.subarray(KMS_HEADER_BYTES, encAt),
    enc: message.subarray(encAt, encAt + ENC_BYTES),
    ciphertext: message.subarray(encAt + ENC_BYTES),
  }
}

export interface KmsOpenerOptions {
  /** The enclave's attested keys: a request opens only with the key pair it was sealed to. */
  keys: ServerKeyRing
  /**
   * KMS Decrypt with a Recipient (the enclave's attestation): see src/lib/server/kms-mode.ts, which
   * also rate-limits it. Called only for a request that passed every check that costs nothing.
   */
  unwrap: UnwrapDataKey
  windowMs?: number
  now?: () => number
  /** Most request ids remembered (bounds memory under a flood; default 200 000). */
  maxRemembered?: number
}

/**
 * The enclave's side of KMS mode. In order, and KMS is asked only after all the cheap ones:
 * framing (CHANNEL_MALFORMED), window (CHANNEL_STALE), request id and `enc` not seen
 * (CHANNEL_REPLAY), a key this enclave holds (CHANNEL_UNKNOWN_KEY); then the unwrap through KMS
 * (CHANNEL_KMS_*, CHANNEL_LIMIT when rate-limited) and the HPKE open (CHANNEL_REQUEST_AUTH_FAILED).
 */
export class KmsRequestOpener {
  private readonly seen = new Map<string, number>()
  private readonly windowMs: number
  private readonly now: () => number
  private readonly maxRemembered: number

  constructor(private readonly options: KmsOpenerOptions) {
    this.windowMs = options.windowMs ?? DEFAULT_KMS_WINDOW_MS
    this.now = options.now ?? Date.now
    this.maxRemembered = options.maxRemembered ?? 200_000
  }

  get replayCacheSize(): number {
    return this.seen.size
  }

  private forget(now: number): void {
    for (const [id, expires] of this.seen) if (expires <= now) this.seen.delete(id)
  }

  private checkFresh(parsed: ParsedKmsRequest): void {
    const now = this.now()
    if (Math.abs(now - parsed.issuedAt) > this.windowMs) {
      throw channelError('CHANNEL_STALE', `The request was issued ${Math.round((now - parsed.issuedAt) / 1000)} s from the enclave's clock; at most ${this.windowMs / 1000} s are accepted.`, {
        hint: "Check the client's clock, and resend instead of replaying old requests.",
        details: {requestId: parsed.requestId},
      })
    }
    if (this.seen.has(parsed.requestId)) {
      throw channelError('CHANNEL_REPLAY', 'This request was already received: replays are refused.', {details: {requestId: parsed.requestId}})
    }
  }

  /**
   * Remember the id before KMS is asked: one KMS call per id, whatever the outcome. Checked and set
   * in one step (no await between), so concurrent copies of one request cannot all reach KMS.
   */
  private reserve(parsed: ParsedKmsRequest): void {
    if (this.seen.has(parsed.requestId)) {
      throw channelError('CHANNEL_REPLAY', 'This request was already received: replays are refused.', {details: {requestId: parsed.requestId}})
    }
    const now = this.now()
    if (this.seen.size >= this.maxRemembered) this.forget(now)
    if (this.seen.size >= this.maxRemembered) {
      throw channelError('CHANNEL_LIMIT', 'Too many requests inside the replay window.', {hint: 'Retry in a moment.', details: {requestId: parsed.requestId}})
    }
    this.seen.set(parsed.requestId, Math.max(now, parsed.issuedAt) + this.windowMs)
  }

  async open(message: Uint8Array): Promise<OpenedRequest> {
    const parsed = parseKmsRequest(message)
    this.checkFresh(parsed)
    const key = await this.options.keys.recipient(parsed.keyId, parsed.enc, parsed.requestId)
    this.reserve(parsed)
    let dataKey: Uint8Array
    try {
      dataKey = await this.options.unwrap(new Uint8Array(parsed.wrapped), kmsEncryptionContext(parsed.requestId))
    } catch (error) {
      // KMS was not asked (rate limit): the id is not spent.
      if ((error as {code?: unknown}).code === 'CHANNEL_LIMIT') this.seen.delete(parsed.requestId)
      throw error
    }
    try {
      if (dataKey.length !== DATA_KEY_BYTES) {
        throw channelError('CHANNEL_KMS_REJECTED', `The unwrapped data key is ${dataKey.length} bytes, not ${DATA_KEY_BYTES}.`, {details: {requestId: parsed.requestId}})
      }
      let padded: Uint8Array
      let secret: Uint8Array
      const params = hpkeParams(parsed.header, key.config, parsed.wrapped, dataKey)
      try {
        const recipient = await cipherSuite().createRecipientContext({recipientKey: key.keyPair, enc: own(parsed.enc), ...params})
        padded = own(await recipient.open(own(parsed.ciphertext)))
        secret = own(await recipient.export(RESPONSE_LABEL, RESPONSE_SECRET_BYTES))
      } catch (cause) {
        params.psk.key.fill(0)
        throw channelError('CHANNEL_REQUEST_AUTH_FAILED', "The KMS-mode request does not open: it was altered in transit, or sealed to another enclave's key.", {
          cause,
          details: {requestId: parsed.requestId},
        })
      }
      params.psk.key.fill(0)
      key.accept()
      const plaintext = unpad(padded)
      if (plaintext === null) throw channelError('CHANNEL_MALFORMED', 'The opened request has no valid padding.', {details: {requestId: parsed.requestId}})
      return {plaintext: new Uint8Array(plaintext), requestId: parsed.requestId, responseKeys: {secret, enc: own(parsed.enc)}}
    } finally {
      dataKey.fill(0)
    }
  }
}
