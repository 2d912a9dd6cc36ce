/**
 * The attestation verifier. It fails closed by construction:
 * - the expected measurements are a required argument (PCR0, PCR1 and PCR2 at least);
 * - the nonce expectation and the maximum age are required too (`expectedNonce: null` must be
 *   written out to say "no challenge was sent");
 * - debug-mode enclaves (PCR0..2 all zero) are refused unless `allowDebug` is set;
 * - only the embedded AWS root is trusted unless `insecureDevRoot` is set.
 * Steps run in a fixed order — structure, payload, chain, signature, then policy — and every
 * failure is an NleError with its own ATTEST_* code (see ./errors.ts). Nothing else is thrown.
 */
import {NleError, isNleError} from '../errors.js'
import {type ValidatedChain, parseCertificate, validateChain} from './chain.js'
import {toHex} from './cbor.js'
import {decodeCoseSign1, verifyCoseSignature} from './cose.js'
import {type AttestationDocument, parseAttestationPayload} from './document.js'
import {type AttestErrorCode, attestError, verifyError} from './errors.js'
import {AWS_NITRO_ROOT_G1, type TrustedRoot} from './roots.js'

/** Expected PCR values, lowercase or uppercase hex. Same keys as the lockfile's `measurements`. */
export interface ExpectedPcrs {
  PCR0: string
  PCR1: string
  PCR2: string
  PCR3?: string
  PCR4?: string
  PCR8?: string
}

export const EXPECTED_PCR_INDEXES = [0, 1, 2, 3, 4, 8] as const
/** PCRs a debug-mode enclave reports as zero whatever image it runs. */
export const DEBUG_ZEROED_PCRS: readonly number[] = [0, 1, 2, 8]

export interface VerificationPolicy {
  /** Required. What the enclave must measure as. */
  expectedPcrs: ExpectedPcrs
  /** Required. The nonce that was sent, or `null` when none was (the document is then replayable). */
  expectedNonce: Uint8Array | null
  /** Required. How old (relative to `at`) the document may be, in milliseconds. */
  maxAgeMs: number
  /** Verification time; default now. */
  at?: Date | number
  /** Accept debug-mode enclaves (PCR0..2 zero: the code that runs is NOT measured). */
  allowDebug?: boolean
  /** Trust this root instead of AWS's (simulator / test CA). Documents it accepts were not signed by AWS. */
  insecureDevRoot?: TrustedRoot
  /** How far the document's timestamp may be ahead of `at`; default 60 s. */
  clockSkewMs?: number
}

export type PcrStatus = 'match' | 'mismatch' | 'missing' | 'debug-zero' | 'unchecked'

export interface PcrCheck {
  index: number
  /** The document's value (hex), or null when the document has no such PCR. */
  value: string | null
  expected: string | null
  status: PcrStatus
}

export interface VerifiedAttestation {
  moduleId: string
  digest: 'SHA384'
  timestamp: Date
  debug: boolean
  /** The document's PCRs, index → hex. */
  pcrs: Record<number, string>
  pcrChecks: PcrCheck[]
  /** Verified values from the document (bytes), or null when absent. */
  publicKey: Uint8Array | null
  userData: Uint8Array | null
  nonce: Uint8Array | null
  chain: ValidatedChain['certificates']
  root: TrustedRoot['name']
  verifiedAt: Date
  ageMs: number
}

const HEX_96 = /^[0-9a-fA-F]{96}$/

function policyError(message: string): never {
  throw attestError('ATTEST_POLICY_INVALID', message, {
    hint: 'Give the expected measurements (96 hex characters each, from nle.lock.json or the build output) for PCR0, PCR1 and PCR2.',
  })
}

interface NormalizedPolicy {
  expected: Map<number, string>
  expectedNonce: Uint8Array | null
  maxAgeMs: number
  at: Date
  allowDebug: boolean
  root: TrustedRoot
  clockSkewMs: number
}

