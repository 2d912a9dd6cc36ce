// The dev supervisor's children die with their parent, even when it is killed with SIGKILL and
// none of its cleanup runs: a real supervising process (dist/lib/dev/supervisor.js, as `nle dev`
// runs it) starts real children, the test kills it, and waits for the children to go. Each child
// holds a connection to the test's Unix socket, so the test sees the moment it exits (the kernel
// closes its sockets) instead of sleeping. A control child started without `nodeChild()` stays:
// the mechanism, not luck, is what ends the others.
import {once} from 'node:events'
import {mkdtemp, rm} from 'node:fs/promises'
import {type Socket, createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {setTimeout as sleep} from 'node:timers/promises'
import {pathToFileURL} from 'node:url'

import {execa} from 'execa'
import {afterEach, describe, expect, it} from 'vitest'

import {isAlive} from '../src/lib/host/processes.js'
import {PACKAGE_ROOT} from '../src/lib/paths.js'

const SUPERVISOR = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'lib', 'dev', 'supervisor.js')).href
const PRELOAD = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'lib', 'dev', 'exit-with-parent-preload.js')).href

/** Sees its stdin end, and only then (a turn later) says so: the watch, had it acted, would have stopped it first. */
const SEES_END = `process.stdin.on('data', () => {}).on('end', () => setImmediate(() => { console.log(JSON.stringify({survived: true, env: process.env.NLE_EXIT_WITH_PARENT ?? null})); process.exit(0) })); setInterval(() => {}, 1000)`

/** A child: reports its pid on the watch socket, keeps it open, says it is ready, and runs until stopped. */
const childBody = (graceful: boolean): string =>
  [
    `const s = require('node:net').connect(process.env.WATCH, () => s.write(process.pid + '\\n'))`,
    graceful ? `process.on('SIGTERM', () => setTimeout(() => process.exit(0), 20))` : '',
    `console.log(JSON.stringify({ready: true}))`,
    `setInterval(() => {}, 1000)`,
  ].join(';')

/** The supervising process: two children that die with it, one control child that does not. */
const supervisorBody = `
import {Supervisor, nodeChild} from ${JSON.stringify(SUPERVISOR)}
const sup = new Supervisor()
const a = await sup.start({name: 'plain', ...nodeChild('-e', [${JSON.stringify(childBody(false))}])})
const b = await sup.start({name: 'graceful', ...nodeChild('-e', [${JSON.stringify(childBody(true))}])})
const c = await sup.start({name: 'control', command: process.execPath, args: ['-e', ${JSON.stringify(childBody(false))}]})
console.log(JSON.stringify({watched: [a.pid, b.pid], control: c.pid}))
setInterval(() => {}, 1000)
`

/** `promise`, or a failure naming `what` if it has not settled within `ms` (a bound, not a wait). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, bound])
  } finally {
    clearTimeout(timer)
  }
}

/** Until `pid` has exited (its sockets closing precedes the end of its exit by a moment). */
async function gone(pid: number): Promise<void> {
  while (isAlive(pid)) await sleep(10)
}

let dir: string | undefined
const leftovers: number[] = []
afterEach(async () => {
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
  if (dir) await rm(dir, {recursive: true, force: true})
})

describe('dev supervisor children', () => {
  it('exit when the supervising process is killed with SIGKILL', async () => {
    dir = await mkdtemp(join(tmpdir(), 'nle-orphans-'))
    const watch = join(dir, 'watch.sock')
    const byPid = new Map<number, Socket>()
    let arrived: () => void = () => undefined
    const server = createServer((socket) => {
      createInterface({input: socket}).once('line', (line) => {
        byPid.set(Number(line), socket)
        arrived()
      })
      socket.on('error', () => undefined)
    })
    server.listen(watch)
    await once(server, 'listening')
    try {
      const parent = execa(process.execPath, ['--input-type=module', '-e', supervisorBody], {env: {WATCH: watch}, reject: false, buffer: false, stdin: 'ignore', stderr: 'inherit'})
      const line = await within(once(createInterface({input: parent.stdout}), 'line') as Promise<[string]>, 20_000, 'the supervisor starting its children')
      const {watched, control} = JSON.parse(line[0]) as {watched: number[]; control: number}
      leftovers.push(...watched, control)
      await within(new Promise<void>((resolve) => {
        arrived = () => {
          if ([...watched, control].every((p) => byPid.has(p))) resolve()
        }
        arrived()
      }), 20_000, 'every child connecting to the watch socket')
      for (const pid of watched) expect(isAlive(pid)).toBe(true)

      const closed = Promise.all(watched.map((pid) => once(byPid.get(pid)!, 'close')))
      parent.kill('SIGKILL')
      const result = await parent
      expect(result.signal).toBe('SIGKILL')

      await within(closed, 20_000, 'the children exiting after their parent')
      await within(Promise.all(watched.map(gone)), 20_000, 'the children being gone')
      // The control child, without the watch, is orphaned: still connected and running.
      expect(byPid.get(control)!.destroyed).toBe(false)
      expect(isAlive(control)).toBe(true)
    } finally {
      for (const s of byPid.values()) s.destroy()
      server.close()
    }
  })

  it('leave a child alone whose stdin is not a pipe, or that the supervisor did not start (nle run starts the same entry points)', async () => {
    const devNull = await execa(process.execPath, ['--import', PRELOAD, '-e', SEES_END], {env: {NLE_EXIT_WITH_PARENT: '1'}, stdin: 'ignore', reject: false})
    expect({signal: devNull.signal, out: devNull.stdout}).toEqual({signal: undefined, out: JSON.stringify({survived: true, env: null})})
    const unasked = await execa(process.execPath, ['--import', PRELOAD, '-e', SEES_END], {env: {NLE_EXIT_WITH_PARENT: undefined}, input: '', reject: false})
    expect({signal: unasked.signal, out: unasked.stdout}).toEqual({signal: undefined, out: JSON.stringify({survived: true, env: null})})
    // And the positive case, without a supervisor: the pipe ending stops the child.
    const asked = await execa(process.execPath, ['--import', PRELOAD, '-e', SEES_END], {env: {NLE_EXIT_WITH_PARENT: '1'}, input: '', reject: false})
    expect({signal: asked.signal, out: asked.stdout}).toEqual({signal: 'SIGTERM', out: ''})
  })
})
