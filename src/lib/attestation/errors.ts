/**
 * The error codes of the attestation domain. Every verification failure has its own code so that
 * callers and tests can tell *why* a document was refused; all of them exit with ExitCode.VERIFY.
 */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

/** Codes thrown while verifying a document: each one is a distinct reason to refuse it. */
export type AttestVerifyErrorCode =
  /** The bytes are not a CBOR COSE_Sign1 of the shape AWS emits. */
  | 'ATTEST_COSE_MALFORMED'
  /** The protected header does not say ES384 (alg -35). */
  | 'ATTEST_UNSUPPORTED_ALG'
  /** The payload is not a well-formed attestation document (types, sizes, required fields). */
  | 'ATTEST_PAYLOAD_INVALID'
  /** A certificate in the document is not parseable X.509 DER or uses an unexpected algorithm. */
  | 'ATTEST_CERT_MALFORMED'
  /** cabundle[0] is not the pinned trusted root. */
  | 'ATTEST_ROOT_MISMATCH'
  /** A certificate was not issued (name or signature) by the one before it. */
  | 'ATTEST_CHAIN_BROKEN'
  /** A CA certificate lacks CA=true / keyCertSign, or a path length constraint is exceeded. */
  | 'ATTEST_CERT_CONSTRAINTS'
  /** The signing (leaf) certificate is a CA or may not make digital signatures. */
  | 'ATTEST_LEAF_IS_CA'
  /** A certificate's validity ended before the verification time. */
  | 'ATTEST_CERT_EXPIRED'
  /** A certificate's validity starts after the verification time. */
  | 'ATTEST_CERT_NOT_YET_VALID'
  /** The COSE signature does not verify with the leaf certificate's key. */
  | 'ATTEST_BAD_SIGNATURE'
  /** PCR0..2 are all zero (a debug-mode enclave) and debug enclaves were not allowed. */
  | 'ATTEST_DEBUG_ENCLAVE'
  /** A PCR differs from the expected measurement. */
  | 'ATTEST_PCR_MISMATCH'
  /** An expected PCR is not in the document at all. */
  | 'ATTEST_PCR_MISSING'
  /** The document's nonce is absent or differs from the one that was sent. */
  | 'ATTEST_NONCE_MISMATCH'
  /** The document is older than the allowed maximum age. */
  | 'ATTEST_TOO_OLD'
  /** The document's timestamp is later than the verification time (beyond the allowed skew). */
  | 'ATTEST_FROM_FUTURE'
  /** An unexpected failure while checking the document (a bug); the document is refused. */
  | 'ATTEST_UNPROCESSABLE'

/** Codes for problems around verification: bad expectations, inputs that cannot be read, the NSM. */
export type AttestOtherErrorCode =
  /** The verification policy itself is unusable (missing or malformed expected PCRs, bad root). */
  | 'ATTEST_POLICY_INVALID'
  /** No expected PCRs were given and no lockfile was found. */
  | 'ATTEST_NO_EXPECTED_PCRS'
  /** The document file could not be read. */
  | 'ATTEST_READ_FAILED'
  /** The enclave's attestation endpoint could not be reached or answered wrongly. */
  | 'ATTEST_FETCH_FAILED'
  /** /dev/nsm could not be opened (not inside an enclave, or no permission). */
  | 'ATTEST_NSM_UNAVAILABLE'
  /** The ioctl on /dev/nsm failed. */
  | 'ATTEST_NSM_IOCTL_FAILED'
  /** The NSM answered with an Error response. */
  | 'ATTEST_NSM_ERROR'
  /** The NSM's answer is not a response the protocol knows, or not the one asked for. */
  | 'ATTEST_NSM_BAD_RESPONSE'
  /** A request does not fit the protocol (index out of range, input larger than the NSM accepts). */
  | 'ATTEST_NSM_BAD_REQUEST'

export type AttestErrorCode = AttestVerifyErrorCode | AttestOtherErrorCode

export type AttestError = NleError<AttestErrorCode>

/** A verification failure: always ExitCode.VERIFY. */
export function verifyError(code: AttestVerifyErrorCode, message: string, options: Omit<NleErrorOptions, 'exitCode'> = {}): NleError<AttestVerifyErrorCode> {
  return new NleError(code, message, {...options, exitCode: ExitCode.VERIFY})
}

export function attestError(code: AttestOtherErrorCode, message: string, options: NleErrorOptions): NleError<AttestOtherErrorCode> {
  return new NleError(code, message, options)
}