function normalizePolicy(policy: VerificationPolicy): NormalizedPolicy {
  if (typeof policy !== 'object' || policy === null) policyError('No verification policy was given.')
  const pcrs: unknown = policy.expectedPcrs
  if (typeof pcrs !== 'object' || pcrs === null) policyError('No expected PCRs were given.')
  const expected = new Map<number, string>()
  const record = pcrs as Record<string, unknown>
  for (const key of Object.keys(record)) {
    if (!EXPECTED_PCR_INDEXES.some((i) => `PCR${i}` === key)) policyError(`Unknown expected PCR key ${JSON.stringify(key)} (allowed: PCR0, PCR1, PCR2, PCR3, PCR4, PCR8).`)
  }
  for (const index of EXPECTED_PCR_INDEXES) {
    const value = record[`PCR${index}`]
    if (value === undefined && index > 2) continue
    if (typeof value !== 'string' || !HEX_96.test(value)) policyError(`Expected PCR${index} must be 96 hex characters (a SHA-384 value), got ${value === undefined ? 'nothing' : JSON.stringify(value)}.`)
    expected.set(index, value.toLowerCase())
  }
  if (!('expectedNonce' in policy) || (policy.expectedNonce !== null && !(policy.expectedNonce instanceof Uint8Array))) {
    policyError('expectedNonce must be given: the nonce that was sent, or null when none was.')
  }
  if (typeof policy.maxAgeMs !== 'number' || !Number.isFinite(policy.maxAgeMs) || policy.maxAgeMs < 0) policyError('maxAgeMs must be a non-negative number of milliseconds.')
  const at = policy.at === undefined ? new Date() : new Date(policy.at)
  if (Number.isNaN(at.getTime())) policyError('The verification time is not a valid date.')
  const root = policy.insecureDevRoot ?? AWS_NITRO_ROOT_G1
  if (!(root.der instanceof Uint8Array) || root.der.length === 0) policyError('The trusted root has no certificate bytes.')
  const clockSkewMs = policy.clockSkewMs ?? 60_000
  if (typeof clockSkewMs !== 'number' || !Number.isFinite(clockSkewMs) || clockSkewMs < 0) policyError('clockSkewMs must be a non-negative number of milliseconds.')
  return {expected, expectedNonce: policy.expectedNonce, maxAgeMs: policy.maxAgeMs, at, allowDebug: policy.allowDebug === true, root, clockSkewMs}
}

/** True when PCR0, PCR1 and PCR2 are all zero: the enclave runs in debug mode. */
export function isDebugDocument(pcrs: ReadonlyMap<number, Uint8Array>): boolean {
  return [0, 1, 2].every((i) => {
    const v = pcrs.get(i)
    return v !== undefined && v.every((b) => b === 0)
  })
}

/**
 * Compare a document's PCRs with the expectation. With `allowDebug` and a debug document, the
 * PCRs a debug enclave zeroes (0, 1, 2, 8) are accepted as zero ('debug-zero').
 */
export function comparePcrs(pcrs: ReadonlyMap<number, Uint8Array>, expected: ReadonlyMap<number, string>, allowDebug: boolean): PcrCheck[] {
  const debug = allowDebug && isDebugDocument(pcrs)
  const indexes = [...new Set([...pcrs.keys(), ...expected.keys()])].sort((a, b) => a - b)
  return indexes.map((index) => {
    const bytes = pcrs.get(index)
    const value = bytes ? toHex(bytes) : null
    const want = expected.get(index) ?? null
    let status: PcrStatus
    if (want === null) status = 'unchecked'
    else if (value === null) status = 'missing'
    else if (value === want) status = 'match'
    else if (debug && DEBUG_ZEROED_PCRS.includes(index) && bytes!.every((b) => b === 0)) status = 'debug-zero'
    else status = 'mismatch'
    return {index, value, expected: want, status}
  })
}

/** Decode a document without trusting it: for display only (e.g. what a refused document claims). */
export function inspectAttestation(bytes: Uint8Array): AttestationDocument {
  return parseAttestationPayload(decodeCoseSign1(bytes).payload)
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b))
}

/**
 * Verify a Nitro attestation document against a policy. Resolves with the verified content, or
 * rejects with an NleError whose code says why the document was refused.
 */
export async function verifyAttestation(document: Uint8Array, policy: VerificationPolicy): Promise<VerifiedAttestation> {
  try {
    return await verifyInner(document, policy)
  } catch (error) {
    if (isNleError(error)) throw error
    // Anything else is a bug or an input no check anticipated: still a refusal, never a pass.
    throw new NleError<AttestErrorCode>('ATTEST_UNPROCESSABLE', `The attestation document could not be processed: ${(error as Error)?.message ?? String(error)}.`, {
      cause: error,
    })
  }
}

