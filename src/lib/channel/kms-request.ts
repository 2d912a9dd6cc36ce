/**
 * KMS mode's sealed requests: the question is encrypted under a data key that only KMS can unwrap,
 * and KMS unwraps it only for an enclave whose attested measurements the key policy admits.
 *
 *   client   data_key (32 random bytes)
 *            wrapped = KMS Encrypt(key, data_key, encryption context) — under the client's own identity
 *   header   = version (1) = 1 | kind (1) = 'K' | request_id (16) | issued_at (8, ms, BE) | wrapped_len (2)
 *   message  = header | wrapped | iv (12) | AES-256-GCM(k_req, iv, aad, padded plaintext) | tag (16)
 *   k_req    = HKDF-SHA256(ikm = data_key, salt = request_id, info = "nle-kms request key", 32)
 *   aad      = "nle-kms request" | 0x00 | header | wrapped
 *   context  = {"nle:purpose": "chat-request", "nle:request-id": hex(request_id)}
 *
 * The enclave rebuilds the encryption context from the header, so a wrapped key moved into another
 * request does not unwrap (KMS checks the context). The answer is sealed exactly as on the attested
 * channel (./response.ts), with `secret = HKDF-SHA256(data_key, request_id, "nle-kms response", 32)`
 * and `enc = header`: only the client, which made the data key, can open it.
 *
 * Replays: a request is accepted only within `windowMs` of its issued_at, and each request id once
 * within that window.
 */
import {createCipheriv, createDecipheriv, hkdfSync, randomBytes} from 'node:crypto'

import {concatBytes, pad, readU16, u16, unpad, utf8} from './bytes.js'
import {channelError} from './errors.js'
import {type OpenedRequest, type SealedRequest, REQUEST_ID_BYTES, REQUEST_PAD_BLOCK} from './request.js'
import {type ResponseKeys, RESPONSE_SECRET_BYTES} from './response.js'
import {AEAD_NONCE_BYTES, AEAD_TAG_BYTES} from './suite.js'

/** Media type of a KMS-mode request body. */
export const KMS_REQUEST_TYPE = 'application/nle-kms-request'
export const KMS_PROTOCOL_VERSION = 1
const KIND_KMS = 0x4b // 'K'
export const KMS_HEADER_BYTES = 2 + REQUEST_ID_BYTES + 8 + 2
export const DATA_KEY_BYTES = 32
/** KMS Encrypt returns at most 6 KiB of CiphertextBlob. */
export const MAX_WRAPPED_BYTES = 6144
/** How long after it was issued a request is accepted (and its id remembered). */
export const DEFAULT_KMS_WINDOW_MS = 5 * 60 * 1000
const REQUEST_AAD = utf8('nle-kms request')

/** Encrypt a data key under the client's KMS key (KMS Encrypt with this encryption context). */
export type WrapDataKey = (dataKey: Uint8Array, encryptionContext: Record<string, string>) => Promise<Uint8Array>
/** Recover a data key inside the enclave (KMS Decrypt with a Recipient). */
export type UnwrapDataKey = (wrapped: Uint8Array, encryptionContext: Record<string, string>) => Promise<Uint8Array>

/** The encryption context both sides use for a request id (hex). */
export function kmsEncryptionContext(requestId: string): Record<string, string> {
  return {'nle:purpose': 'chat-request', 'nle:request-id': requestId}
}

function hkdf(dataKey: Uint8Array, salt: Uint8Array, info: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, salt, info, length))
}

function responseKeys(dataKey: Uint8Array, header: Uint8Array): ResponseKeys {
  const requestId = header.subarray(2, 2 + REQUEST_ID_BYTES)
  return {secret: new Uint8Array(hkdf(dataKey, requestId, 'nle-kms response', RESPONSE_SECRET_BYTES)), enc: new Uint8Array(header)}
}

function encodeHeader(requestId: Uint8Array, issuedAt: number, wrappedLength: number): Uint8Array {
  const out = new Uint8Array(KMS_HEADER_BYTES)
  out[0] = KMS_PROTOCOL_VERSION
  out[1] = KIND_KMS
  out.set(requestId, 2)
  new DataView(out.buffer).setBigUint64(2 + REQUEST_ID_BYTES, BigInt(issuedAt))
  out.set(u16(wrappedLength), KMS_HEADER_BYTES - 2)
  return out
}

export interface KmsSealOptions {
  padBlock?: number
  requestId?: Uint8Array
  now?: number
}

/** Seal a request for KMS mode. `wrap` calls KMS Encrypt with the client's own credentials. */
export async function sealKmsRequest(plaintext: Uint8Array, wrap: WrapDataKey, options: KmsSealOptions = {}): Promise<SealedRequest> {
  const requestId = options.requestId ?? new Uint8Array(randomBytes(REQUEST_ID_BYTES))
  if (requestId.length !== REQUEST_ID_BYTES) throw new RangeError(`A request id is ${REQUEST_ID_BYTES} bytes.`)
  const requestHex = Buffer.from(requestId).toString('hex')
  const dataKey = randomBytes(DATA_KEY_BYTES)
  try {
    const wrapped = await wrap(new Uint8Array(dataKey), kmsEncryptionContext(requestHex))
    if (wrapped.length === 0 || wrapped.length > MAX_WRAPPED_BYTES) throw new RangeError(`KMS returned a ${wrapped.length}-byte CiphertextBlob.`)
    const header = encodeHeader(requestId, options.now ?? Date.now(), wrapped.length)
    const iv = randomBytes(AEAD_NONCE_BYTES)
    const cipher = createCipheriv('aes-256-gcm', hkdf(dataKey, requestId, 'nle-kms request key', 32), iv)
    cipher.setAAD(concatBytes(REQUEST_AAD, new Uint8Array([0]), header, wrapped))
    const ct = Buffer.concat([cipher.update(pad(plaintext, options.padBlock ?? REQUEST_PAD_BLOCK)), cipher.final(), cipher.getAuthTag()])
    return {message: concatBytes(header, wrapped, iv, ct), requestId: requestHex, responseKeys: responseKeys(dataKey, header)}
  } finally {
    dataKey.fill(0)
  }
}

