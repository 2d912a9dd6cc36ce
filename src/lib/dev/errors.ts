/**
 * Error codes of `nle dev` (src/lib/dev): the one-per-folder lock, the checks of what the dev
 * stack is about to attest, and the children it supervises. Tests assert these codes, never
 * messages.
 */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type DevErrorCode =
  // the project
  | 'DEV_MODEL_MISSING'
  | 'DEV_ALREADY_RUNNING'
  | 'DEV_LOCK_FAILED'
  // what the stack attests: the EIF and the model against the lockfile
  | 'DEV_LOCKFILE_MISMATCH'
  | 'DEV_MODEL_CHANGED'
  // the children
  | 'DEV_CHILD_FAILED'
  | 'DEV_CHILD_NOT_READY'

const EXIT: Record<DevErrorCode, ExitCode> = {
  DEV_MODEL_MISSING: ExitCode.IO,
  DEV_ALREADY_RUNNING: ExitCode.CHECK_FAILED,
  DEV_LOCK_FAILED: ExitCode.IO,
  DEV_LOCKFILE_MISMATCH: ExitCode.VERIFY,
  DEV_MODEL_CHANGED: ExitCode.VERIFY,
  DEV_CHILD_FAILED: ExitCode.CHECK_FAILED,
  DEV_CHILD_NOT_READY: ExitCode.CHECK_FAILED,
}

export function devError(code: DevErrorCode, message: string, options: NleErrorOptions = {}): NleError<DevErrorCode> {
  return new NleError(code, message, {exitCode: EXIT[code], ...options})
}
