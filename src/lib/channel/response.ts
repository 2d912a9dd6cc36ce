/**
 * Sealed responses, in the manner of RFC 9458 §4.4 (response encapsulation) extended to a stream of
 * chunks:
 *
 *   secret         = Export(HPKE context of the request, "nle-chat response", 32)   (32 = max(Nn, Nk))
 *   response_nonce = 32 random bytes, chosen by the server, sent first
 *   prk            = HKDF-Extract(salt = enc | response_nonce, ikm = secret)
 *   key            = HKDF-Expand(prk, "key", 32);  iv = HKDF-Expand(prk, "nonce", 12)
 *   chunk i        = flag (1) | AES-256-GCM(key, iv XOR i, aad = "nle-chat chunk" | flag, padded plaintext)
 *
 * Plaintexts are padded to buckets (./bytes.ts padToBucket): chunks of a stream to 512 bytes (a token,
 * the final chunk with its usage and a sealed error all fit), whole answers to 1 KiB and powers of
 * two above it, so a sealed error has the size of a short answer.
 *
 * flag is 1 on the last chunk and 0 before it, and it is authenticated: dropping the tail of the
 * stream leaves no final chunk (CHANNEL_TRUNCATED), and reordering, replaying or flipping chunks
 * breaks the nonce or the tag (CHANNEL_RESPONSE_AUTH_FAILED). Both sides know only the request's
 * HPKE context; the relay sees ciphertext of padded lengths.
 */
import {createCipheriv, createDecipheriv, randomBytes} from 'node:crypto'

import {concatBytes, padToBucket, unpad, utf8} from './bytes.js'
import {channelError} from './errors.js'
import {hkdfExpand, hkdfExtract} from './primitives.js'
import {AEAD_KEY_BYTES, AEAD_NONCE_BYTES, AEAD_TAG_BYTES} from './suite.js'

export const RESPONSE_EXPORT_LABEL = utf8('nle-chat response')
export const RESPONSE_SECRET_BYTES = Math.max(AEAD_KEY_BYTES, AEAD_NONCE_BYTES)
export const RESPONSE_NONCE_BYTES = Math.max(AEAD_KEY_BYTES, AEAD_NONCE_BYTES)
/** Smallest padding bucket of a stream's chunks (hides the length of each token, and tells an error from none). */
export const CHUNK_PAD_BLOCK = 512
/** Smallest padding bucket of a whole answer (an error and a short answer fill it alike). */
export const WHOLE_PAD_BLOCK = 1024
const CHUNK_AAD = utf8('nle-chat chunk')
const LABEL_KEY = utf8('key')
const LABEL_NONCE = utf8('nonce')
const MAX_CHUNKS = 2 ** 32
const FLAG_MORE = 0
const FLAG_FINAL = 1

/** What both ends hold after the request: the exported secret and the request's enc. Secret. */
export interface ResponseKeys {
  secret: Uint8Array
  enc: Uint8Array
}

interface ChunkKeys {
  key: Buffer
  iv: Buffer
}

function deriveChunkKeys(keys: ResponseKeys, responseNonce: Uint8Array): ChunkKeys {
  // HKDF-SHA256 (RFC 5869): one extract, two expands.
  const prk = hkdfExtract(concatBytes(keys.enc, responseNonce), keys.secret)
  return {
    key: Buffer.from(hkdfExpand(prk, LABEL_KEY, AEAD_KEY_BYTES)),
    iv: Buffer.from(hkdfExpand(prk, LABEL_NONCE, AEAD_NONCE_BYTES)),
  }
}

function chunkNonce(iv: Buffer, counter: number): Buffer {
  const nonce = Buffer.from(iv)
  // The counter, big-endian, XORed into the last 8 bytes (it never exceeds 2^32).
  const hi = Math.floor(counter / 2 ** 32)
  const lo = counter >>> 0
  nonce.writeUInt32BE((nonce.readUInt32BE(4) ^ hi) >>> 0, 4)
  nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ lo) >>> 0, 8)
  return nonce
}

/** The server's side: seals the chunks of one response. */
export class ResponseSealer {
  readonly nonce: Uint8Array
  private readonly keys: ChunkKeys
  private counter = 0
  private done = false

  constructor(keys: ResponseKeys, private readonly padBlock = CHUNK_PAD_BLOCK, nonce?: Uint8Array) {
    this.nonce = nonce ?? new Uint8Array(randomBytes(RESPONSE_NONCE_BYTES))
    this.keys = deriveChunkKeys(keys, this.nonce)
  }

  get finished(): boolean {
    return this.done
  }

