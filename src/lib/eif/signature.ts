/**
 * The EIF signature section (type 4) and the COSE_Sign1 inside it, as nitro-cli writes them:
 *
 *   section  = CBOR [ { "signing_certificate": [u8…PEM], "signature": [u8…COSE_Sign1] } ]
 *   COSE     = [ bstr({1: alg}), {}, bstr(payload), bstr(r||s) ]          (untagged)
 *   payload  = { "register_index": 0, "register_value": [u8 × 48 = PCR0] }
 *
 * Byte arrays are CBOR arrays of small integers (serde's Vec<u8>), not byte strings.
 */
import {createPrivateKey, verify, type KeyObject} from 'node:crypto'

import {Decoder, Encoder, Tag} from 'cbor-x'

import {type SigningCertificate, parseSigningCertificate} from './cert.js'
import {type EcSigningKey, ecSigningKey, signChecked} from './ecdsa.js'
import {eifError} from './errors.js'
import {EIF_SIGNATURE_MAX_SIZE} from './format.js'

const encoder = new Encoder({useRecords: false, mapsAsObjects: false, variableMapSize: true, tagUint8Array: false})
const decoder = new Decoder({useRecords: false, mapsAsObjects: false})

/** COSE algorithm ids by curve, and the hash each implies. */
export const COSE_ALGS = {
  [-7]: {name: 'ES256', hash: 'sha256', curve: 'prime256v1', sigBytes: 64},
  [-35]: {name: 'ES384', hash: 'sha384', curve: 'secp384r1', sigBytes: 96},
  [-36]: {name: 'ES512', hash: 'sha512', curve: 'secp521r1', sigBytes: 132},
} as const
export type CoseAlg = keyof typeof COSE_ALGS

export interface PcrSignature {
  /** The certificate bytes as stored (PEM). */
  certificatePem: Buffer
  /** The untagged COSE_Sign1 bytes. */
  coseSign1: Buffer
}

function decodeOne(bytes: Buffer): unknown {
  const items: unknown[] = []
  decoder.decodeMultiple(bytes, (item: unknown) => {
    items.push(item)
    if (items.length > 1) return false
    return undefined
  })
  if (items.length !== 1) throw new Error(`expected exactly one CBOR item, found ${items.length}`)
  return items[0]
}

function byteArray(value: unknown, what: string): Buffer {
  if (!Array.isArray(value)) throw new Error(`${what} is not an array of bytes`)
  const out = Buffer.alloc(value.length)
  value.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255) throw new Error(`${what}[${i}] is not a byte`)
    out[i] = v
  })
  return out
}

/** Parse a signature section strictly; any deviation is EIF_BAD_SIGNATURE_CBOR. */
export function parseSignatureSection(bytes: Buffer): PcrSignature {
  try {
    if (bytes.length > EIF_SIGNATURE_MAX_SIZE) throw new Error(`section is ${bytes.length} bytes, more than ${EIF_SIGNATURE_MAX_SIZE}`)
    const top = decodeOne(bytes)
    if (!Array.isArray(top) || top.length !== 1) throw new Error('expected an array of exactly one PCR signature')
    const entry: unknown = top[0]
    if (!(entry instanceof Map) || entry.size !== 2 || !entry.has('signing_certificate') || !entry.has('signature')) {
      throw new Error('expected a map with exactly "signing_certificate" and "signature"')
    }
    return {
      certificatePem: byteArray(entry.get('signing_certificate'), 'signing_certificate'),
      coseSign1: byteArray(entry.get('signature'), 'signature'),
    }
  } catch (error) {
    throw eifError('EIF_BAD_SIGNATURE_CBOR', `Malformed EIF signature section: ${(error as Error).message}`, {cause: error})
  }
}

export function encodeSignatureSection(sig: PcrSignature): Buffer {
  return Buffer.from(encoder.encode([new Map<string, number[]>([['signing_certificate', [...sig.certificatePem]], ['signature', [...sig.coseSign1]]])]))
}

/** The signed payload: {register_index: 0, register_value: PCR0 bytes}. */
export function pcrPayload(index: number, pcrHex: string): Buffer {
  return Buffer.from(encoder.encode(new Map<string, unknown>([['register_index', index], ['register_value', [...Buffer.from(pcrHex, 'hex')]]])))
}

export interface CoseSign1 {
  protectedBytes: Buffer
  alg: CoseAlg
  payload: Buffer
  signature: Buffer
}

