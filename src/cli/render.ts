import {NleError, ToolError} from '../lib/errors.js'

export interface RenderOptions {
  verbose: boolean
  color: boolean
}

const red = (s: string, on: boolean): string => (on ? `\u001B[31m${s}\u001B[39m` : s)
const dim = (s: string, on: boolean): string => (on ? `\u001B[2m${s}\u001B[22m` : s)

/** The one on-screen form of every failure. */
export function renderError(error: NleError, options: RenderOptions): string {
  const lines = [`${red('Error', options.color)} [${error.code}]: ${error.message}`]
  if (error instanceof ToolError) {
    lines.push(`  ran: ${[error.tool, ...error.argv].join(' ')} (exit ${error.toolExitCode ?? 'n/a'})`)
    if (error.stderrTail) lines.push(...error.stderrTail.split('\n').map((l) => dim(`  | ${l}`, options.color)))
  } else if (typeof error.details?.stderrTail === 'string' && error.details.stderrTail !== '') {
    // A supervised child (nle dev's enclave server, proxy) that failed: the end of its stderr.
    lines.push(...error.details.stderrTail.split('\n').map((l) => dim(`  | ${l}`, options.color)))
  }
  if (error.hint) lines.push(`Hint: ${error.hint}`)
  if (options.verbose) {
    const stack = (error.cause instanceof Error ? error.cause.stack : undefined) ?? error.stack
    if (stack) lines.push(dim(stack, options.color))
  }
  return lines.join('\n') + '\n'
}

/** A plain fixed-width table for human output (scripts use --json). */
export function table(rows: readonly (readonly string[])[], header?: readonly string[]): string {
  const all = header ? [header, ...rows] : [...rows]
  const widths: number[] = []
  for (const row of all) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  const fmt = (row: readonly string[]): string => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')
  const out = all.map(fmt)
  if (header) out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
  return out.join('\n') + '\n'
}