async function verifyInner(bytes: Uint8Array, policy: VerificationPolicy): Promise<VerifiedAttestation> {
  const p = normalizePolicy(policy)
  const cose = decodeCoseSign1(bytes)
  const doc = parseAttestationPayload(cose.payload)

  // Chain, then signature. validateChain parses synchronously and leaves the link signatures it
  // has not seen before running on the thread pool; meanwhile the document signature is checked
  // here. A chain failure is reported before a signature failure.
  const chainPromise = validateChain({certificate: doc.certificate, cabundle: doc.cabundle, root: p.root, at: p.at})
  let signatureOk: boolean | undefined
  try {
    signatureOk = verifyCoseSignature(cose, parseCertificate(doc.certificate, 'leaf certificate').publicKey)
  } catch {
    // The chain validation reports the unreadable leaf.
  }
  const chain = await chainPromise
  if (!(signatureOk ?? verifyCoseSignature(cose, chain.leafKey))) {
    throw verifyError('ATTEST_BAD_SIGNATURE', "The document's COSE signature does not verify with its signing certificate.", {
      hint: 'The document was altered after the NSM signed it, or was never signed by it.',
      details: {moduleId: doc.moduleId},
    })
  }

  // Policy.
  const debug = isDebugDocument(doc.pcrs)
  if (debug && !p.allowDebug) {
    throw verifyError('ATTEST_DEBUG_ENCLAVE', `The enclave ${doc.moduleId} runs in debug mode (PCR0, PCR1 and PCR2 are zero): its code is not measured and its memory is readable by the host.`, {
      hint: 'Run the enclave without --debug-mode, or pass --allow-debug (development only).',
      details: {moduleId: doc.moduleId},
    })
  }
  const pcrChecks = comparePcrs(doc.pcrs, p.expected, p.allowDebug)
  const missing = pcrChecks.filter((c) => c.status === 'missing')
  if (missing.length > 0) {
    throw verifyError('ATTEST_PCR_MISSING', `The document has no ${missing.map((c) => `PCR${c.index}`).join(', ')}.`, {
      hint: 'The enclave did not report a measurement that is expected.',
      details: {pcrs: pcrChecks},
    })
  }
  const mismatched = pcrChecks.filter((c) => c.status === 'mismatch')
  if (mismatched.length > 0) {
    throw verifyError('ATTEST_PCR_MISMATCH', `${mismatched.map((c) => `PCR${c.index}`).join(', ')} of the enclave ${mismatched.length === 1 ? 'differs' : 'differ'} from the expected measurements.`, {
      hint: 'The enclave runs a different image than the one in the lockfile: rebuild and redeploy, or update the expectation.',
      details: {pcrs: pcrChecks},
    })
  }
  if (p.expectedNonce !== null) {
    if (doc.nonce === null || !equalBytes(doc.nonce, p.expectedNonce)) {
      throw verifyError('ATTEST_NONCE_MISMATCH', doc.nonce === null ? 'The document carries no nonce, but one was sent.' : 'The document carries a different nonce than the one that was sent.', {
        hint: 'The document is not an answer to this request (a replay, or a stale cached document).',
        details: {expected: toHex(p.expectedNonce), got: doc.nonce === null ? null : toHex(doc.nonce)},
      })
    }
  }
  const ageMs = p.at.getTime() - doc.timestamp
  if (ageMs > p.maxAgeMs) {
    throw verifyError('ATTEST_TOO_OLD', `The document is ${Math.round(ageMs / 1000)} s old; at most ${Math.round(p.maxAgeMs / 1000)} s is allowed.`, {
      hint: 'Fetch a fresh document, or allow an older one with --max-age.',
      details: {timestamp: new Date(doc.timestamp).toISOString(), at: p.at.toISOString(), ageMs, maxAgeMs: p.maxAgeMs},
    })
  }
  if (-ageMs > p.clockSkewMs) {
    throw verifyError('ATTEST_FROM_FUTURE', `The document is dated ${Math.round(-ageMs / 1000)} s after the verification time.`, {
      hint: 'Check the clocks, or the --at time.',
      details: {timestamp: new Date(doc.timestamp).toISOString(), at: p.at.toISOString()},
    })
  }

  return {
    moduleId: doc.moduleId,
    digest: doc.digest,
    timestamp: new Date(doc.timestamp),
    debug,
    pcrs: Object.fromEntries([...doc.pcrs].map(([i, v]) => [i, toHex(v)])),
    pcrChecks,
    publicKey: doc.publicKey === null ? null : new Uint8Array(doc.publicKey),
    userData: doc.userData === null ? null : new Uint8Array(doc.userData),
    nonce: doc.nonce === null ? null : new Uint8Array(doc.nonce),
    chain: chain.certificates,
    root: p.root.name,
    verifiedAt: p.at,
    ageMs,
  }
}
