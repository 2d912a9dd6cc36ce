/**
 * The error codes of the KMS domain: key-policy patching and checking (POLICY_*), the AWS and
 * local KMS edges (KMS_*), and the CMS envelope of CiphertextForRecipient (CMS_*).
 * Tests assert these codes, never the messages.
 */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type PolicyErrorCode =
  /** The key policy text is not JSON (an input error: exit 3, never drift). */
  | 'POLICY_BAD_JSON'
  /** The key policy is JSON but not a valid key policy (Statement, Effect, Action, Principal…, duplicate keys): exit 3. */
  | 'POLICY_INVALID'
  /** A measurement set to admit is malformed (not 96 hex characters per PCR). */
  | 'POLICY_BAD_MEASUREMENTS'
  /** The measurements are all zero (a debug-mode enclave) and --allow-debug was not given. */
  | 'POLICY_DEBUG_PCRS'
  /** The patched policy would take away the caller's kms:PutKeyPolicy path (lockout); --force overrides. */
  | 'POLICY_LOCKOUT'
  /** The key policy changed between reading it and writing the patch. */
  | 'POLICY_CHANGED_MEANWHILE'
  /** nle.yaml lacks something the policy needs (kms.hostRoleArn, kms.keyId). */
  | 'POLICY_CONFIG_MISSING'
  /** A policy file could not be read or written. */
  | 'POLICY_FILE_IO'

export type KmsErrorCode =
  /** An AWS call (KMS, IAM, STS) failed; details carry the service, operation and AWS error name. */
  | 'KMS_AWS_ERROR'
  /** AWS denied the call (AccessDenied*). */
  | 'KMS_ACCESS_DENIED'
  /** The KMS key does not exist or is not visible to the caller. */
  | 'KMS_KEY_NOT_FOUND'
  /** The host role does not exist (IAM GetRole). */
  | 'KMS_ROLE_NOT_FOUND'
  /** The local endpoint was asked to listen on a non-loopback address. */
  | 'KMS_NOT_LOOPBACK'
  /** The local endpoint's state or identities file is unreadable or invalid. */
  | 'KMS_STATE_INVALID'
  /** The local endpoint's state could not be written. */
  | 'KMS_STATE_WRITE_FAILED'
  /** The local endpoint's trust root (attestation) could not be loaded. */
  | 'KMS_ROOT_INVALID'
  /** The local endpoint could not start listening. */
  | 'KMS_LISTEN_FAILED'
  /** The enclave's credentials endpoint (parent proxy, over a Unix socket) is absent, refused or failed. */
  | 'KMS_CREDENTIALS_UNAVAILABLE'
  /** The credentials endpoint answered something that is not AWS credentials. */
  | 'KMS_CREDENTIALS_INVALID'

export type CmsErrorCode =
  /** The bytes are not a BER/DER CMS ContentInfo → EnvelopedData. */
  | 'CMS_MALFORMED'
  /** A CMS structure nle does not support (version, recipient kind, algorithm). */
  | 'CMS_UNSUPPORTED'
  /** The content-encryption key or the content could not be decrypted with the given key. */
  | 'CMS_DECRYPT_FAILED'
  /** The recipient key is not usable (not RSA, too small, not a DER SubjectPublicKeyInfo). */
  | 'CMS_BAD_KEY'

/** Every code the KMS domain throws. */
export type KmsDomainErrorCode = PolicyErrorCode | KmsErrorCode | CmsErrorCode

export type KmsDomainError = NleError<KmsDomainErrorCode>

export function policyError(code: PolicyErrorCode, message: string, options: NleErrorOptions = {}): NleError<PolicyErrorCode> {
  const exitCode =
    options.exitCode ??
    (code === 'POLICY_FILE_IO' ? ExitCode.IO : code === 'POLICY_CONFIG_MISSING' || code === 'POLICY_BAD_JSON' || code === 'POLICY_INVALID' ? ExitCode.CONFIG : code === 'POLICY_DEBUG_PCRS' || code === 'POLICY_BAD_MEASUREMENTS' ? ExitCode.VERIFY : ExitCode.CHECK_FAILED)
  return new NleError(code, message, {...options, exitCode})
}

export function kmsError(code: KmsErrorCode, message: string, options: NleErrorOptions = {}): NleError<KmsErrorCode> {
  const exitCode =
    options.exitCode ??
    (code === 'KMS_NOT_LOOPBACK' ? ExitCode.USAGE : code === 'KMS_STATE_INVALID' || code === 'KMS_ROOT_INVALID' ? ExitCode.CONFIG : code === 'KMS_STATE_WRITE_FAILED' ? ExitCode.IO : ExitCode.NETWORK)
  return new NleError(code, message, {...options, exitCode})
}

export function cmsError(code: CmsErrorCode, message: string, options: NleErrorOptions = {}): NleError<CmsErrorCode> {
  return new NleError(code, message, {exitCode: ExitCode.VERIFY, ...options})
}
