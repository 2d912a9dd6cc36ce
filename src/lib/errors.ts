/**
 * The one error family of nle. Every failure a user can cause or meet carries a stable
 * literal `code` (tests assert the code, never the message), a one-line `message`, a `hint`
 * that says what to do, and the process `exitCode` the CLI exits with.
 *
 * Domains add their codes to `ErrorCode` below so the whole set stays greppable in one place.
 */

/** Process exit codes. Documented in the README; never renumber. */
export const ExitCode = {
  OK: 0,
  /** A check ran and reported a failure (drift, doctor found parts missing). */
  CHECK_FAILED: 1,
  /** Bad flags or arguments (oclif's own parse errors also exit 2). */
  USAGE: 2,
  /** nle.yaml or another nle input file is missing, malformed or invalid. */
  CONFIG: 3,
  /** An external program (docker, nitro-cli, systemctl, socat) failed. */
  TOOL: 4,
  /** A cryptographic verification failed: attestation, signature, measurements. */
  VERIFY: 5,
  /** A file, image or enclave that was named does not exist or cannot be read/written. */
  IO: 6,
  /** A network peer (enclave, proxy, KMS, hub) could not be reached or answered wrongly. */
  NETWORK: 7,
  /** A bug in nle: please report it. */
  INTERNAL: 70,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

export interface NleErrorOptions {
  hint?: string
  exitCode?: ExitCode
  /** Machine-readable extra facts, included in `--json` error output. Never secrets. */
  details?: Record<string, unknown>
  cause?: unknown
}

export class NleError<Code extends string = string> extends Error {
  readonly code: Code
  readonly hint: string | undefined
  readonly exitCode: ExitCode
  readonly details: Record<string, unknown> | undefined

  constructor(code: Code, message: string, options: NleErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'NleError'
    this.code = code
    this.hint = options.hint
    this.exitCode = options.exitCode ?? ExitCode.CHECK_FAILED
    this.details = options.details
  }

  /** The stable JSON shape printed by `--json` on failure. */
  toJSON(): {code: string; message: string; hint?: string; exitCode: number; details?: Record<string, unknown>} {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : {hint: this.hint}),
      exitCode: this.exitCode,
      ...(this.details === undefined ? {} : {details: this.details}),
    }
  }
}

export interface ToolErrorInit {
  tool: string
  argv: readonly string[]
  /** The tool's exit status, or undefined when it could not be started or was killed. */
  toolExitCode: number | undefined
  stderr: string
  hint?: string
  cause?: unknown
}

/** How many trailing lines of a tool's stderr an error keeps. */
export const STDERR_TAIL_LINES = 20

export function tail(text: string, lines = STDERR_TAIL_LINES): string {
  const all = text.replace(/\s+$/, '').split('\n')
  return all.slice(Math.max(0, all.length - lines)).join('\n')
}

/** An external program failed. Carries what ran and how it ended. */
export class ToolError<Code extends string = string> extends NleError<Code> {
  readonly tool: string
  readonly argv: readonly string[]
  readonly toolExitCode: number | undefined
  readonly stderrTail: string

  constructor(code: Code, message: string, init: ToolErrorInit) {
    const stderrTail = tail(init.stderr)
    super(code, message, {
      hint: init.hint,
      exitCode: ExitCode.TOOL,
      cause: init.cause,
      details: {tool: init.tool, argv: [...init.argv], toolExitCode: init.toolExitCode, stderrTail},
    })
    this.name = 'ToolError'
    this.tool = init.tool
    this.argv = init.argv
    this.toolExitCode = init.toolExitCode
    this.stderrTail = stderrTail
  }
}

export function isNleError(error: unknown): error is NleError {
  return error instanceof NleError
}

/** Narrow helper for tests and callers: is this an NleError with exactly this code? */
export function hasCode<C extends string>(error: unknown, code: C): error is NleError<C> {
  return isNleError(error) && error.code === code
}