  /** Seal one chunk. After a final chunk nothing more can be sealed. */
  seal(plaintext: Uint8Array, final: boolean): Uint8Array {
    if (this.done) throw channelError('CHANNEL_AFTER_FINAL', 'The response was already finished.')
    if (this.counter >= MAX_CHUNKS) throw channelError('CHANNEL_LIMIT', 'Too many chunks in one response.')
    const flag = final ? FLAG_FINAL : FLAG_MORE
    const cipher = createCipheriv('aes-256-gcm', this.keys.key, chunkNonce(this.keys.iv, this.counter++))
    cipher.setAAD(concatBytes(CHUNK_AAD, new Uint8Array([flag])))
    const body = Buffer.concat([cipher.update(padToBucket(plaintext, this.padBlock)), cipher.final(), cipher.getAuthTag()])
    if (final) this.done = true
    return concatBytes(new Uint8Array([flag]), body)
  }
}

export interface OpenedChunk {
  plaintext: Uint8Array
  final: boolean
}

/** The client's side: opens the chunks of one response, in order. */
export class ResponseOpener {
  private readonly keys: ChunkKeys
  private counter = 0
  private done = false

  constructor(keys: ResponseKeys, responseNonce: Uint8Array) {
    if (responseNonce.length !== RESPONSE_NONCE_BYTES) {
      throw channelError('CHANNEL_MALFORMED', `The response nonce is ${responseNonce.length} bytes; expected ${RESPONSE_NONCE_BYTES}.`)
    }
    this.keys = deriveChunkKeys(keys, responseNonce)
  }

  get finished(): boolean {
    return this.done
  }

  open(frame: Uint8Array): OpenedChunk {
    if (this.done) throw channelError('CHANNEL_AFTER_FINAL', 'The response carried data after its final chunk.')
    if (frame.length < 1 + AEAD_TAG_BYTES) throw channelError('CHANNEL_MALFORMED', `A sealed chunk is at least ${1 + AEAD_TAG_BYTES} bytes; got ${frame.length}.`)
    const flag = frame[0]!
    if (flag !== FLAG_MORE && flag !== FLAG_FINAL) {
      throw channelError('CHANNEL_RESPONSE_AUTH_FAILED', 'A sealed response chunk does not open: it was altered in transit.', {details: {chunk: this.counter}})
    }
    const body = frame.subarray(1, frame.length - AEAD_TAG_BYTES)
    const tag = frame.subarray(frame.length - AEAD_TAG_BYTES)
    let padded: Buffer
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.keys.key, chunkNonce(this.keys.iv, this.counter))
      decipher.setAAD(concatBytes(CHUNK_AAD, new Uint8Array([flag])))
      decipher.setAuthTag(tag)
      padded = Buffer.concat([decipher.update(body), decipher.final()])
    } catch (cause) {
      throw channelError('CHANNEL_RESPONSE_AUTH_FAILED', 'A sealed response chunk does not open: it was altered, reordered or injected in transit.', {
        cause,
        details: {chunk: this.counter},
      })
    }
    const plaintext = unpad(padded)
    if (plaintext === null) throw channelError('CHANNEL_MALFORMED', 'An opened response chunk has no valid padding.', {details: {chunk: this.counter}})
    this.counter++
    if (flag === FLAG_FINAL) this.done = true
    return {plaintext: new Uint8Array(plaintext), final: flag === FLAG_FINAL}
  }

  /** Call when the transport ended: throws CHANNEL_TRUNCATED unless the final chunk was seen. */
  finish(): void {
    if (!this.done) {
      throw channelError('CHANNEL_TRUNCATED', `The response ended after ${this.counter} chunk(s) without its final chunk: it was cut in transit.`, {
        hint: 'The connection to the enclave broke (enclave restarted or the proxy timed out). Retry the request.',
        details: {chunks: this.counter},
      })
    }
  }
}

/** A whole (non-streamed) response: response_nonce | one final chunk. */
export function sealWholeResponse(keys: ResponseKeys, plaintext: Uint8Array, padBlock = WHOLE_PAD_BLOCK): Uint8Array {
  const sealer = new ResponseSealer(keys, padBlock)
  return concatBytes(sealer.nonce, sealer.seal(plaintext, true))
}

export function openWholeResponse(keys: ResponseKeys, body: Uint8Array): Uint8Array {
  if (body.length < RESPONSE_NONCE_BYTES + 1 + AEAD_TAG_BYTES) {
    throw channelError('CHANNEL_TRUNCATED', `The sealed response is ${body.length} bytes: too short to hold a final chunk.`)
  }
  const opener = new ResponseOpener(keys, body.subarray(0, RESPONSE_NONCE_BYTES))
  const chunk = opener.open(body.subarray(RESPONSE_NONCE_BYTES))
  opener.finish()
  return chunk.plaintext
}
