/**
 * Error codes of the attested channel. Each is a distinct reason a sealed message was refused;
 * tests assert these codes. None of the messages ever carries plaintext or key material.
 */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type ChannelErrorCode =
  /** The bytes are not a sealed message of this protocol (too short, wrong version, bad framing). */
  | 'CHANNEL_MALFORMED'
  /** The message or key configuration names an HPKE KEM/KDF/AEAD this build does not speak. */
  | 'CHANNEL_UNSUPPORTED_SUITE'
  /** The attested public key is not a key configuration of this protocol. */
  | 'CHANNEL_BAD_KEY_CONFIG'
  /** The request was sealed to a key the server no longer (or never) held: re-attest and retry. */
  | 'CHANNEL_UNKNOWN_KEY'
  /** The sealed request does not open: altered in transit, or sealed to another key. */
  | 'CHANNEL_REQUEST_AUTH_FAILED'
  /** The sealed request was already received once (same encapsulated key). */
  | 'CHANNEL_REPLAY'
  /** A sealed response chunk does not open: altered, reordered or injected in transit. */
  | 'CHANNEL_RESPONSE_AUTH_FAILED'
  /** The response ended before its final chunk: truncated in transit. */
  | 'CHANNEL_TRUNCATED'
  /** Data arrived after the final chunk. */
  | 'CHANNEL_AFTER_FINAL'
  /** Too many chunks for one response (nonce space). */
  | 'CHANNEL_LIMIT'
  /** KMS mode: the request was issued too long ago (or in the future): outside the replay window. */
  | 'CHANNEL_STALE'
  /** KMS mode: KMS refused to release the request's data key to this enclave (key policy, PCRs). */
  | 'CHANNEL_KMS_DENIED'
  /** KMS mode: KMS or the enclave's credentials could not be reached. */
  | 'CHANNEL_KMS_UNAVAILABLE'
  /** KMS mode: KMS rejected the request's wrapped key (wrong key, altered, or another encryption context). */
  | 'CHANNEL_KMS_REJECTED'
  /** KMS mode is not enabled on this enclave server. */
  | 'CHANNEL_KMS_DISABLED'

export type ChannelError = NleError<ChannelErrorCode>

const EXIT: Record<ChannelErrorCode, ExitCode> = {
  CHANNEL_MALFORMED: ExitCode.VERIFY,
  CHANNEL_UNSUPPORTED_SUITE: ExitCode.VERIFY,
  CHANNEL_BAD_KEY_CONFIG: ExitCode.VERIFY,
  CHANNEL_UNKNOWN_KEY: ExitCode.VERIFY,
  CHANNEL_REQUEST_AUTH_FAILED: ExitCode.VERIFY,
  CHANNEL_REPLAY: ExitCode.VERIFY,
  CHANNEL_RESPONSE_AUTH_FAILED: ExitCode.VERIFY,
  CHANNEL_TRUNCATED: ExitCode.NETWORK,
  CHANNEL_AFTER_FINAL: ExitCode.VERIFY,
  CHANNEL_LIMIT: ExitCode.INTERNAL,
  CHANNEL_STALE: ExitCode.VERIFY,
  CHANNEL_KMS_DENIED: ExitCode.VERIFY,
  CHANNEL_KMS_UNAVAILABLE: ExitCode.NETWORK,
  CHANNEL_KMS_REJECTED: ExitCode.VERIFY,
  CHANNEL_KMS_DISABLED: ExitCode.CONFIG,
}

export function channelError(code: ChannelErrorCode, message: string, options: NleErrorOptions = {}): ChannelError {
  return new NleError(code, message, {exitCode: EXIT[code], ...options})
}
