/**
 * docs/errors.md, generated from the error catalogue (`npm run build`, or `npm run docs:errors`).
 * src/lib/errors.test.ts fails when the committed file differs from this text.
 */
import {ExitCode, errorDomains} from './errors.js'

const EXIT_NAMES = Object.fromEntries(Object.entries(ExitCode).map(([name, value]) => [value, name])) as Record<number, string>

const cell = (text: string): string => text.replaceAll('|', '\\|')

export function renderErrorsDoc(): string {
  const out: string[] = [
    '# Error codes',
    '',
    '<!-- Generated from the error catalogue (src/lib/*/errors.ts) by `npm run build`; do not edit by hand. -->',
    '',
    'Every failure prints `Error [CODE]: message` and `Hint: what to do (docs/errors.md#code)`; with `--json` it',
    'prints the failure envelope `{"ok": false, "command", "schemaVersion": 1, "exitCode", "error": {"code", "message",',
    '"hint", "docs", "exitCode", "details"}}` ([json.md](json.md)). The exit status',
    'follows from the code alone (the table of statuses is in the README). Codes are stable: match on them,',
    'never on messages. A hint shown by a command may be more precise than the default hint below.',
    '',
  ]
  for (const d of errorDomains()) {
    out.push(`## ${d.title}`, '', `Declared in \`${d.file}\`.`, '', '| code | exit | what happened |', '|---|---|---|')
    for (const [code, spec] of Object.entries(d.codes)) out.push(`| [\`${code}\`](#${code.toLowerCase()}) | ${spec.exit} | ${cell(spec.summary)} |`)
    out.push('')
    for (const [code, spec] of Object.entries(d.codes)) {
      out.push(`### ${code}`, '', `${spec.summary}`, '', `Exit status ${spec.exit} (${EXIT_NAMES[spec.exit] ?? '?'}).`, '', `What to do: ${spec.hint}${/[.!?)`]$/.test(spec.hint) ? '' : '.'}`, '')
    }
  }
  return out.join('\n').replace(/\n+$/, '\n')
}
