// `nle dev` owns its folder and attests what it runs: one stack per folder (a second one refuses
// with the first one's pid and leaves it working; a stale lock is recovered), a failing child's
// stderr tail is printed (and holds no question), and the EIF and the model are checked against
// the lockfile before anything starts. Real processes, loopback and Unix sockets only.
import {type ChildProcess, spawn} from 'node:child_process'
import {copyFileSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {setTimeout as sleep} from 'node:timers/promises'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {isAlive} from '../src/lib/host/processes.js'
import {BIN, jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {processesMentioning} from '../src/test-support/processes.js'

const tmp = tempDir('nle-devstack-')
const project = join(tmp.dir, 'proj')
const CANARY = 'canary-devstack-5e81'

interface Dev {
  proc: ChildProcess
  ready: Record<string, unknown>
  /** Everything it printed on stdout and stderr. */
  output(): string
  stdout(): string
  exited: Promise<number | null>
}

let dev: Dev | undefined

async function startDev(): Promise<Dev> {
  const proc = spawn(process.execPath, [BIN, 'dev', '--json'], {cwd: project, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
  let out = ''
  let stdout = ''
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    stdout += d.toString()
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    // The first line of --json: the `ready` event's envelope.
    createInterface({input: proc.stdout!}).once('line', (line) => {
      const e = JSON.parse(line) as {event: string; result: Record<string, unknown>}
      resolve({event: e.event, ...e.result})
    })
    void exited.then((code) => reject(new Error(`nle dev exited ${code}:\n${out}`)))
  })
  return {proc, ready, output: () => out, stdout: () => stdout, exited}
}

beforeAll(async () => {
  expect((await runCli(['init', project, '--name', 'devstack'])).exitCode).toBe(0)
  // A lock left by an nle dev that died (its pid is gone): recovered, not obeyed.
  const gone = spawn(process.execPath, ['-e', ''], {stdio: 'ignore'})
  await new Promise((resolve) => gone.once('exit', resolve))
  mkdirSync(join(project, '.nle', 'dev'), {recursive: true})
  writeFileSync(join(project, '.nle', 'dev', 'lock'), JSON.stringify({pid: gone.pid, startedAt: '2026-01-01T00:00:00.000Z'}))
  dev = await startDev()
}, 180_000)

afterAll(async () => {
  if (dev && dev.proc.exitCode === null) {
    dev.proc.kill('SIGINT')
    await dev.exited
  }
  for (const pid of processesMentioning(project)) process.kill(pid, 'SIGKILL')
  tmp.cleanup()
}, 30_000)

describe('one nle dev per folder', () => {
  it('started over a stale lock, it holds the lock itself', () => {
    expect(dev!.ready).toMatchObject({event: 'ready', pid: dev!.proc.pid})
    expect(JSON.parse(readFileSync(join(project, '.nle', 'dev', 'lock'), 'utf8'))).toMatchObject({pid: dev!.proc.pid})
  })

  it('a second nle dev refuses with the first one\'s pid; the first keeps its sockets and still answers', async () => {
    const second = await runCli(['dev', '--json'], {cwd: project})
    expect(second.exitCode).toBe(1)
    const error = jsonFailure<{pid: number}>(second)
    expect(error).toMatchObject({code: 'DEV_ALREADY_RUNNING', details: {pid: dev!.proc.pid}})
    const human = await runCli(['dev'], {cwd: project})
    expect(human.stderr).toContain('DEV_ALREADY_RUNNING')
    expect(human.stderr).toContain(`pid ${dev!.proc.pid}`)
    for (const f of ['endpoints.json', 'enclave.sock', 'credentials.sock', 'lock']) expect(existsSync(join(project, '.nle', 'dev', f)), f).toBe(true)
    const chat = await runCli(['chat', '--once', `${CANARY} still there?`, '--max-tokens', '4', '--json'], {cwd: project})
    expect(chat.exitCode, chat.stderr).toBe(0)
  })
})

describe('nle dev attests what it runs', () => {
  it('the simulator attests the PCRs nle measures in the EIF', async () => {
    const chat = await runCli(['chat', '--once', 'hello', '--max-tokens', '2', '--json'], {cwd: project})
    expect(chat.exitCode, chat.stderr).toBe(0)
    const described = await runCli(['eif', 'describe', join(project, 'build', 'enclave.eif'), '--json'], {cwd: project})
    const pcr0 = jsonResult<{Measurements: {PCR0: string}}>(described).Measurements.PCR0
    expect(jsonResult<{attestation: {pcr0: string}}>(chat).attestation.pcr0).toBe(pcr0)
  })
})

describe('a dev child that fails', () => {
  it('ends nle dev with the end of that child\'s stderr, which holds no question', async () => {
    const [server] = processesMentioning('enclave-server', project)
    expect(server).toBeDefined()
    process.kill(server!, 'SIGKILL')
    expect(await dev!.exited).toBe(1)
    // stdout: the ready line, then the error line, as --json prints them.
    const lines = dev!.stdout().trim().split('\n').map((l) => JSON.parse(l) as {ok: boolean; event: string; exitCode: number; error: {code: string; details: {stderrTail: string}}})
    expect(lines.map((l) => [l.event, l.ok, l.exitCode])).toEqual([['ready', true, 0], ['error', false, 1]])
    const error = lines[1]!.error
    expect(error.code).toBe('DEV_CHILD_FAILED')
    // The server's own (content-free) log lines: its start and the requests it served.
    expect(error.details.stderrTail).toContain('"event":"listening"')
    expect(dev!.output()).not.toContain(CANARY)
    // The stopped stack leaves the folder free.
    expect(existsSync(join(project, '.nle', 'dev', 'lock'))).toBe(false)
    expect(existsSync(join(project, '.nle', 'dev', 'endpoints.json'))).toBe(false)
  }, 60_000)
})

describe('nle dev killed with SIGKILL', () => {
  it('leaves none of its children running (they see their stdin pipe close), and the next nle dev starts', async () => {
    // One per folder: the stack of beforeAll must be gone (a test above ends it; alone, this one does).
    if (dev && dev.proc.exitCode === null) {
      dev.proc.kill('SIGINT')
      await dev.exited
    }
    const killed = await startDev()
    const children = processesMentioning(project).filter((pid) => pid !== killed.proc.pid)
    // The enclave server and the parent proxy (the local KMS runs inside nle itself).
    expect(children).toHaveLength(2)
    killed.proc.kill('SIGKILL')
    await killed.exited
    // No JavaScript ran in nle after the signal: only the children's own watch can end them.
    // Waits for them to go, failing (with their pids) if they are still there after a bound.
    const bound = Date.now() + 30_000
    let left = children.filter(isAlive)
    while (left.length > 0 && Date.now() < bound) {
      await sleep(20)
      left = left.filter(isAlive)
    }
    expect(left, 'children of the killed nle dev still running').toEqual([])
    expect(processesMentioning(project).filter(isAlive)).toEqual([])
    const next = await startDev()
    next.proc.kill('SIGINT')
    expect(await next.exited).toBe(0)
  }, 120_000)
})

describe('before it starts, nle dev checks the EIF and the model against the lockfile', () => {
  const refusal = async (): Promise<{exitCode: number; code: string}> => {
    const r = await runCli(['dev', '--json'], {cwd: project})
    expect(processesMentioning('enclave-server', project)).toEqual([])
    expect(existsSync(join(project, '.nle', 'dev', 'lock'))).toBe(false)
    return {exitCode: r.exitCode, code: jsonFailure(r).code}
  }
  const keep = (file: string): (() => void) => {
    const saved = `${file}.saved`
    copyFileSync(file, saved)
    return () => copyFileSync(saved, file)
  }

  it('a lockfile whose PCR0 is not the EIF\'s', async () => {
    const file = join(project, 'nle.lock.json')
    const restore = keep(file)
    const lock = JSON.parse(readFileSync(file, 'utf8')) as {measurements: {PCR0: string}}
    lock.measurements.PCR0 = 'ab'.repeat(48)
    writeFileSync(file, JSON.stringify(lock))
    expect(await refusal()).toEqual({exitCode: 5, code: 'DEV_LOCKFILE_MISMATCH'})
    restore()
  }, 60_000)

  it('a model file changed since the build', async () => {
    const manifest = JSON.parse(readFileSync(join(project, 'model', 'nle-model.json'), 'utf8')) as {files: {path: string}[]}
    const file = join(project, 'model', manifest.files[0]!.path)
    const restore = keep(file)
    writeFileSync(file, readFileSync(file).subarray(1))
    expect(await refusal()).toEqual({exitCode: 5, code: 'DEV_MODEL_CHANGED'})
    restore()
  }, 60_000)

  it('a truncated EIF', async () => {
    const file = join(project, 'build', 'enclave.eif')
    const restore = keep(file)
    truncateSync(file, Math.floor(readFileSync(file).length / 2))
    const r = await refusal()
    expect(r.code).toMatch(/^EIF_/)
    expect(r.exitCode).not.toBe(0)
    restore()
  }, 60_000)
})
