import {type Hook} from '@oclif/core'
import {distance} from 'fastest-levenshtein'

import {NleError} from '../../lib/errors.js'
import {failureEnvelope, renderEnvelope} from '../json.js'
import {renderError} from '../render.js'

/** The command names closest to what was typed (at most three), for "did you mean". */
export function suggestCommands(typed: string, known: readonly string[]): string[] {
  const limit = Math.max(2, Math.floor(typed.length / 3))
  return known
    .map((name) => ({name, d: Math.min(distance(typed, name), name.startsWith(`${typed} `) ? 1 : Number.POSITIVE_INFINITY)}))
    .filter((c) => c.d <= limit)
    .sort((a, b) => a.d - b.d || (a.name < b.name ? -1 : 1))
    .slice(0, 3)
    .map((c) => c.name)
}

/**
 * `nle <unknown>`: an nle-style error with a code (CLI_UNKNOWN_COMMAND, exit 2) and a "did you
 * mean" suggestion, instead of oclif's own message.
 */
const hook: Hook<'command_not_found'> = async function (options) {
  const typed = options.id.replaceAll(':', ' ')
  const known = [...new Set([...options.config.commandIDs, ...options.config.topics.map((t) => t.name)])].map((id) => id.replaceAll(':', ' '))
  const suggestions = suggestCommands(typed, known)
  const error = new NleError('CLI_UNKNOWN_COMMAND', `"${typed}" is not an nle command.`, {
    hint: suggestions.length > 0 ? `Did you mean ${suggestions.map((s) => `\`nle ${s}\``).join(' or ')}? \`nle --help\` lists every command` : '`nle --help` lists every command',
    details: {command: typed, suggestions},
  })
  // No command matched, so the envelope names none (the typed words are in details.command).
  if ((options.argv ?? []).includes('--json')) process.stdout.write(renderEnvelope(failureEnvelope(null, error)))
  else process.stderr.write(renderError(error, {verbose: false, color: Boolean(process.stderr.isTTY)}))
  process.exitCode = error.exitCode
}

export default hook
