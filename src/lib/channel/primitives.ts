/**
 * node:crypto primitives under the HPKE library.
 *
 * @hpke/core implements RFC 9180 — the labeled extract/expand, the key schedule, DHKEM, the nonce
 * sequence and the exporter — on WebCrypto. In Node every WebCrypto call is an asynchronous job
 * that creates a CryptoKey (50–150 µs each), and setting up one HPKE context takes about twenty of
 * them: over a millisecond per request on each side. The classes here replace only the primitives
 * underneath — HMAC-SHA256 (HKDF-SHA256's extract and expand), AES-256-GCM and X25519 — with
 * node:crypto's synchronous ones (a few µs each, 50 µs for X25519), through the library's own
 * extension points: a KDF and an AEAD object, and the KDF and DH primitive of its DHKEM. Every HPKE
 * construction is still the library's, so the bytes on the wire are the same: channel.test.ts checks
 * both directions against the stock WebCrypto suite.
 */
import {KeyObject, createCipheriv, createDecipheriv, createHmac, createPublicKey, diffieHellman, generateKeyPairSync} from 'node:crypto'

import {Aes256Gcm, DeserializeError, DhkemX25519HkdfSha256, HkdfSha256, InvalidParamError, NotSupportedError, SerializeError} from '@hpke/core'

type BytesLike = ArrayBufferLike | ArrayBufferView

/** A view of the bytes (no copy). */
function view(bytes: BytesLike): Uint8Array {
  return ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes)
}

/** The bytes in an ArrayBuffer of their own (node may hand out views of a shared pool). */
function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
}

const HASH = 'sha256'
const HASH_BYTES = 32

/** HKDF-Extract (RFC 5869): an empty salt is HashLen zero bytes. */
export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac(HASH, salt.length === 0 ? new Uint8Array(HASH_BYTES) : salt)
    .update(ikm)
    .digest()
}

/** HKDF-Expand (RFC 5869): T(i) = HMAC(PRK, T(i-1) | info | i), the first `len` bytes of T(1) | T(2) | … */
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, len: number): ArrayBuffer {
  if (len > 255 * HASH_BYTES) throw new InvalidParamError('Entropy limit reached')
  const out = new Uint8Array(len)
  let previous: Uint8Array = new Uint8Array(0)
  for (let i = 1, at = 0; at < len; i++) {
    previous = createHmac(HASH, prk).update(previous).update(info).update(new Uint8Array([i])).digest()
    out.set(previous.subarray(0, len - at), at)
    at += previous.length
  }
  return out.buffer
}

/** HKDF-SHA256 on node:crypto; the labeled (HPKE) forms are the library's, built on these. */
export class NodeHkdfSha256 extends HkdfSha256 {
  override async extract(salt: BytesLike, ikm: BytesLike): Promise<ArrayBuffer> {
    const s = view(salt)
    // As the library's: a non-empty salt must be HashLen bytes.
    if (s.length !== 0 && s.length !== this.hashSize) throw new InvalidParamError('The salt length must be the same as the hashSize')
    return ownBuffer(hkdfExtract(s, view(ikm)))
  }

  override async expand(prk: BytesLike, info: BytesLike, len: number): Promise<ArrayBuffer> {
    return hkdfExpand(view(prk), view(info), len)
  }

  override async extractAndExpand(salt: BytesLike, ikm: BytesLike, info: BytesLike, len: number): Promise<ArrayBuffer> {
    return hkdfExpand(hkdfExtract(view(salt), view(ikm)), view(info), len)
  }
}

/** AES-256-GCM on node:crypto (ciphertext | 16-byte tag, as WebCrypto's). */
export class NodeAes256Gcm extends Aes256Gcm {
  override createEncryptionContext(key: BytesLike): {
    seal(iv: BytesLike, data: BytesLike, aad: BytesLike): Promise<ArrayBuffer>
    open(iv: BytesLike, data: BytesLike, aad: BytesLike): Promise<ArrayBuffer>
  } {
    const k = Buffer.from(view(key)) // a copy: the caller's key schedule buffers are not kept
    if (k.length !== this.keySize) throw new InvalidParamError(`An AES-256-GCM key is ${this.keySize} bytes.`)
    const tagSize = this.tagSize
    return {
      async seal(iv, data, aad) {
        const cipher = createCipheriv('aes-256-gcm', k, view(iv), {authTagLength: tagSize})
        cipher.setAAD(view(aad))
        return ownBuffer(Buffer.concat([cipher.update(view(data)), cipher.final(), cipher.getAuthTag()]))
      },
      async open(iv, data, aad) {
        const d = view(data)
        if (d.length < tagSize) throw new Error('The ciphertext is shorter than its tag.')
        // authTagLength pins the tag at 16 bytes (node would otherwise accept a truncated one).
        const decipher = createDecipheriv('aes-256-gcm', k, view(iv), {authTagLength: tagSize})
        decipher.setAAD(view(aad))
        decipher.setAuthTag(d.subarray(d.length - tagSize))
        return ownBuffer(Buffer.concat([decipher.update(d.subarray(0, d.length - tagSize)), decipher.final()]))
      },
    }
  }
}

