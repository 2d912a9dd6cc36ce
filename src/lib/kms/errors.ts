/**
 * The error codes of the KMS domain: key-policy patching and checking (POLICY_*), the AWS and
 * local KMS edges (KMS_*), and the CMS envelope of CiphertextForRecipient (CMS_*).
 * Tests assert these codes, never the messages.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {CHECK_FAILED, USAGE, CONFIG, VERIFY, IO, NETWORK} = ExitCode

const POLICY_ERRORS = defineErrors({
  POLICY_BAD_JSON: {exit: CONFIG, summary: 'The key policy text is not JSON (an input error, never drift).', hint: 'Fix the JSON of the policy (or the --policy-file), or fetch it again with `nle policy show`'},
  POLICY_INVALID: {exit: CONFIG, summary: 'The key policy is JSON but not a valid key policy (Statement, Effect, Action, Principal…, duplicate keys).', hint: 'Fix the statement the message names; AWS\'s key policy reference lists the elements'},
  POLICY_BAD_MEASUREMENTS: {exit: VERIFY, summary: 'A measurement set to admit is malformed (not 96 hex characters per PCR).', hint: 'Use the PCRs of nle.lock.json (`nle build` writes it)'},
  POLICY_DEBUG_PCRS: {exit: VERIFY, summary: 'The measurements are all zero (a debug-mode enclave) and --allow-debug was not given.', hint: 'A debug enclave is not measured: build without enclave.debug, or pass --allow-debug for a test key'},
  POLICY_LOCKOUT: {exit: CHECK_FAILED, summary: 'The patched policy would take away the caller\'s kms:PutKeyPolicy (lockout).', hint: 'Keep a statement that lets your identity call kms:PutKeyPolicy, or pass --force if another identity keeps that right'},
  POLICY_CHANGED_MEANWHILE: {exit: CHECK_FAILED, summary: 'The key policy changed between reading it and writing the patch; nothing was written.', hint: 'Run `nle policy apply` again to patch the current policy'},
  POLICY_CONFIG_MISSING: {exit: CONFIG, summary: 'nle.yaml lacks something the policy needs (kms.hostRoleArn, kms.keyId, measurements).', hint: 'Set the kms section of nle.yaml (keyId, hostRoleArn, operations) and build once so nle.lock.json exists'},
  POLICY_FILE_IO: {exit: IO, summary: 'A policy file could not be read or written.', hint: 'Check the path and permissions of --policy-file / --out'},
})

const KMS_ERRORS_ONLY = defineErrors({
  KMS_AWS_ERROR: {exit: NETWORK, summary: 'An AWS call (KMS, IAM, STS) failed; details carry the service, operation and AWS error name.', hint: 'Check the network, the endpoint and the AWS credentials (`nle doctor --for policy`); re-run with --verbose'},
  KMS_ACCESS_DENIED: {exit: NETWORK, summary: 'AWS denied the call (AccessDenied*).', hint: 'Check the caller\'s IAM permissions and the key policy (`nle doctor --for policy`)'},
  KMS_CREDENTIALS_REJECTED: {exit: NETWORK, summary: 'AWS did not accept the credentials (wrong secret key, unknown key id, expired session).', hint: 'Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile\'s keys; refresh an expired session (e.g. `aws sso login`)'},
  KMS_KEY_NOT_FOUND: {exit: NETWORK, summary: 'The KMS key does not exist or is not visible to the caller.', hint: 'Check kms.keyId and kms.region in nle.yaml (a key lives in one region and account)'},
  KMS_ROLE_NOT_FOUND: {exit: NETWORK, summary: 'The host role does not exist (IAM GetRole).', hint: 'Check kms.hostRoleArn in nle.yaml'},
  KMS_ROLE_MISMATCH: {exit: CONFIG, summary: 'The role with kms.hostRoleArn\'s name has another ARN (account or path differ).', hint: 'Fix kms.hostRoleArn in nle.yaml to the ARN IAM reports'},
  KMS_NOT_LOOPBACK: {exit: USAGE, summary: 'The local KMS endpoint was asked to listen on a non-loopback address.', hint: 'Use --host 127.0.0.1 (default) or ::1'},
  KMS_STATE_INVALID: {exit: CONFIG, summary: 'The local KMS endpoint\'s state or identities file is unreadable or invalid.', hint: 'Delete the --state file to start over (keys in it are lost), or restore a good copy'},
  KMS_STATE_WRITE_FAILED: {exit: IO, summary: 'The local KMS endpoint\'s state could not be written.', hint: 'Check free space and permissions of the --state file\'s folder'},
  KMS_ROOT_INVALID: {exit: CONFIG, summary: 'The local KMS endpoint\'s attestation trust root could not be loaded.', hint: 'Pass a PEM certificate with --dev-root (`nle dev` writes its simulator root in .nle/dev/)'},
  KMS_LISTEN_FAILED: {exit: IO, summary: 'The local KMS endpoint could not start listening.', hint: 'Check --host and --port; for a port in use see ADDRESS_IN_USE'},
  KMS_CREDENTIALS_UNAVAILABLE: {exit: NETWORK, summary: 'The enclave\'s credentials endpoint (parent proxy, over a Unix socket) is absent, refused or failed.', hint: 'Check the parent proxy\'s credentials socket (proxy.credentials in nle.yaml) and the host\'s AWS credentials (`nle status`)'},
  KMS_CREDENTIALS_INVALID: {exit: NETWORK, summary: 'The credentials endpoint answered something that is not AWS credentials.', hint: 'Check proxy.credentials.source (env or imds) and the host\'s instance role'},
})

const CMS_ERRORS = defineErrors({
  CMS_MALFORMED: {exit: VERIFY, summary: 'The bytes are not a BER/DER CMS ContentInfo → EnvelopedData.', hint: 'The CiphertextForRecipient was altered or is not from KMS: do not trust it'},
  CMS_UNSUPPORTED: {exit: VERIFY, summary: 'A CMS structure nle does not support (version, recipient kind, algorithm).', hint: 'KMS answers RSAES_OAEP_SHA_256 envelopes; anything else is refused'},
  CMS_DECRYPT_FAILED: {exit: VERIFY, summary: 'The content-encryption key or the content could not be decrypted with the given key.', hint: 'The envelope was made for another key or altered: request it again with this attestation'},
  CMS_BAD_KEY: {exit: VERIFY, summary: 'The recipient key is not usable (not RSA, too small, not a DER SubjectPublicKeyInfo).', hint: 'Use an RSA-2048 (or larger) key, its public half as DER SPKI in the attestation document'},
})

export const KMS_ERRORS = {...POLICY_ERRORS, ...KMS_ERRORS_ONLY, ...CMS_ERRORS}

export type PolicyErrorCode = keyof typeof POLICY_ERRORS
export type KmsErrorCode = keyof typeof KMS_ERRORS_ONLY
export type CmsErrorCode = keyof typeof CMS_ERRORS

/** Every code the KMS domain throws. */
export type KmsDomainErrorCode = PolicyErrorCode | KmsErrorCode | CmsErrorCode

export type KmsDomainError = NleError<KmsDomainErrorCode>

export function policyError(code: PolicyErrorCode, message: string, options: NleErrorOptions = {}): NleError<PolicyErrorCode> {
  return new NleError(code, message, options)
}

export function kmsError(code: KmsErrorCode, message: string, options: NleErrorOptions = {}): NleError<KmsErrorCode> {
  return new NleError(code, message, options)
}

export function cmsError(code: CmsErrorCode, message: string, options: NleErrorOptions = {}): NleError<CmsErrorCode> {
  return new NleError(code, message, options)
}
