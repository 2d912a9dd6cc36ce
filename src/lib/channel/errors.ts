/**
 * Error codes of the attested channel. Each is a distinct reason a sealed message was refused;
 * tests assert these codes. None of the messages ever carries plaintext or key material.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {VERIFY, NETWORK, INTERNAL, CONFIG} = ExitCode

const TAMPERED = 'Something between you and the enclave altered the traffic: do not trust that path; retry, and check the proxy and network'

export const CHANNEL_ERRORS = defineErrors({
  CHANNEL_MALFORMED: {exit: VERIFY, summary: 'The bytes are not a sealed message of this protocol (too short, wrong version, bad framing).', hint: 'Client and enclave must run the same nle release; otherwise the message was altered in transit'},
  CHANNEL_UNSUPPORTED_SUITE: {exit: VERIFY, summary: 'The message or key configuration names an HPKE KEM/KDF/AEAD this build does not speak.', hint: 'Client and enclave must run the same nle release'},
  CHANNEL_BAD_KEY_CONFIG: {exit: VERIFY, summary: 'The attested public key is not a key configuration of this protocol.', hint: 'The enclave runs another nle release or is not an nle enclave: rebuild it with this release'},
  CHANNEL_UNKNOWN_KEY: {exit: VERIFY, summary: 'The request was sealed to a key the server no longer (or never) held.', hint: 'The enclave restarted since its attestation: attest again and retry (`nle chat` and `nle gateway` do so)'},
  CHANNEL_REQUEST_AUTH_FAILED: {exit: VERIFY, summary: 'The sealed request does not open: altered in transit, or sealed to another key.', hint: TAMPERED},
  CHANNEL_REPLAY: {exit: VERIFY, summary: 'The sealed request was already received once (same encapsulated key).', hint: 'A request is accepted once: something replayed it. Send a new request'},
  CHANNEL_RESPONSE_AUTH_FAILED: {exit: VERIFY, summary: 'A sealed response chunk does not open: altered, reordered or injected in transit.', hint: TAMPERED},
  CHANNEL_TRUNCATED: {exit: NETWORK, summary: 'The response ended before its final chunk: truncated in transit.', hint: 'The connection broke mid-answer: retry; if it repeats, check the proxy\'s upstream timeout'},
  CHANNEL_AFTER_FINAL: {exit: VERIFY, summary: 'Data arrived after the final chunk.', hint: TAMPERED},
  CHANNEL_LIMIT: {exit: INTERNAL, summary: 'Too many chunks for one response (nonce space).', hint: 'Lower runtime.maxTokens; if it happens below the limit, report it as a bug'},
  CHANNEL_STALE: {exit: VERIFY, summary: 'KMS mode: the request was issued outside the replay window (too old, or in the future).', hint: 'Check the clocks of this machine and the enclave\'s host, then send the request again'},
  CHANNEL_KMS_DENIED: {exit: VERIFY, summary: 'KMS mode: KMS refused to release the request\'s data key to this enclave (key policy, PCRs).', hint: 'The key policy does not admit the enclave\'s measurements: run `nle policy apply --apply` after a build, and `nle policy check`'},
  CHANNEL_KMS_UNAVAILABLE: {exit: NETWORK, summary: 'KMS mode: KMS or the enclave\'s credentials could not be reached.', hint: 'Check the KMS vsock-proxy and the credentials bridge (`nle status`), and the host\'s AWS credentials'},
  CHANNEL_KMS_REJECTED: {exit: VERIFY, summary: 'KMS mode: KMS rejected the request\'s wrapped key (wrong key, altered, or another encryption context).', hint: 'Client and enclave must use the same kms.keyId and region; otherwise the request was altered'},
  CHANNEL_KMS_DISABLED: {exit: CONFIG, summary: 'KMS mode is not enabled on this enclave server.', hint: 'Use --mode attested, or configure kms in nle.yaml and rebuild the enclave'},
})

export type ChannelErrorCode = keyof typeof CHANNEL_ERRORS

export type ChannelError = NleError<ChannelErrorCode>

export function channelError(code: ChannelErrorCode, message: string, options: NleErrorOptions = {}): ChannelError {
  return new NleError(code, message, options)
}
