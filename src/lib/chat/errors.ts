/** Error codes of `nle chat` (the client's own codes are CLIENT_*, attestation refusals ATTEST_*). */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {USAGE} = ExitCode

export const CHAT_ERRORS = defineErrors({
  CHAT_NO_TARGET: {exit: USAGE, summary: 'No enclave to talk to: no --url, and no `nle dev` running in this folder.', hint: 'Start `nle dev` in this project, or pass --url https://HOST:PORT'},
})

export type ChatErrorCode = keyof typeof CHAT_ERRORS

export function chatError(code: ChatErrorCode, message: string, options: NleErrorOptions = {}): NleError<ChatErrorCode> {
  return new NleError(code, message, options)
}