export interface ParsedKmsRequest {
  requestId: string
  issuedAt: number
  header: Uint8Array
  wrapped: Uint8Array
  iv: Uint8Array
  /** Ciphertext followed by the tag. */
  sealed: Uint8Array
}

/** Split a KMS-mode request (no cryptography). Throws CHANNEL_MALFORMED. */
export function parseKmsRequest(message: Uint8Array): ParsedKmsRequest {
  const malformed = (why: string): never => {
    throw channelError('CHANNEL_MALFORMED', `Not a KMS-mode request: ${why}.`, {hint: 'Client and enclave speak different protocol versions, or the body was cut.'})
  }
  if (message.length < KMS_HEADER_BYTES + 1 + AEAD_NONCE_BYTES + AEAD_TAG_BYTES) malformed(`${message.length} bytes is too short`)
  if (message[0] !== KMS_PROTOCOL_VERSION || message[1] !== KIND_KMS) malformed(`unknown version/kind ${message[0]}/${message[1]}`)
  const wrappedLength = readU16(message, KMS_HEADER_BYTES - 2)
  if (wrappedLength === 0 || wrappedLength > MAX_WRAPPED_BYTES) malformed(`wrapped key of ${wrappedLength} bytes`)
  const ivAt = KMS_HEADER_BYTES + wrappedLength
  if (message.length < ivAt + AEAD_NONCE_BYTES + AEAD_TAG_BYTES) malformed('the wrapped key runs past the body')
  const header = message.subarray(0, KMS_HEADER_BYTES)
  const issued = new DataView(header.buffer, header.byteOffset, header.byteLength).getBigUint64(2 + REQUEST_ID_BYTES)
  if (issued > BigInt(Number.MAX_SAFE_INTEGER)) malformed('issued_at out of range')
  return {
    requestId: Buffer.from(header.subarray(2, 2 + REQUEST_ID_BYTES)).toString('hex'),
    issuedAt: Number(issued),
    header,
    wrapped: message.subarray(KMS_HEADER_BYTES, ivAt),
    iv: message.subarray(ivAt, ivAt + AEAD_NONCE_BYTES),
    sealed: message.subarray(ivAt + AEAD_NONCE_BYTES),
  }
}

export interface KmsOpenerOptions {
  /** KMS Decrypt with a Recipient (the enclave's attestation): see src/lib/server/kms-mode.ts. */
  unwrap: UnwrapDataKey
  windowMs?: number
  now?: () => number
  /** Most request ids remembered (bounds memory under a flood; default 200 000). */
  maxRemembered?: number
}

/** The enclave's side of KMS mode: window and replay checks, unwrap through KMS, open. */
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

  /** Throws CHANNEL_MALFORMED, CHANNEL_STALE, CHANNEL_REPLAY, CHANNEL_KMS_*, CHANNEL_REQUEST_AUTH_FAILED. */
  async open(message: Uint8Array): Promise<OpenedRequest> {
    const parsed = parseKmsRequest(message)
    this.checkFresh(parsed)
    const dataKey = await this.options.unwrap(new Uint8Array(parsed.wrapped), kmsEncryptionContext(parsed.requestId))
    try {
      if (dataKey.length !== DATA_KEY_BYTES) {
        throw channelError('CHANNEL_KMS_REJECTED', `The unwrapped data key is ${dataKey.length} bytes, not ${DATA_KEY_BYTES}.`, {details: {requestId: parsed.requestId}})
      }
      let padded: Buffer
      try {
        const decipher = createDecipheriv('aes-256-gcm', hkdf(dataKey, parsed.header.subarray(2, 2 + REQUEST_ID_BYTES), 'nle-kms request key', 32), parsed.iv)
        decipher.setAAD(concatBytes(REQUEST_AAD, new Uint8Array([0]), parsed.header, parsed.wrapped))
        decipher.setAuthTag(parsed.sealed.subarray(parsed.sealed.length - AEAD_TAG_BYTES))
        padded = Buffer.concat([decipher.update(parsed.sealed.subarray(0, parsed.sealed.length - AEAD_TAG_BYTES)), decipher.final()])
      } catch (cause) {
        throw channelError('CHANNEL_REQUEST_AUTH_FAILED', 'The KMS-mode request does not open: it was altered in transit.', {cause, details: {requestId: parsed.requestId}})
      }
      // Again: another copy may have been unwrapped meanwhile.
      this.checkFresh(parsed)
      const now = this.now()
      if (this.seen.size >= this.maxRemembered) this.forget(now)
      if (this.seen.size >= this.maxRemembered) {
        throw channelError('CHANNEL_LIMIT', 'Too many requests inside the replay window.', {hint: 'Retry in a moment.', details: {requestId: parsed.requestId}})
      }
      this.seen.set(parsed.requestId, Math.max(now, parsed.issuedAt) + this.windowMs)
      const plaintext = unpad(padded)
      if (plaintext === null) throw channelError('CHANNEL_MALFORMED', 'The opened request has no valid padding.', {details: {requestId: parsed.requestId}})
      return {plaintext: new Uint8Array(plaintext), requestId: parsed.requestId, responseKeys: responseKeys(dataKey, parsed.header)}
    } finally {
      dataKey.fill(0)
    }
  }
}
