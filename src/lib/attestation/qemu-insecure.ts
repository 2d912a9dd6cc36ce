/**
 * INSECURE: accept the UNSIGNED attestation documents of QEMU's `nitro-enclave` emulation.
 *
 * QEMU's emulated NSM (hw/virtio/virtio-nsm.c) returns documents with the real payload shape and
 * real PCRs but no signature: protected header {1: -1}, 64 zero bytes as the signature, 64 zero
 * bytes as the certificate and as the only cabundle entry. The normal verifier (./verify.ts)
 * rightly refuses them (ATTEST_UNSUPPORTED_ALG). This module exists ONLY for the boot check that
 * compares QEMU's independently computed PCRs with nle's (test/qemu-boot.test.ts).
 *
 * It is deliberately separate and hard to reach:
 * - nothing in src/ imports it (not the verifier, not the NSM client, not `nle attest`, not the
 *   policy commands) — test/qemu-boot.test.ts checks that;
 * - it is not re-exported from any index;
 * - the caller must pass the exact acknowledgement sentence {@link QEMU_INSECURE_ACKNOWLEDGEMENT};
 * - it accepts ONLY documents that declare themselves unsigned the way QEMU does (alg -1, all-zero
 *   signature, certificate and cabundle): a signed document, real or forged, is refused here and
 *   must go through verifyAttestation.
 * It reuses the verifier's payload parsing (parseAttestationPayload) and PCR comparison
 * (comparePcrs), and applies the same nonce and age rules. It skips the certificate chain and the
 * signature, which do not exist. A document it accepts proves NOTHING about where it came from.
 */
import {Tag} from 'cbor-x'


import {cborDecode, isBytes, isMap, toHex} from './cbor.js'
import {COSE_HEADER_ALG, COSE_SIGN1_TAG, MAX_DOCUMENT_BYTES} from './cose.js'
import {type AttestationDocument, parseAttestationPayload} from './document.js'
import {attestError, verifyError} from './errors.js'
import {EXPECTED_PCR_INDEXES, type ExpectedPcrs, type PcrCheck, comparePcrs} from './verify.js'

/** The COSE `alg` QEMU writes: "we don't actually sign the data, so we use -1 as the 'alg' value". */
export const QEMU_UNSIGNED_ALG = -1

/** The sentence a caller must pass, verbatim, to use this function. */
export const QEMU_INSECURE_ACKNOWLEDGEMENT = 'I accept an UNSIGNED document from QEMU emulation; it proves nothing about any enclave' as const

export interface InsecureQemuPolicy {
  /** Must be exactly {@link QEMU_INSECURE_ACKNOWLEDGEMENT}. */
  acknowledge: typeof QEMU_INSECURE_ACKNOWLEDGEMENT
  expectedPcrs: ExpectedPcrs
  /** The nonce that was sent, or null when none was. */
  expectedNonce: Uint8Array | null
  maxAgeMs: number
  at?: Date | number
  clockSkewMs?: number
}

export interface InsecureQemuAttestation {
  /** Always false: nothing was signed, nothing was verified cryptographically. */
  signed: false
  insecure: 'UNSIGNED-QEMU-EMULATION'
  document: AttestationDocument
  /** The document's PCRs, index → hex. */
  pcrs: Record<number, string>
  pcrChecks: PcrCheck[]
  ageMs: number
}

const HEX_96 = /^[0-9a-fA-F]{96}$/
const allZero = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0)

function malformed(message: string): never {
  throw verifyError('ATTEST_COSE_MALFORMED', `Not an unsigned QEMU attestation document: ${message}`)
}

/** The COSE_Sign1 as QEMU emits it: [bstr({1: -1}), {}, payload, zero signature]. */
function decodeUnsignedQemuCose(bytes: Uint8Array): Uint8Array {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0 || bytes.length > MAX_DOCUMENT_BYTES) malformed(`size ${bytes?.length ?? 0}.`)
  let top: unknown
  try {
    top = cborDecode(bytes)
  } catch (error) {
    malformed(`not CBOR (${(error as Error).message}).`)
  }
  if (top instanceof Tag) {
    if (top.tag !== COSE_SIGN1_TAG) malformed(`CBOR tag ${String(top.tag)}.`)
    top = top.value
  }
  if (!Array.isArray(top) || top.length !== 4) malformed('not a 4-element COSE_Sign1 array.')
  const [protectedBytes, unprotected, payload, signature] = top as unknown[]
  if (!isBytes(protectedBytes) || !isMap(unprotected) || unprotected.size !== 0 || !isBytes(payload) || payload.length === 0 || !isBytes(signature)) {
    malformed('COSE_Sign1 fields have the wrong types.')
  }
  let header: unknown
  try {
    header = cborDecode(protectedBytes)
  } catch {
    malformed('protected header is not CBOR.')
  }
  if (!isMap(header) || header.size !== 1 || header.get(COSE_HEADER_ALG) !== QEMU_UNSIGNED_ALG) {
    throw verifyError('ATTEST_UNSUPPORTED_ALG', 'The document does not declare itself unsigned (alg -1): a signed document must be checked with verifyAttestation, never here.')
  }
  if (!allZero(signature)) {
    throw verifyError('ATTEST_BAD_SIGNATURE', 'The document claims to be unsigned but carries a non-zero signature; refused.')
  }
  return payload
}

