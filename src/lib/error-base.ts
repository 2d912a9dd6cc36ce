/**
 * The pieces of nle's error family that do not depend on any domain: exit codes, the shape of a
 * catalogue entry, and `NleError` itself. Import them from `src/lib/errors.js`, which also loads
 * every domain's catalogue; this module exists so that the domains' `errors.ts` files and the
 * composed catalogue can refer to each other without an import cycle at evaluation time.
 */
import type {ErrorCode} from './errors.js'

/** Process exit codes. Documented in the README (a test compares the table); never renumber. */
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
  /** A file, socket, port, image or enclave that was named is missing, in use, or cannot be read/written. */
  IO: 6,
  /** A network peer (enclave, proxy, KMS, hub) could not be reached or answered wrongly. */
  NETWORK: 7,
  /** A bug in nle: please report it. */
  INTERNAL: 70,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** One entry of the error catalogue: everything that follows from the code alone. */
export interface ErrorSpec {
  /** The process exit status of a command that fails with this code. */
  readonly exit: ExitCode
  /** One line: what happened (docs/errors.md shows it). */
  readonly summary: string
  /** What to do, by default; a throw site may give a more precise hint. Never ends with the docs anchor (added). */
  readonly hint: string
}

/** A domain's codes: declared once, in the domain's `errors.ts`. */
export type ErrorTable = Readonly<Record<string, ErrorSpec>>

/** Declare a domain's codes (identity at run time; keeps the literal keys for the `ErrorCode` union). */
export function defineErrors<const T extends ErrorTable>(table: T): T {
  return table
}

/** The generated reference of every code. */
export const ERRORS_DOC = 'docs/errors.md'

/** Where a code is documented: `docs/errors.md#eif_not_found`. */
export function docsAnchor(code: string): string {
  return `${ERRORS_DOC}#${code.toLowerCase()}`
}

/** The hint a user sees: the site's (or the catalogue's default) followed by the docs anchor. */
export function hintWithAnchor(code: string, hint: string): string {
  // A hint passed on from another error (a re-wrapped cause) loses that error's anchor.
  const text = hint.trim().replace(/\s*\(docs\/errors\.md#[a-z0-9_]+\)$/, '')
  return `${text}${/[.!?)`]$/.test(text) ? '' : '.'} (${docsAnchor(code)})`
}

export interface NleErrorOptions {
  /** Replaces the catalogue's default hint for this occurrence (the docs anchor is still appended). */
  hint?: string
  /** Machine-readable extra facts, included in `--json` error output. Never secrets. */
  details?: Record<string, unknown>
  cause?: unknown
}

type Lookup = (code: string) => ErrorSpec | undefined
let lookup: Lookup = () => undefined

/** Called once by src/lib/errors.ts, which composes the domains' catalogues. */
export function useCatalogue(fn: Lookup): void {
  lookup = fn
}

/** The entry for a code, or undefined for a string that is not catalogued. */
export function catalogueEntry(code: string): ErrorSpec | undefined {
  return lookup(code)
}

/**
 * The one error family of nle. Every failure a user can cause or meet carries a stable literal
 * `code` from the catalogue (tests assert the code, never the message), a one-line `message`, a
 * `hint` that says what to do and ends with the code's docs anchor, and the process `exitCode`,
 * which follows from the code alone.
 */
export class NleError<Code extends ErrorCode = ErrorCode> extends Error {
  readonly code: Code
  readonly hint: string
  readonly exitCode: ExitCode
  readonly details: Record<string, unknown> | undefined

  constructor(code: Code, message: string, options: NleErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'NleError'
    this.code = code
    const spec = lookup(code)
    // Only an uncatalogued string (the type forbids it) has no entry: that is a bug in nle.
    this.exitCode = spec?.exit ?? ExitCode.INTERNAL
    this.hint = hintWithAnchor(code, options.hint ?? spec?.hint ?? 'This error code is not in the catalogue: a bug in nle; please report it.')
    this.details = options.details
  }

  /** The code's section of docs/errors.md (`docs/errors.md#eif_not_found`). */
  get docs(): string {
    return docsAnchor(this.code)
  }

  /** The stable JSON shape of a failure: the `error` of the `--json` envelope (src/cli/json.ts). */
  toJSON(): {code: string; message: string; hint: string; docs: string; exitCode: number; details?: Record<string, unknown>} {
    return {
      code: this.code,
      message: this.message,
      hint: this.hint,
      docs: this.docs,
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

/** An external program failed. Carries what ran and how it ended (its code's exit status is TOOL). */
export class ToolError<Code extends ErrorCode = ErrorCode> extends NleError<Code> {
  readonly tool: string
  readonly argv: readonly string[]
  readonly toolExitCode: number | undefined
  readonly stderrTail: string

  constructor(code: Code, message: string, init: ToolErrorInit) {
    const stderrTail = tail(init.stderr)
    super(code, message, {
      ...(init.hint === undefined ? {} : {hint: init.hint}),
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
export function hasCode<C extends ErrorCode>(error: unknown, code: C): error is NleError<C> {
  return isNleError(error) && error.code === code
}