/** suite_id of the KEM's own labeled KDF calls: "KEM" | I2OSP(kem_id = 0x0020, 2) (RFC 9180 §4.1). */
const KEM_SUITE_ID = new Uint8Array([0x4b, 0x45, 0x4d, 0x00, 0x20])
const X25519_BYTES = 32

/**
 * The library types its key handles as WebCrypto CryptoKeys; the X25519 primitive below makes node
 * KeyObjects instead (and accepts either). They are opaque to the library, which only hands them
 * back to the primitive, and to nle, which only hands them back to the library.
 */
type LibraryKey = Awaited<ReturnType<DhkemX25519HkdfSha256['deserializePublicKey']>>
const asLibraryKey = (key: KeyObject): LibraryKey => key as unknown as LibraryKey
const asKeyObject = (key: LibraryKey | KeyObject): KeyObject => (key instanceof KeyObject ? key : KeyObject.from(key as Parameters<typeof KeyObject.from>[0]))

/** Raw public keys already serialized (the enclave's own key is serialized on every request). */
const rawPublicKeys = new WeakMap<object, ArrayBuffer>()

/**
 * The library's DHKEM(X25519, HKDF-SHA256) — Encap/Decap, ExtractAndExpand and the KEM context as
 * it computes them — with its KDF on node:crypto and its X25519 primitive (key generation, raw
 * public key (de)serialization, DH) on node:crypto. The primitive's remaining members (private key
 * import/export and DeriveKeyPair, unused by nle) stay the library's WebCrypto ones.
 */
export class NodeDhkemX25519HkdfSha256 extends DhkemX25519HkdfSha256 {
  constructor() {
    super()
    const kdf = new NodeHkdfSha256()
    kdf.init(KEM_SUITE_ID) // as the base constructor initialises its own KDF
    this._kdf = kdf
    const base = this._prim
    this._prim = {
      serializePrivateKey: (key) => base.serializePrivateKey(key),
      deserializePrivateKey: (key) => base.deserializePrivateKey(key),
      importKey: (format, key, isPublic) => base.importKey(format, key, isPublic),
      deriveKeyPair: (ikm) => base.deriveKeyPair(ikm),
      derivePublicKey: (key) => base.derivePublicKey(key),

      async serializePublicKey(key) {
        const cached = rawPublicKeys.get(key)
        if (cached !== undefined) return cached.slice(0)
        let raw: ArrayBuffer
        try {
          const jwk = asKeyObject(key).export({format: 'jwk'})
          if (jwk.kty !== 'OKP' || jwk.crv !== 'X25519' || typeof jwk.x !== 'string') throw new Error('Not an X25519 public key')
          raw = ownBuffer(Buffer.from(jwk.x, 'base64url'))
        } catch (e) {
          throw new SerializeError(e)
        }
        rawPublicKeys.set(key, raw)
        return raw.slice(0)
      },

      async deserializePublicKey(key) {
        const raw = view(key)
        try {
          if (raw.length !== X25519_BYTES) throw new Error('Invalid public key for the ciphersuite')
          const keyObject = createPublicKey({key: {kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url')}, format: 'jwk'})
          const handle = asLibraryKey(keyObject)
          rawPublicKeys.set(handle, ownBuffer(raw))
          return handle
        } catch (e) {
          throw new DeserializeError(e)
        }
      },

      async generateKeyPair() {
        try {
          const {privateKey, publicKey} = generateKeyPairSync('x25519')
          return {privateKey: asLibraryKey(privateKey), publicKey: asLibraryKey(publicKey)}
        } catch (e) {
          throw new NotSupportedError(e)
        }
      },

      async dh(sk, pk) {
        try {
          // OpenSSL refuses an all-zero shared secret (a small-order public key), as WebCrypto does.
          return ownBuffer(diffieHellman({privateKey: asKeyObject(sk), publicKey: asKeyObject(pk)}))
        } catch (e) {
          throw new SerializeError(e)
        }
      },
    }
  }
}
