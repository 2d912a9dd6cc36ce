/**
 * COSE_Sign1 (RFC 9052) as the Nitro NSM emits it: an untagged (or tag-18) CBOR array of
 * [protected bstr, unprotected map, payload bstr, signature bstr], protected = {1: -35} (ES384),
 * unprotected = {}, and a 96-byte raw r‖s ECDSA P-384 signature over the Sig_structure.
 */
import {type KeyObject, sign as cryptoSign, verify as cryptoVerify} from 'node:crypto'

import {Tag} from 'cbor-x'

import {cborDecode, cborEncode, isBytes, isMap} from './cbor.js'
import {verifyError} from './errors.js'

/** COSE algorithm identifier for ECDSA w/ SHA-384 (RFC 9053). */
export const COSE_ALG_ES384 = -35
/** COSE header label `alg`. */
export const COSE_HEADER_ALG = 1
/** CBOR tag of COSE_Sign1. */
export const COSE_SIGN1_TAG = 18
/** P-384: r and s are 48 bytes each. */
export const ES384_SIGNATURE_LENGTH = 96
/** Upper bound for a whole document (the SDK's NSM_MAX_ATTESTATION_DOC_SIZE is 16 KiB). */
export const MAX_DOCUMENT_BYTES = 16 * 1024

export interface CoseSign1 {
  /** The protected header exactly as received (it is part of what was signed). */
  protectedBytes: Uint8Array
  /** The payload exactly as received. */
  payload: Uint8Array
  signature: Uint8Array
  /** Whether the array came wrapped in CBOR tag 18. */
  tagged: boolean
}

function malformed(message: string, cause?: unknown): never {
  throw verifyError('ATTEST_COSE_MALFORMED', message, {
    hint: 'The input is not a Nitro attestation document (a CBOR COSE_Sign1). Check that the whole, raw document was saved.',
    cause,
  })
}

/** Decode and structurally check a COSE_Sign1. Throws ATTEST_COSE_MALFORMED / ATTEST_UNSUPPORTED_ALG. */
export function decodeCoseSign1(bytes: Uint8Array): CoseSign1 {
  if (!(bytes instanceof Uint8Array)) malformed('The attestation document is not a byte array.')
  if (bytes.length === 0) malformed('The attestation document is empty.')
  if (bytes.length > MAX_DOCUMENT_BYTES) malformed(`The attestation document is ${bytes.length} bytes; a Nitro document is at most ${MAX_DOCUMENT_BYTES}.`)
  let top: unknown
  try {
    top = cborDecode(bytes)
  } catch (error) {
    malformed(`The attestation document is not valid CBOR: ${(error as Error).message}.`, error)
  }
  let tagged = false
  if (top instanceof Tag) {
    if (top.tag !== COSE_SIGN1_TAG) malformed(`The attestation document carries CBOR tag ${String(top.tag)}; COSE_Sign1 is tag 18.`)
    tagged = true
    top = top.value
  }
  if (!Array.isArray(top) || top.length !== 4) malformed('The attestation document is not a 4-element COSE_Sign1 array.')
  const [protectedBytes, unprotected, payload, signature] = top as unknown[]
  if (!isBytes(protectedBytes)) malformed('COSE_Sign1 protected header is not a byte string.')
  if (!isMap(unprotected)) malformed('COSE_Sign1 unprotected header is not a map.')
  if (unprotected.size !== 0) malformed('COSE_Sign1 unprotected header is not empty (Nitro documents carry nothing there).')
  if (!isBytes(payload) || payload.length === 0) malformed('COSE_Sign1 payload is not a non-empty byte string.')
  if (!isBytes(signature)) malformed('COSE_Sign1 signature is not a byte string.')

  let header: unknown
  try {
    header = cborDecode(protectedBytes)
  } catch (error) {
    malformed(`COSE_Sign1 protected header is not valid CBOR: ${(error as Error).message}.`, error)
  }
  if (!isMap(header)) malformed('COSE_Sign1 protected header is not a map.')
  const alg = header.get(COSE_HEADER_ALG)
  if (header.size !== 1 || alg !== COSE_ALG_ES384) {
    throw verifyError('ATTEST_UNSUPPORTED_ALG', `COSE_Sign1 protected header must be exactly {1: -35} (ES384); got alg ${JSON.stringify(alg ?? null)} with ${header.size} entries.`, {
      hint: 'Only documents signed by a Nitro Secure Module (ES384) are accepted; emulators that do not sign (e.g. QEMU, alg -1) are refused.',
      details: {alg: typeof alg === 'number' || typeof alg === 'string' ? alg : null},
    })
  }
  if (signature.length !== ES384_SIGNATURE_LENGTH) {
    malformed(`COSE_Sign1 signature is ${signature.length} bytes; ES384 needs ${ES384_SIGNATURE_LENGTH} (r‖s).`)
  }
  return {protectedBytes, payload, signature, tagged}
}

/** The bytes that are signed: CBOR ["Signature1", protected, h'', payload] (RFC 9052 §4.4). */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Uint8Array {
  return cborEncode(['Signature1', protectedBytes, new Uint8Array(0), payload])
}

/** Verify the ES384 signature with the leaf key. False on a bad signature; never throws for one. */
export function verifyCoseSignature(cose: CoseSign1, key: KeyObject): boolean {
  try {
    return cryptoVerify('sha384', sigStructure(cose.protectedBytes, cose.payload), {key, dsaEncoding: 'ieee-p1363'}, cose.signature)
  } catch {
    return false
  }
}

/** Sign a payload as the NSM does (untagged COSE_Sign1, protected {1: -35}, empty unprotected). */
export function signCoseSign1(payload: Uint8Array, key: KeyObject, options: {tagged?: boolean} = {}): Uint8Array {
  const protectedBytes = cborEncode(new Map([[COSE_HEADER_ALG, COSE_ALG_ES384]]))
  const signature = cryptoSign('sha384', sigStructure(protectedBytes, payload), {key, dsaEncoding: 'ieee-p1363'})
  const array = [protectedBytes, new Map(), payload, new Uint8Array(signature)]
  return cborEncode(options.tagged ? new Tag(array, COSE_SIGN1_TAG) : array)
}
