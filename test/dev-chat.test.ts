// `nle dev` + `nle chat` as a user runs them: the dev stack in one process, the chat in another,
// and the TUI driven through a real terminal (tmux). Loopback and Unix sockets only.
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import OpenAI from 'openai'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {BIN, jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {processesMentioning} from '../src/test-support/processes.js'

const tmp = tempDir('nle-devchat-')
const project = join(tmp.dir, 'proj')
let dev: ChildProcess | undefined
let ready: Record<string, unknown> = {}
/** Everything `nle dev` and its children printed. */
let devOutput = ''

beforeAll(async () => {
  expect((await runCli(['init', project, '--name', 'devchat'])).exitCode).toBe(0)
  dev = spawn(process.execPath, [BIN, 'dev', '--json'], {cwd: project, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
  let stderr = ''
  dev.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
    devOutput += d.toString()
  })
  dev.stdout!.on('data', (d: Buffer) => (devOutput += d.toString()))
  ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nle dev not ready:\n${stderr}`)), 120_000)
    createInterface({input: dev!.stdout!}).once('line', (line) => {
      clearTimeout(timer)
      // The first line of --json: the `ready` event's envelope.
      const e = JSON.parse(line) as {event: string; result: Record<string, unknown>}
      resolve({event: e.event, ...e.result})
    })
    dev!.once('exit', (code) => reject(new Error(`nle dev exited ${code}:\n${stderr}`)))
  })
}, 180_000)

afterAll(async () => {
  // Stop nle dev the way a user does (SIGINT) so it stops its children; SIGKILL only as a last
  // resort (it would orphan them), then make sure nothing of this project is left running.
  if (dev && dev.exitCode === null) {
    const exited = new Promise((resolve) => dev!.once('exit', resolve))
    dev.kill('SIGINT')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))])
    if (dev.exitCode === null) dev.kill('SIGKILL')
  }
  for (const pid of processesMentioning(project)) process.kill(pid, 'SIGKILL')
  tmp.cleanup()
}, 30_000)

describe('nle dev', () => {
  it('prints its endpoints as one JSON line and publishes them for nle chat', () => {
    expect(ready).toMatchObject({event: 'ready', proxyUrl: expect.stringMatching(/^https:\/\/127\.0\.0\.1:\d+$/), kmsUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/)})
    expect(ready.enclaveSocket).toBe(join(project, '.nle/dev/enclave.sock'))
    expect(existsSync(join(project, '.nle/dev/endpoints.json'))).toBe(true)
    expect(existsSync(join(project, 'nle.lock.json'))).toBe(true)
  })
})

describe('nle chat --once against nle dev', () => {
  it('verifies, sends, streams the answer back; exit 0', async () => {
    const r = await runCli(['chat', '--once', 'Is a canary-7f3a question private?', '--max-tokens', '8', '--json'], {cwd: project})
    expect(r.exitCode, r.stderr).toBe(0)
    const out = jsonResult<{answer: string; attestation: {pcr0: string; root: string; debug: boolean}}>(r)
    expect(out.answer.length).toBeGreaterThan(0)
    const lock = JSON.parse(readFileSync(join(project, 'nle.lock.json'), 'utf8')) as {measurements: {PCR0: string}}
    expect(out.attestation).toMatchObject({pcr0: lock.measurements.PCR0, debug: false, root: expect.stringContaining('dev root')})
  })

  it('refuses to send when the enclave does not match the lockfile (exit 5)', async () => {
    const lock = JSON.parse(readFileSync(join(project, 'nle.lock.json'), 'utf8')) as {measurements: Record<string, string>}
    lock.measurements.PCR2 = 'ab'.repeat(48)
    const wrong = join(tmp.dir, 'wrong.lock.json')
    writeFileSync(wrong, JSON.stringify(lock))
    const r = await runCli(['chat', '--once', 'secret', '--lockfile', wrong], {cwd: project})
    expect(r.exitCode).toBe(5)
    expect(r.stderr).toContain('ATTEST_PCR_MISMATCH')
  })

  it('without the dev root, the simulator\'s documents are refused (only AWS is trusted)', async () => {
    const r = await runCli(['chat', '--once', 'hello', '--url', String(ready.proxyUrl), '--ca', String(ready.caFile)], {cwd: project})
    expect(r.exitCode).toBe(5)
    expect(r.stderr).toContain('ATTEST_ROOT_MISMATCH')
  })

  it('a question longer than the model\'s context: CLIENT_CONTEXT_TOO_LONG, exit 2, with what to do', async () => {
    const r = await runCli(['chat', '--once', 'pear '.repeat(400), '--max-tokens', '4'], {cwd: project})
    expect(r.exitCode, r.stderr).toBe(2)
    expect(r.stderr).toContain('CLIENT_CONTEXT_TOO_LONG')
    expect(r.stderr).toMatch(/shorter question/)
    const j = await runCli(['chat', '--once', 'pear '.repeat(400), '--max-tokens', '4', '--json'], {cwd: project})
    expect(j.exitCode).toBe(2)
    expect(jsonFailure<{context: number; promptTokens: number}>(j)).toMatchObject({code: 'CLIENT_CONTEXT_TOO_LONG', details: {context: 256, promptTokens: expect.any(Number)}})
  })

  it('with no target, says how to get one (exit 2)', async () => {
    const r = await runCli(['chat', '--once', 'hello'], {cwd: tmp.dir})
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('CHAT_NO_TARGET')
  })
})

describe('KMS mode against nle dev', () => {
  it('nle chat --once --mode kms: the question key is wrapped by the dev client identity and unwrapped in the enclave; exit 0', async () => {
    const r = await runCli(['chat', '--once', 'Is a canary-kms-51c2 question private?', '--mode', 'kms', '--max-tokens', '8', '--json'], {cwd: project})
    expect(r.exitCode, r.stderr).toBe(0)
    expect(jsonResult<{answer: string; mode: string}>(r)).toMatchObject({mode: 'kms', answer: expect.stringMatching(/.+/)})
  })

  it('nle gateway --mode kms serves the unmodified openai client, whole and streamed', async () => {
    const proc = spawn(process.execPath, [BIN, 'gateway', '--json', '--listen', '127.0.0.1:0', '--mode', 'kms'], {cwd: project, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
    let out = ''
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve))
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({input: proc.stdout!}).once('line', resolve)
        void exited.then((code) => reject(new Error(`gateway exited ${code}: ${out}`)))
      })
      const listening = JSON.parse(line) as {event: string; result: {url: string; mode: string; token: {file: string}; attestation: {status: string}}}
      expect(listening).toMatchObject({event: 'listening', result: {mode: 'kms', attestation: {status: 'verified'}}})
      const gw = listening.result
      // The gateway's access token (made in the project's .nle/gateway.token) is the API key.
      const apiKey = readFileSync(gw.token.file, 'utf8').trim()
      const client = new OpenAI({baseURL: `${gw.url}/v1`, apiKey, maxRetries: 0})
      const whole = await client.chat.completions.create({model: 'x', max_tokens: 8, messages: [{role: 'user', content: 'canary-kms-gw-93d1 whole'}]})
      expect(whole.choices[0]!.message.content!.length).toBeGreaterThan(0)
      let streamed = ''
      for await (const chunk of await client.chat.completions.create({model: 'x', max_tokens: 8, stream: true, messages: [{role: 'user', content: 'canary-kms-gw-93d1 streamed'}]})) streamed += chunk.choices[0]?.delta?.content ?? ''
      expect(streamed.length).toBeGreaterThan(0)
      const state = (await (await fetch(`${gw.url}/nle/attestation`, {headers: {authorization: `Bearer ${apiKey}`}})).json()) as {mode: string}
      expect(state.mode).toBe('kms')
    } finally {
      proc.kill('SIGINT')
      expect(await exited).toBe(0)
    }
    expect(out).not.toContain('canary-kms-gw-93d1')
    expect(devOutput).not.toContain('canary-kms')
  })
})

const hasTmux = spawnSync('tmux', ['-V']).status === 0
if (!hasTmux) console.warn('SKIP the chat TUI tests in a real terminal: tmux is not installed (Debian: apt-get install tmux; .ci/run installs it).')
describe.skipIf(!hasTmux)('nle chat TUI in a real terminal (tmux)', () => {
  /** A chat in a tmux session of this size, and ways to wait on its screen (events, never a fixed sleep). */
  const terminal = (session: string, cols: number, rows: number, maxTokens: number) => {
    const tmux = (...args: string[]): string => spawnSync('tmux', args, {encoding: 'utf8'}).stdout
    // `env -u CI`: Ink draws only a final frame when CI is set, and this terminal is interactive.
    spawnSync('tmux', ['new-session', '-d', '-s', session, '-x', String(cols), '-y', String(rows), '-c', project, `env -u CI ${process.execPath} ${BIN} chat --max-tokens ${maxTokens}; echo CHAT-EXITED-$?; sleep 30`])
    const screen = (): string => tmux('capture-pane', '-p', '-J', '-t', session)
    const waitUntil = async (what: string, check: (s: string) => boolean): Promise<string> => {
      const end = Date.now() + 45_000
      for (;;) {
        const s = screen()
        if (check(s)) return s
        if (Date.now() > end) throw new Error(`never ${what}:\n${s}`)
        await new Promise((r) => setTimeout(r, 200))
      }
    }
    const waitFor = async (text: string): Promise<string> => waitUntil(`"${text}" on screen`, (s) => s.includes(text))
    /** Waits for the answer to a question that starts with `marker`: the question is filed and the prompt is back, empty, below it. */
    const answered = async (marker: string): Promise<string> =>
      waitUntil(`the answer after "${marker}"`, (s) => s.includes(marker) && !s.includes('answering…') && /^› *$/m.test(s.slice(s.lastIndexOf('╰'))))
    const close = (): void => void spawnSync('tmux', ['kill-session', '-t', session])
    return {tmux, screen, waitUntil, waitFor, answered, close}
  }

  it('shows the verified header, streams an answer to a typed question, and quits on /quit', async () => {
    const session = `nle-test-${process.pid}`
    const {tmux, waitFor, answered, close} = terminal(session, 120, 40, 8)
    try {
      expect(await waitFor('attestation verified')).toContain('PCR0')
      tmux('send-keys', '-t', session, '-l', 'hello from a terminal')
      tmux('send-keys', '-t', session, 'Enter')
      // Typed while the answer streams, /quit would be dropped: wait until it is filed.
      await answered('› hello from a terminal')
      tmux('send-keys', '-t', session, '-l', '/quit')
      await waitFor('› /quit') // typed into the prompt (not swallowed while busy)
      tmux('send-keys', '-t', session, 'Enter')
      expect(await waitFor('CHAT-EXITED-')).toContain('CHAT-EXITED-0')
    } finally {
      close()
    }
  }, 120_000)

  it('takes input that arrives in one read: text+Enter, a bracketed paste, backspaces; keeps within the context; re-lays out when narrower', async () => {
    const session = `nle-test-chunks-${process.pid}`
    const {tmux, screen, waitUntil, waitFor, answered, close} = terminal(session, 120, 50, 4)
    try {
      await waitFor('attestation verified')
      // Text and Enter in one send-keys: one write to the terminal.
      tmux('send-keys', '-t', session, 'one read then Enter', 'Enter')
      await answered('› one read then Enter')
      // Backspaces arriving together each delete one character.
      tmux('send-keys', '-t', session, 'helxx', 'BSpace', 'BSpace', 'lo there', 'Enter')
      let s = await answered('› hello there')
      expect(s).not.toMatch(/helxx|\^\?/)
      // A paste through tmux's paste buffer, bracketed (-p) since the chat asked for it: one
      // question with its line break, sent by the Enter after it.
      tmux('set-buffer', '-b', 'nle-test', 'first pasted line\nsecond pasted line')
      tmux('paste-buffer', '-p', '-d', '-b', 'nle-test', '-t', session)
      await waitFor('second pasted line')
      expect(screen()).not.toContain('answering…') // the line break in the paste did not send it
      tmux('send-keys', '-t', session, 'Enter')
      s = await answered('› first pasted line\nsecond pasted line')
      expect(s).not.toMatch(/\[20[01]~|linee/)
      expect(s).not.toContain('\u001B')
      // Two questions of ~150 tokens each do not fit the tiny model's 256: the oldest turn goes.
      const long = (tag: string): string => `${tag} ${'apple '.repeat(150).trim()}`
      tmux('send-keys', '-t', session, '-l', long('LONG-A'))
      tmux('send-keys', '-t', session, 'Enter')
      await answered('› LONG-A')
      tmux('send-keys', '-t', session, '-l', long('LONG-B'))
      tmux('send-keys', '-t', session, 'Enter')
      s = await waitFor("to fit the model's context of 256 tokens")
      expect(s).toMatch(/dropped \d+ oldest turns? to fit/)
      s = await answered('› LONG-B')
      expect(s).not.toContain('CLIENT_CONTEXT_TOO_LONG')
      // Narrower: one header, laid out for the new width.
      tmux('resize-window', '-t', session, '-x', '70')
      s = await waitUntil('the header redrawn at 70 columns', (x) => x.split('\n').some((l) => l.startsWith('╭') && [...l.trimEnd()].length <= 70))
      expect(s.split('nle chat ·').length - 1).toBe(1)
      tmux('send-keys', '-t', session, '/quit', 'Enter')
      expect(await waitFor('CHAT-EXITED-')).toContain('CHAT-EXITED-0')
    } finally {
      close()
    }
  }, 180_000)
})

describe('stopping nle dev', () => {
  it('on SIGINT stops every child, removes its endpoints, and exits 0', async () => {
    const exited = new Promise<number | null>((resolve) => dev!.once('exit', (code) => resolve(code)))
    dev!.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(processesMentioning(project)).toEqual([])
    expect(existsSync(join(project, '.nle/dev/endpoints.json'))).toBe(false)
  })
})