function policyError(message: string): never {
  throw attestError('ATTEST_POLICY_INVALID', message)
}

/**
 * INSECURE. Accept an unsigned attestation document from QEMU's nitro-enclave emulation when its
 * PCRs, nonce and age match. No signature, no certificate chain: do not use outside tests of the
 * emulator. See the module comment.
 */
export function insecurelyAcceptUnsignedQemuAttestation(bytes: Uint8Array, policy: InsecureQemuPolicy): InsecureQemuAttestation {
  if (policy?.acknowledge !== QEMU_INSECURE_ACKNOWLEDGEMENT) {
    policyError('insecurelyAcceptUnsignedQemuAttestation needs the exact acknowledgement sentence; unsigned documents are never accepted by default.')
  }
  const expected = new Map<number, string>()
  for (const index of EXPECTED_PCR_INDEXES) {
    const value = (policy.expectedPcrs as unknown as Record<string, unknown>)?.[`PCR${index}`]
    if (value === undefined && index > 2) continue
    if (typeof value !== 'string' || !HEX_96.test(value)) policyError(`Expected PCR${index} must be 96 hex characters.`)
    expected.set(index, value.toLowerCase())
  }
  if (!('expectedNonce' in policy) || (policy.expectedNonce !== null && !(policy.expectedNonce instanceof Uint8Array))) policyError('expectedNonce must be given (or null).')
  if (typeof policy.maxAgeMs !== 'number' || !Number.isFinite(policy.maxAgeMs) || policy.maxAgeMs < 0) policyError('maxAgeMs must be a non-negative number.')
  const at = new Date(policy.at ?? Date.now())

  const doc = parseAttestationPayload(decodeUnsignedQemuCose(bytes))
  if (!allZero(doc.certificate) || !doc.cabundle.every(allZero)) {
    throw verifyError('ATTEST_CERT_MALFORMED', 'The document carries certificates: it is not an unsigned QEMU document; use verifyAttestation.')
  }

  const pcrChecks = comparePcrs(doc.pcrs, expected, false)
  const missing = pcrChecks.filter((c) => c.status === 'missing')
  if (missing.length > 0) throw verifyError('ATTEST_PCR_MISSING', `The document has no ${missing.map((c) => `PCR${c.index}`).join(', ')}.`, {details: {pcrs: pcrChecks}})
  const mismatched = pcrChecks.filter((c) => c.status === 'mismatch')
  if (mismatched.length > 0) {
    throw verifyError('ATTEST_PCR_MISMATCH', `${mismatched.map((c) => `PCR${c.index}`).join(', ')} differ from the expected measurements.`, {details: {pcrs: pcrChecks}})
  }
  if (policy.expectedNonce !== null && (doc.nonce === null || !Buffer.from(doc.nonce).equals(Buffer.from(policy.expectedNonce)))) {
    throw verifyError('ATTEST_NONCE_MISMATCH', doc.nonce === null ? 'The document carries no nonce, but one was sent.' : 'The document carries a different nonce than the one that was sent.', {
      details: {expected: toHex(policy.expectedNonce), got: doc.nonce === null ? null : toHex(doc.nonce)},
    })
  }
  const ageMs = at.getTime() - doc.timestamp
  if (ageMs > policy.maxAgeMs) throw verifyError('ATTEST_TOO_OLD', `The document is ${Math.round(ageMs / 1000)} s old; at most ${Math.round(policy.maxAgeMs / 1000)} s is allowed.`)
  if (-ageMs > (policy.clockSkewMs ?? 60_000)) throw verifyError('ATTEST_FROM_FUTURE', `The document is dated ${Math.round(-ageMs / 1000)} s after the verification time.`)

  return {
    signed: false,
    insecure: 'UNSIGNED-QEMU-EMULATION',
    document: doc,
    pcrs: Object.fromEntries([...doc.pcrs].map(([i, v]) => [i, toHex(v)])),
    pcrChecks,
    ageMs,
  }
}
