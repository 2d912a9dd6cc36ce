/**
 * The one `--json` envelope of every nle command (docs/json.md). What a script reads on stdout:
 *
 *   success  {"ok": true,  "command": "build", "schemaVersion": 1, "exitCode": 0, "result": {…}}
 *   failure  {"ok": false, "command": "build", "schemaVersion": 1, "exitCode": 4, "error": {code, message, hint, docs, exitCode, details?}}
 *
 * `ok` says which of `result` or `error` is there; `exitCode` is the process exit status (a check
 * that ran and found a problem, `doctor` or `policy check`, has a result and a non-zero status).
 * A command that prints one result prints one envelope (indented JSON); a long-running command
 * (`proxy`, `kms serve`, `gateway`, `dev`) prints one envelope per line, each naming its `event`
 * (`listening`, `ready`, `stopped`, or `error` with the failure's `error`).
 *
 * `schemaVersion` changes only when a field is removed or changes meaning; new fields may appear
 * at any version. The schema of each command's envelope is in schema/json/ (src/cli/results.ts).
 */
import type {NleError} from '../lib/errors.js'

/** The version of the envelope and of the result schemas: bumped only for a breaking change. */
export const JSON_SCHEMA_VERSION = 1

/** How a failure appears in the envelope: everything that follows from it, never a secret. */
export interface JsonError {
  code: string
  message: string
  hint: string
  /** The code's section of docs/errors.md. */
  docs: string
  exitCode: number
  details?: Record<string, unknown>
}

interface EnvelopeBase {
  /** The command as typed, words separated by spaces (`policy check`); null when no command matched. */
  command: string | null
  schemaVersion: typeof JSON_SCHEMA_VERSION
  /** The process exit status. */
  exitCode: number
  /** Long-running commands only: which line this is. */
  event?: string
}

export interface SuccessEnvelope<T = unknown> extends EnvelopeBase {
  ok: true
  result: T
}

export interface FailureEnvelope extends EnvelopeBase {
  ok: false
  error: JsonError
}

export type Envelope<T = unknown> = SuccessEnvelope<T> | FailureEnvelope

/** `policy:check` (oclif's id) as a user types it. */
export function commandName(id: string | undefined): string | null {
  return id === undefined || id === '' ? null : id.replaceAll(':', ' ')
}

export function jsonError(error: NleError): JsonError {
  return error.toJSON()
}

export function successEnvelope<T>(command: string | null, result: T, options: {exitCode?: number; event?: string} = {}): SuccessEnvelope<T> {
  return {ok: true, command, schemaVersion: JSON_SCHEMA_VERSION, exitCode: options.exitCode ?? 0, ...(options.event === undefined ? {} : {event: options.event}), result}
}

export function failureEnvelope(command: string | null, error: NleError, options: {event?: string} = {}): FailureEnvelope {
  return {ok: false, command, schemaVersion: JSON_SCHEMA_VERSION, exitCode: error.exitCode, ...(options.event === undefined ? {} : {event: options.event}), error: jsonError(error)}
}

/**
 * The text of an envelope on stdout: indented for a single result, one line for an event of a
 * long-running command (so a script can read each line as it comes).
 */
export function renderEnvelope(envelope: Envelope, options: {line?: boolean} = {}): string {
  return (options.line ? JSON.stringify(envelope) : JSON.stringify(envelope, null, 2)) + '\n'
}
