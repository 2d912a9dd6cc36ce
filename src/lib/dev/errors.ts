/** Error codes of `nle dev`: the local stack of simulated Nitro parts. */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {CHECK_FAILED, IO} = ExitCode

export const DEV_ERRORS = defineErrors({
  DEV_CHILD_FAILED: {exit: CHECK_FAILED, summary: 'A process of the dev stack (enclave server, proxy, KMS) could not start or exited.', hint: 'Its stderr tail is in details.stderrTail (--json); `nle dev --logs` shows every log line'},
  DEV_CHILD_NOT_READY: {exit: CHECK_FAILED, summary: 'A process of the dev stack did not report ready in time.', hint: 'A large model loads slowly: try again, or `nle dev --logs` to watch it'},
  DEV_MODEL_MISSING: {exit: IO, summary: 'No saved model at model.path for `nle dev` to run.', hint: 'Save one first: `nle model save SOURCE` or `nle model synth --out DIR` into model.path'},
})

export type DevErrorCode = keyof typeof DEV_ERRORS

export function devError(code: DevErrorCode, message: string, options: NleErrorOptions = {}): NleError<DevErrorCode> {
  return new NleError(code, message, options)
}
