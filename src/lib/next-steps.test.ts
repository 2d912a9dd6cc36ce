// Every command nle suggests names a real command and real flags (read from the oclif manifest
// the build writes), so a renamed command or flag fails here; test/newcomer.test.ts runs them.
import {readFileSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {REPO_ROOT} from '../test-support/cli.js'
import {commandOf, doctorAutoNote, formatSteps, initSteps, otherPlaceNote} from './next-steps.js'

interface ManifestFlag {
  type: 'boolean' | 'option'
  char?: string
  allowNo?: boolean
}
const manifest = JSON.parse(readFileSync(`${REPO_ROOT}oclif.manifest.json`, 'utf8')) as {commands: Record<string, {flags: Record<string, ManifestFlag>}>}

/** Why `line` is not a valid nle command line, or undefined when it is. */
function invalid(line: string): string | undefined {
  const words = line.split(/\s+/)
  if (words[0] !== 'nle') return `does not start with nle: ${line}`
  let id = ''
  let n = 1
  for (let k = words.length; k > 1; k--) {
    const candidate = words.slice(1, k).join(':')
    if (manifest.commands[candidate]) {
      id = candidate
      n = k
      break
    }
  }
  if (!id) return `no such command: ${line}`
  const flags = manifest.commands[id]!.flags
  for (let i = n; i < words.length; i++) {
    const w = words[i]!
    if (!w.startsWith('-')) return `unexpected argument "${w}" in: ${line}`
    const name = w.replace(/^--?(no-)?/, '')
    const flag = flags[name] ?? Object.values(flags).find((f) => f.char === name)
    if (!flag) return `nle ${id.replaceAll(':', ' ')} has no flag ${w}`
    if (flag.type === 'option') i++
  }
  return undefined
}

/** `nle …` command lines named in a sentence (in backticks or a comma-separated list; not nle.lock.json). */
function commandsIn(text: string): string[] {
  return [...text.matchAll(/\bnle(?: (?:--?[\w-]+|[a-z][\w-]*))+/g)].map((m) => m[0])
}

describe('next steps', () => {
  it('every suggested command, in every place and note, is a real command with real flags', () => {
    const lines = [
      ...initSteps('dev').map((s) => s.command),
      ...initSteps('nitro-host').map((s) => s.command),
      ...[otherPlaceNote('dev'), otherPlaceNote('nitro-host'), doctorAutoNote('dev'), doctorAutoNote('host')].flatMap(commandsIn),
      ...[...initSteps('dev'), ...initSteps('nitro-host')].flatMap((s) => commandsIn(s.why)),
    ]
    expect(lines.length).toBeGreaterThan(15)
    expect(lines.map(invalid).filter(Boolean)).toEqual([])
  })

  it('the checker itself refuses a missing command, a missing flag and a stray argument', () => {
    expect(invalid('nle config')).toMatch(/no such command/)
    expect(invalid('nle model synth --preset')).toBeUndefined()
    expect(invalid('nle model synth --bogus')).toMatch(/no flag/)
    expect(invalid('nle doctor extra')).toMatch(/unexpected argument/)
  })

  it('prints aligned lines a person can copy, and reads them back to the command', () => {
    const steps = initSteps('dev', 'my project')
    expect(steps[0]?.command).toBe("cd 'my project'")
    const lines = formatSteps(steps)
    expect(lines.map(commandOf)).toEqual(steps.map((s) => s.command))
    expect(new Set(lines.map((l) => l.indexOf('#'))).size).toBe(1)
  })
})