export function decodeCoseSign1(bytes: Buffer): CoseSign1 {
  try {
    let top = decodeOne(bytes)
    if (top instanceof Tag) {
      if (top.tag !== 18) throw new Error(`unexpected CBOR tag ${top.tag}`)
      top = top.value
    }
    if (!Array.isArray(top) || top.length !== 4) throw new Error('expected a 4-element COSE_Sign1 array')
    const [prot, unprot, payload, signature] = top as unknown[]
    if (!Buffer.isBuffer(prot) || !Buffer.isBuffer(payload) || !Buffer.isBuffer(signature)) throw new Error('expected byte strings')
    if (!(unprot instanceof Map)) throw new Error('unprotected header is not a map')
    const headers = prot.length === 0 ? new Map() : decodeOne(prot)
    if (!(headers instanceof Map)) throw new Error('protected header is not a map')
    const alg = headers.get(1) as unknown
    if (alg !== -7 && alg !== -35 && alg !== -36) throw new Error(`unsupported COSE alg ${String(alg)}`)
    return {protectedBytes: prot, alg, payload, signature}
  } catch (error) {
    throw eifError('EIF_BAD_COSE_SIGN1', `Malformed COSE_Sign1 in the EIF signature: ${(error as Error).message}`, {cause: error})
  }
}

function sigStructure(protectedBytes: Buffer, payload: Buffer): Buffer {
  return Buffer.from(encoder.encode(['Signature1', protectedBytes, Buffer.alloc(0), payload]))
}

export function encodeCoseSign1(key: EcSigningKey, payload: Buffer): Buffer {
  const alg = key.curve.name === 'P-256' ? -7 : -35
  const protectedBytes = Buffer.from(encoder.encode(new Map([[1, alg]])))
  const signature = signChecked(key, sigStructure(protectedBytes, payload))
  return Buffer.from(encoder.encode([protectedBytes, new Map(), payload, signature]))
}

/** Verify a COSE_Sign1 under a public key; false on any mismatch (curve, length, signature). */
export function verifyCoseSign1(cose: CoseSign1, publicKey: KeyObject): boolean {
  const spec = COSE_ALGS[cose.alg]
  if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== spec.curve) return false
  if (cose.signature.length !== spec.sigBytes) return false
  try {
    return verify(spec.hash, sigStructure(cose.protectedBytes, cose.payload), {key: publicKey, dsaEncoding: 'ieee-p1363'}, cose.signature)
  } catch {
    return false
  }
}

export interface SignatureCheck {
  certificate: SigningCertificate
  alg: CoseAlg
  /** The COSE signature verifies under the certificate's public key. */
  signatureValid: boolean
  /** The signed payload is exactly {register_index: 0, register_value: PCR0}. */
  payloadMatchesPcr0: boolean
  /** `checkedAt` lies within the certificate's validity period. */
  certificateValidNow: boolean
  checkedAt: Date
}

/** Check a parsed signature section against the measured PCR0. Never throws for a *wrong* signature, only for a malformed one. */
export function checkPcrSignature(sig: PcrSignature, pcr0: string, now: Date = new Date()): SignatureCheck {
  const certificate = parseSigningCertificate(sig.certificatePem)
  const cose = decodeCoseSign1(sig.coseSign1)
  const t = now.getTime()
  return {
    certificate,
    alg: cose.alg,
    signatureValid: verifyCoseSign1(cose, certificate.publicKey),
    payloadMatchesPcr0: cose.payload.equals(pcrPayload(0, pcr0)),
    certificateValidNow: t >= certificate.notBefore.getTime() && t <= certificate.notAfter.getTime(),
    checkedAt: now,
  }
}

export interface SigningInput {
  certificatePem: Buffer | string
  privateKeyPem: Buffer | string
}

export interface PreparedSigner {
  certificate: SigningCertificate
  key: EcSigningKey
}

/** Load and cross-check a signing certificate and private key. */
export function prepareSigner(input: SigningInput): PreparedSigner {
  const certificate = parseSigningCertificate(input.certificatePem)
  let keyObject: KeyObject
  try {
    keyObject = createPrivateKey(input.privateKeyPem)
  } catch (error) {
    throw eifError('EIF_BAD_KEY', `The private key cannot be read: ${(error as Error).message}`, {
      hint: 'Pass an unencrypted PEM EC private key (SEC1 or PKCS#8).',
      cause: error,
    })
  }
  const key = ecSigningKey(keyObject)
  const certKey = certificate.publicKey.export({format: 'der', type: 'spki'})
  if (!Buffer.from(key.publicKey.export({format: 'der', type: 'spki'})).equals(Buffer.from(certKey))) {
    throw eifError('EIF_KEY_CERT_MISMATCH', 'The private key does not belong to the signing certificate.', {
      hint: 'Pass the key the certificate was issued for.',
    })
  }
  return {certificate, key}
}

/** The signature section for an image with this PCR0. Deterministic for the same key, certificate and PCR0. */
export function signPcr0(signer: PreparedSigner, pcr0: string): Buffer {
  const coseSign1 = encodeCoseSign1(signer.key, pcrPayload(0, pcr0))
  return encodeSignatureSection({certificatePem: signer.certificate.pem, coseSign1})
}
