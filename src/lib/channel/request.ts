/**
 * Sealed requests: HPKE base mode to the attested key, in the manner of an RFC 9458 Encapsulated
 * Request.
 *
 *   header   = version (1) | key_id (1) | kem_id (2) | kdf_id (2) | aead_id (2) | request_id (16)
 *   message  = header | enc (32) | ciphertext
 *   info     = "nle-chat request" | 0x00 | header
 *
 * The header travels in clear (the server needs key_id to pick its key) and is authenticated
 * through `info`. The plaintext is padded (./bytes.ts `pad`) so its length shows only a bucket.
 */
import {randomBytes} from 'node:crypto'

import {type HpkeKeyPair, type KeyConfig, ENC_BYTES, KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_AES_256_GCM, PROTOCOL_VERSION, checkSuite, cipherSuite} from './suite.js'
import {concatBytes, own, pad, readU16, u16, unpad, utf8} from './bytes.js'
import {channelError} from './errors.js'
import {type ResponseKeys, RESPONSE_EXPORT_LABEL, RESPONSE_SECRET_BYTES} from './response.js'

export const REQUEST_ID_BYTES = 16
export const REQUEST_HEADER_BYTES = 8 + REQUEST_ID_BYTES
const REQUEST_LABEL = utf8('nle-chat request')
/** Default padding bucket of request plaintexts. */
export const REQUEST_PAD_BLOCK = 256

export interface SealedRequest {
  /** The bytes to POST. */
  message: Uint8Array
  /** Hex request id (also in the header). */
  requestId: string
  /** Opens the response to this request. Secret: keep in memory only. */
  responseKeys: ResponseKeys
}

function header(keyId: number, requestId: Uint8Array): Uint8Array {
  return concatBytes(new Uint8Array([PROTOCOL_VERSION, keyId & 0xff]), u16(KEM_X25519_HKDF_SHA256), u16(KDF_HKDF_SHA256), u16(AEAD_AES_256_GCM), requestId)
}

const info = (hdr: Uint8Array): Uint8Array => concatBytes(REQUEST_LABEL, new Uint8Array([0]), hdr)

type RecipientKey = Awaited<ReturnType<ReturnType<typeof cipherSuite>['kem']['deserializePublicKey']>>
/** The attested key, deserialized once per key configuration (a session seals many requests to it). */
const recipientKeys = new WeakMap<KeyConfig, Promise<RecipientKey>>()
export function recipientKey(config: KeyConfig): Promise<RecipientKey> {
  let key = recipientKeys.get(config)
  if (key === undefined) {
    key = cipherSuite().kem.deserializePublicKey(config.publicKey)
    key.catch(() => recipientKeys.delete(config))
    recipientKeys.set(config, key)
  }
  return key
}

/** An HPKE sender context made ahead of its request (the costly part of sealing). Use once. */
export interface PreparedSeal {
  readonly keyId: number
  seal(plaintext: Uint8Array, options?: {padBlock?: number}): Promise<SealedRequest>
}

/**
 * Set up the sender side for one future request: key encapsulation and key schedule, which are
 * most of a seal's cost, so a client can do it while idle. The result seals exactly one plaintext.
 */
export async function prepareSeal(config: KeyConfig, options: {requestId?: Uint8Array} = {}): Promise<PreparedSeal> {
  checkSuite(config.kemId, config.kdfId, config.aeadId)
  const requestId = options.requestId ?? new Uint8Array(randomBytes(REQUEST_ID_BYTES))
  if (requestId.length !== REQUEST_ID_BYTES) throw new RangeError(`A request id is ${REQUEST_ID_BYTES} bytes.`)
  const hdr = header(config.keyId, requestId)
  const suite = cipherSuite()
  const recipientPublicKey = await recipientKey(config)
  const sender = await suite.createSenderContext({recipientPublicKey, info: info(hdr)})
  const enc = own(sender.enc)
  const secret = own(await sender.export(RESPONSE_EXPORT_LABEL, RESPONSE_SECRET_BYTES))
  let used = false
  return {
    keyId: config.keyId,
    async seal(plaintext, sealOptions = {}) {
      if (used) throw new Error('A prepared seal is used once.')
      used = true
      const ct = own(await sender.seal(pad(plaintext, sealOptions.padBlock ?? REQUEST_PAD_BLOCK)))
      return {message: concatBytes(hdr, enc, ct), requestId: Buffer.from(requestId).toString('hex'), responseKeys: {secret, enc}}
    },
  }
}

