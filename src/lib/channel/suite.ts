/**
 * The HPKE suite (RFC 9180) and the key configuration the enclave puts in its attestation
 * document's `public_key` field.
 *
 * Suite: DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM (ids 0x0020 / 0x0001 / 0x0002),
 * base mode. The key configuration names the suite next to the key, so the attested document fixes
 * the algorithms as well as the key and a relay cannot downgrade them.
 *
 * Key configuration (40 bytes):
 *   version (1) = 1 | key_id (1) | kem_id (2) | public_key (32) | kdf_id (2) | aead_id (2)
 */
import {CipherSuite} from '@hpke/core'

import {concatBytes, own, readU16, u16} from './bytes.js'
import {channelError} from './errors.js'
import {NodeAes256Gcm, NodeDhkemX25519HkdfSha256, NodeHkdfSha256} from './primitives.js'

export const PROTOCOL_VERSION = 1
export const KEM_X25519_HKDF_SHA256 = 0x0020
export const KDF_HKDF_SHA256 = 0x0001
export const AEAD_AES_256_GCM = 0x0002
/** Npk = Nenc for X25519. */
export const PUBLIC_KEY_BYTES = 32
export const ENC_BYTES = 32
/** AES-256-GCM: Nk, Nn, Nt. */
export const AEAD_KEY_BYTES = 32
export const AEAD_NONCE_BYTES = 12
export const AEAD_TAG_BYTES = 16
export const KEY_CONFIG_BYTES = 1 + 1 + 2 + PUBLIC_KEY_BYTES + 2 + 2

let shared: CipherSuite | undefined

/**
 * The one cipher suite object (stateless; safe to share): @hpke/core's HPKE, with HKDF, AES-GCM and
 * X25519 on node:crypto (./primitives.ts) — the same wire bytes as the library's WebCrypto suite.
 */
export function cipherSuite(): CipherSuite {
  shared ??= new CipherSuite({kem: new NodeDhkemX25519HkdfSha256(), kdf: new NodeHkdfSha256(), aead: new NodeAes256Gcm()})
  return shared
}

export interface KeyConfig {
  keyId: number
  kemId: number
  kdfId: number
  aeadId: number
  publicKey: Uint8Array
}

export function encodeKeyConfig(config: KeyConfig): Uint8Array {
  if (config.publicKey.length !== PUBLIC_KEY_BYTES) throw new RangeError('An X25519 public key is 32 bytes.')
  return concatBytes(new Uint8Array([PROTOCOL_VERSION, config.keyId & 0xff]), u16(config.kemId), config.publicKey, u16(config.kdfId), u16(config.aeadId))
}

/** Parse the attested `public_key`. Throws CHANNEL_BAD_KEY_CONFIG / CHANNEL_UNSUPPORTED_SUITE. */
export function decodeKeyConfig(bytes: Uint8Array | null): KeyConfig {
  if (bytes === null || bytes.length !== KEY_CONFIG_BYTES || bytes[0] !== PROTOCOL_VERSION) {
    throw channelError('CHANNEL_BAD_KEY_CONFIG', `The attested public key is not an nle channel key configuration (${bytes === null ? 'absent' : `${bytes.length} bytes`}).`, {
      hint: 'The enclave runs a server that does not speak this protocol version: upgrade the client or the enclave image.',
    })
  }
  const kemId = readU16(bytes, 2)
  const kdfId = readU16(bytes, 4 + PUBLIC_KEY_BYTES)
  const aeadId = readU16(bytes, 6 + PUBLIC_KEY_BYTES)
  checkSuite(kemId, kdfId, aeadId)
  return {keyId: bytes[1]!, kemId, kdfId, aeadId, publicKey: own(bytes.subarray(4, 4 + PUBLIC_KEY_BYTES))}
}

export function checkSuite(kemId: number, kdfId: number, aeadId: number): void {
  if (kemId !== KEM_X25519_HKDF_SHA256 || kdfId !== KDF_HKDF_SHA256 || aeadId !== AEAD_AES_256_GCM) {
    throw channelError('CHANNEL_UNSUPPORTED_SUITE', `Unsupported HPKE suite kem=0x${kemId.toString(16)} kdf=0x${kdfId.toString(16)} aead=0x${aeadId.toString(16)}.`, {
      hint: 'nle speaks DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.',
    })
  }
}

/** The key pair type of the HPKE library (opaque handles: node KeyObjects under its CryptoKeyPair type, ./primitives.ts). */
export type HpkeKeyPair = Awaited<ReturnType<CipherSuite['kem']['generateKeyPair']>>
