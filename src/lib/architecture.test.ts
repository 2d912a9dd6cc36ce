// The rooms of the data path talk through the wire contract (src/lib/protocol) and the network
// kit (src/lib/net), never through each other's code: the client, the proxy and the server may
// not import one another, and the gateway builds on the client alone. Read from the sources.
import {readFileSync, readdirSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {describe, expect, it} from 'vitest'

import {scanImports} from './runtime/graph.js'

const LIB = dirname(fileURLToPath(import.meta.url))
const ROOMS = ['client', 'proxy', 'server', 'gateway'] as const
const ALLOWED: Record<string, readonly string[]> = {gateway: ['client']}

/** "<room>/<file> → <room>/<file>" for every import from one room into another it may not use. */
function crossings(files: {path: string; source: string}[]): string[] {
  const roomOf = (path: string): string | undefined => ROOMS.find((r) => relative(LIB, path).split('/')[0] === r)
  const out: string[] = []
  for (const {path, source} of files) {
    const from = roomOf(path)
    if (!from) continue
    for (const s of scanImports(source).specifiers) {
      if (!s.startsWith('.')) continue
      const target = resolve(dirname(path), s)
      const to = roomOf(target)
      if (to && to !== from && !(ALLOWED[from] ?? []).includes(to)) out.push(`${relative(LIB, path)} → ${relative(LIB, target)}`)
    }
  }
  return out
}

const sources = (): {path: string; source: string}[] =>
  ROOMS.flatMap((room) =>
    readdirSync(join(LIB, room), {recursive: true, encoding: 'utf8'})
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => ({path: join(LIB, room, f), source: readFileSync(join(LIB, room, f), 'utf8')})),
  )

describe('the data path rooms', () => {
  it('import each other only as allowed (the gateway may use the client); the rest goes through protocol/ and net/', () => {
    const files = sources()
    expect(files.length).toBeGreaterThan(20)
    expect(crossings(files)).toEqual([])
  })

  it('would name a crossing', () => {
    const file = {path: join(LIB, 'client', 'x.ts'), source: "import type {ChatCompletion} from '../server/chat.js'\nimport {ROUTES} from '../protocol/routes.js'"}
    expect(crossings([file])).toEqual(['client/x.ts → server/chat.js'])
    expect(crossings([{path: join(LIB, 'gateway', 'y.ts'), source: "import {NleClient} from '../client/index.js'"}])).toEqual([])
  })
})

describe('the commands', () => {
  const COMMANDS = join(LIB, '..', 'commands')
  it('stay thin: every src/commands file is at most 80 lines (flags → one src/lib call → render)', () => {
    const long = readdirSync(COMMANDS, {recursive: true, encoding: 'utf8'})
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => ({file: f, lines: readFileSync(join(COMMANDS, f), 'utf8').split('\n').length - 1}))
      .filter((c) => c.lines > 80)
    expect(long).toEqual([])
  })
})