/** Seal `plaintext` to the attested key configuration. */
export async function sealRequest(config: KeyConfig, plaintext: Uint8Array, options: {padBlock?: number; requestId?: Uint8Array} = {}): Promise<SealedRequest> {
  const prepared = await prepareSeal(config, options.requestId ? {requestId: options.requestId} : {})
  return prepared.seal(plaintext, options.padBlock ? {padBlock: options.padBlock} : {})
}

export interface ParsedRequest {
  keyId: number
  requestId: string
  header: Uint8Array
  enc: Uint8Array
  ciphertext: Uint8Array
}

/** Split a sealed request into its parts (no cryptography). Throws CHANNEL_MALFORMED / CHANNEL_UNSUPPORTED_SUITE. */
export function parseSealedRequest(message: Uint8Array): ParsedRequest {
  if (message.length < REQUEST_HEADER_BYTES + ENC_BYTES + 16) {
    throw channelError('CHANNEL_MALFORMED', `A sealed request is at least ${REQUEST_HEADER_BYTES + ENC_BYTES + 16} bytes; got ${message.length}.`)
  }
  if (message[0] !== PROTOCOL_VERSION) {
    throw channelError('CHANNEL_MALFORMED', `Unknown sealed request version ${message[0]}.`, {hint: 'Client and enclave speak different protocol versions.'})
  }
  checkSuite(readU16(message, 2), readU16(message, 4), readU16(message, 6))
  const hdr = message.subarray(0, REQUEST_HEADER_BYTES)
  return {
    keyId: message[1]!,
    requestId: Buffer.from(hdr.subarray(8)).toString('hex'),
    header: hdr,
    enc: message.subarray(REQUEST_HEADER_BYTES, REQUEST_HEADER_BYTES + ENC_BYTES),
    ciphertext: message.subarray(REQUEST_HEADER_BYTES + ENC_BYTES),
  }
}

export interface OpenedRequest {
  plaintext: Uint8Array
  requestId: string
  responseKeys: ResponseKeys
}

/**
 * Open a parsed request with the recipient key pair. Throws CHANNEL_REQUEST_AUTH_FAILED when the
 * ciphertext, the header or enc were altered (or the request was sealed to another key).
 */
export async function openParsedRequest(parsed: ParsedRequest, keyPair: HpkeKeyPair): Promise<OpenedRequest> {
  const suite = cipherSuite()
  let padded: Uint8Array
  let secret: Uint8Array
  try {
    const recipient = await suite.createRecipientContext({recipientKey: keyPair, enc: own(parsed.enc), info: info(parsed.header)})
    padded = own(await recipient.open(own(parsed.ciphertext)))
    secret = own(await recipient.export(RESPONSE_EXPORT_LABEL, RESPONSE_SECRET_BYTES))
  } catch (cause) {
    throw channelError('CHANNEL_REQUEST_AUTH_FAILED', 'The sealed request does not open: it was altered in transit or sealed to another key.', {
      cause,
      details: {requestId: parsed.requestId},
    })
  }
  const plaintext = unpad(padded)
  if (plaintext === null) throw channelError('CHANNEL_MALFORMED', 'The opened request has no valid padding.', {details: {requestId: parsed.requestId}})
  return {plaintext, requestId: parsed.requestId, responseKeys: {secret, enc: own(parsed.enc)}}
}
