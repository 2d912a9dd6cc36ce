/**
 * The error codes of the attestation domain. Every verification failure has its own code so that
 * callers and tests can tell *why* a document was refused; all of them exit with ExitCode.VERIFY.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {VERIFY, USAGE, IO} = ExitCode

/** The enclave image is not the one the lockfile names: what to do is the same for every PCR reason. */
const REBUILD = 'If you rebuilt the enclave, commit the new nle.lock.json (or pass the lockfile of the image that runs); otherwise the enclave is not the one you built: do not send it anything'
/** The document is not a well-formed Nitro document: a broken or hostile enclave, or the wrong URL. */
const NOT_NITRO = 'The document is not a genuine Nitro attestation: check that the URL names your enclave\'s proxy, and do not trust that endpoint'

/** Codes thrown while verifying a document: each one is a distinct reason to refuse it. */
const VERIFY_ERRORS = defineErrors({
  ATTEST_COSE_MALFORMED: {exit: VERIFY, summary: 'The bytes are not a CBOR COSE_Sign1 of the shape AWS emits.', hint: NOT_NITRO},
  ATTEST_UNSUPPORTED_ALG: {exit: VERIFY, summary: 'The protected header does not say ES384 (alg -35).', hint: NOT_NITRO},
  ATTEST_PAYLOAD_INVALID: {exit: VERIFY, summary: 'The payload is not a well-formed attestation document (types, sizes, required fields).', hint: NOT_NITRO},
  ATTEST_CERT_MALFORMED: {exit: VERIFY, summary: 'A certificate in the document (or the trusted root) is not parseable X.509 or uses an unexpected algorithm.', hint: 'Check --root if you gave one (a PEM certificate); otherwise the document is not a genuine Nitro attestation'},
  ATTEST_ROOT_MISMATCH: {exit: VERIFY, summary: 'The document\'s root certificate is not the pinned AWS Nitro root.', hint: 'Only documents signed under the AWS Nitro Enclaves root are trusted; for `nle dev`, use the dev root it publishes (`nle chat`/`nle gateway` find it)'},
  ATTEST_CHAIN_BROKEN: {exit: VERIFY, summary: 'A certificate was not issued (name or signature) by the one before it.', hint: NOT_NITRO},
  ATTEST_CERT_CONSTRAINTS: {exit: VERIFY, summary: 'A CA certificate lacks CA=true / keyCertSign, or a path length constraint is exceeded.', hint: NOT_NITRO},
  ATTEST_LEAF_IS_CA: {exit: VERIFY, summary: 'The signing (leaf) certificate is a CA or may not make digital signatures.', hint: NOT_NITRO},
  ATTEST_CERT_EXPIRED: {exit: VERIFY, summary: 'A certificate\'s validity ended before the verification time.', hint: 'Fetch a fresh document from the enclave (they are valid for hours); for a saved document, pass --at with the time it was made'},
  ATTEST_CERT_NOT_YET_VALID: {exit: VERIFY, summary: 'A certificate\'s validity starts after the verification time.', hint: 'Check this machine\'s clock (or --at)'},
  ATTEST_BAD_SIGNATURE: {exit: VERIFY, summary: 'The COSE signature does not verify with the leaf certificate\'s key.', hint: 'The document was altered in transit or forged: do not trust that endpoint'},
  ATTEST_DEBUG_ENCLAVE: {exit: VERIFY, summary: 'PCR0..2 are all zero (a debug-mode enclave) and debug enclaves were not allowed.', hint: 'A debug enclave\'s memory is readable by the host: run it with enclave.debug: false, or pass --allow-debug for a test'},
  ATTEST_PCR_MISMATCH: {exit: VERIFY, summary: 'A PCR differs from the expected measurement.', hint: REBUILD},
  ATTEST_PCR_MISSING: {exit: VERIFY, summary: 'An expected PCR is not in the document at all.', hint: NOT_NITRO},
  ATTEST_NONCE_MISMATCH: {exit: VERIFY, summary: 'The document\'s nonce is absent or differs from the one that was sent.', hint: 'The answer is a replayed or foreign document: do not trust that endpoint'},
  ATTEST_TOO_OLD: {exit: VERIFY, summary: 'The document is older than the allowed maximum age.', hint: 'Fetch a fresh document, or raise --max-age for a saved one'},
  ATTEST_FROM_FUTURE: {exit: VERIFY, summary: 'The document\'s timestamp is later than the verification time (beyond the allowed skew).', hint: 'Check this machine\'s clock (or --at)'},
  ATTEST_UNPROCESSABLE: {exit: VERIFY, summary: 'An unexpected failure while checking the document; the document is refused.', hint: 'The document was refused, never passed. Re-run with --verbose and report the output'},
})

/** Codes for problems around verification: bad expectations, inputs that cannot be read, the NSM. */
const OTHER_ERRORS = defineErrors({
  ATTEST_POLICY_INVALID: {exit: USAGE, summary: 'The verification policy is unusable (malformed expected PCRs, time, duration or root).', hint: 'Give the expected measurements as 96 hex characters each (from nle.lock.json or the build output), times as ISO 8601 and durations as 300s, 5m, 3h or 1d'},
  ATTEST_NO_EXPECTED_PCRS: {exit: USAGE, summary: 'No expected PCRs were given and no lockfile was found.', hint: 'Run it next to nle.lock.json, pass --lockfile, or give --pcr0, --pcr1 and --pcr2'},
  ATTEST_READ_FAILED: {exit: IO, summary: 'A file named on the command line (the document, the root certificate) could not be read.', hint: 'Check the path and the file\'s permissions'},
  ATTEST_NSM_UNAVAILABLE: {exit: IO, summary: '/dev/nsm could not be opened (not inside an enclave, or no permission).', hint: 'The NSM exists only inside a Nitro Enclave; on a laptop run `nle dev`, which simulates it'},
  ATTEST_NSM_IOCTL_FAILED: {exit: IO, summary: 'The ioctl on /dev/nsm failed.', hint: 'Is this the Nitro Secure Module device? Check the enclave\'s nsm driver'},
  ATTEST_NSM_ERROR: {exit: IO, summary: 'The NSM answered with an Error response.', hint: 'The message names the NSM\'s error; check the request (PCR index, sizes) and the enclave\'s state'},
  ATTEST_NSM_BAD_RESPONSE: {exit: IO, summary: 'The NSM\'s answer is not a response the protocol knows, or not the one asked for.', hint: 'Check that /dev/nsm is the Nitro Secure Module; re-run with --verbose and report the output'},
  ATTEST_NSM_BAD_REQUEST: {exit: USAGE, summary: 'A request does not fit the NSM protocol (index out of range, input larger than the NSM accepts).', hint: 'Keep user data, nonce and public key within the NSM\'s limits (the message says which)'},
})

export const ATTEST_ERRORS = {...VERIFY_ERRORS, ...OTHER_ERRORS}

export type AttestVerifyErrorCode = keyof typeof VERIFY_ERRORS
export type AttestOtherErrorCode = keyof typeof OTHER_ERRORS
export type AttestErrorCode = AttestVerifyErrorCode | AttestOtherErrorCode

export type AttestError = NleError<AttestErrorCode>

/** A verification failure (exit 5). */
export function verifyError(code: AttestVerifyErrorCode, message: string, options: NleErrorOptions = {}): NleError<AttestVerifyErrorCode> {
  return new NleError(code, message, options)
}

export function attestError(code: AttestOtherErrorCode, message: string, options: NleErrorOptions = {}): NleError<AttestOtherErrorCode> {
  return new NleError(code, message, options)
}
