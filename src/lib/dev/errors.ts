/** Error codes of `nle dev`: the local stack of simulated Nitro parts. */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {CHECK_FAILED, IO, VERIFY} = ExitCode

export const DEV_ERRORS = defineErrors({
  DEV_CHILD_FAILED: {exit: CHECK_FAILED, summary: 'A process of the dev stack (enclave server, proxy, KMS) could not start or exited.', hint: 'Its stderr tail is in details.stderrTail (--json); `nle dev --logs` shows every log line'},
  DEV_CHILD_NOT_READY: {exit: CHECK_FAILED, summary: 'A process of the dev stack did not report ready in time.', hint: 'A large model loads slowly: try again, or `nle dev --logs` to watch it'},
  DEV_ALREADY_RUNNING: {exit: CHECK_FAILED, summary: 'Another `nle dev` already runs in this folder (one per folder: they would share .nle/dev).', hint: 'Use the running one (`nle chat`), or stop it (Ctrl-C in its terminal, or kill the pid named) first'},
  DEV_LOCK_FAILED: {exit: IO, summary: 'The one-per-folder lock .nle/dev/lock could not be taken or read.', hint: 'Check that .nle/dev is yours and writable; remove a damaged .nle/dev/lock when no `nle dev` runs'},
  DEV_LOCKFILE_MISMATCH: {exit: VERIFY, summary: 'The EIF `nle dev` would start is not the one the lockfile pins (PCRs, digest or size differ).', hint: 'Rebuild (`nle build` or `nle dev --rebuild`) so the lockfile records the image, or restore the EIF'},
  DEV_MODEL_CHANGED: {exit: VERIFY, summary: 'The saved model is not the one the lockfile pins (manifest digest or a file changed).', hint: 'Rebuild (`nle build`) if the change is intended, or restore the model files'},
  DEV_MODEL_MISSING: {exit: IO, summary: 'No saved model at model.path for `nle dev` to run.', hint: 'Save one first: `nle model save SOURCE` or `nle model synth --out DIR` into model.path'},
})

export type DevErrorCode = keyof typeof DEV_ERRORS

export function devError(code: DevErrorCode, message: string, options: NleErrorOptions = {}): NleError<DevErrorCode> {
  return new NleError(code, message, options)
}
