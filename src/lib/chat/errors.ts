/** Error codes of `nle chat` (the client's own codes are CLIENT_*, attestation refusals ATTEST_*). */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {USAGE} = ExitCode

export const CHAT_ERRORS = defineErrors({
  CHAT_NO_TARGET: {exit: USAGE, summary: 'No enclave to talk to: no --url, and no `nle dev` running in this folder.', hint: 'Start `nle dev` in this project, or pass --url https://HOST:PORT'},
  CHAT_MODE_UNAVAILABLE: {exit: USAGE, summary: 'The chosen mode cannot be used here (KMS mode without a KMS key).', hint: 'Set kms.keyId in nle.yaml (or pass --kms-key-id), or use --mode attested'},
})

export type ChatErrorCode = keyof typeof CHAT_ERRORS

export function chatError(code: ChatErrorCode, message: string, options: NleErrorOptions = {}): NleError<ChatErrorCode> {
  return new NleError(code, message, options)
}
