// End to end: client → parent proxy (HTTPS / loopback HTTP) → byte tap → enclave server (NSM
// simulator) as child processes on Unix sockets and loopback. The tap records every byte the proxy
// relays to and from the enclave, and can corrupt one in transit.
import {createHash, randomBytes} from 'node:crypto'
import {cp, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {type ChatCompletionChunk, NleClient, type NleClientOptions} from '../src/lib/client/index.js'
import {type Lockfile, writeLockfile} from '../src/lib/lockfile.js'
import {saveModel, synthModel} from '../src/lib/model/index.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type Child, Tap, fdCount, settle, startRuntime} from './e2e-support.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const lockfile = (label: string): Lockfile => ({
  version: 1,
  measurements: {PCR0: digest(`${label}0`), PCR1: digest(`${label}1`), PCR2: digest(`${label}2`)},
  eif: {sha384: digest(label), size: 1, version: 4, signed: false},
  builder: {name: 'e2e', version: '0'},
  inputs: {},
})

const CANARY = `CANARY-${randomBytes(8).toString('hex')}`
let dir: string
let cleanup: () => void
let serverA: Child
let serverB: Child
let proxy: Child
let tap: Tap
let httpsUrl: string
let httpUrl: string
let ca: string
const lock = {a: '', b: ''}
const root = {a: '', b: ''}
const clients: NleClient[] = []

async function client(target: string, which: 'a' | 'b', expect: 'a' | 'b' = which, extra: Partial<NleClientOptions> = {}): Promise<NleClient> {
  const c = await NleClient.fromLockfile(lock[expect], {target, insecureDevRoot: insecureDevRoot(root[which]), ...(target.startsWith('https') ? {tls: {ca}} : {}), ...extra})
  clients.push(c)
  return c
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<{text: string; chunks: number; finish: string | null}> {
  let text = ''
  let chunks = 0
  let finish: string | null = null
  for await (const c of stream) {
    chunks++
    text += c.choices[0]?.delta.content ?? ''
    finish = c.choices[0]?.finish_reason ?? finish
  }
  return {text, chunks, finish}
}

const posts = (): number => Buffer.concat(tap.toEnclave).toString('latin1').split('POST /v1/chat/completions').length - 1

beforeAll(async () => {
  ;({dir, cleanup} = tempDir('nle-e2e-'))
  lock.a = join(dir, 'a.lock.json')
  lock.b = join(dir, 'b.lock.json')
  await writeLockfile(lock.a, lockfile('image A'))
  await writeLockfile(lock.b, lockfile('image B'))
  // The real tiny model (with its manifest) for server B.
  await synthModel({preset: 'tiny', outDir: join(dir, 'synth')})
  await saveModel({source: join(dir, 'synth'), outDir: join(dir, 'model')})

  serverA = startRuntime('enclave-server', ['--socket', join(dir, 'a.sock'), '--engine', 'echo', '--token-delay-ms', '5', '--nsm', 'simulator', '--lockfile', lock.a, '--sim-root-out', join(dir, 'a.pem')])
  serverB = startRuntime('enclave-server', ['--socket', join(dir, 'b.sock'), '--model', join(dir, 'model'), '--max-tokens', '16', '--nsm', 'simulator', '--lockfile', lock.b, '--sim-root-out', join(dir, 'b.pem')])
  tap = new Tap(join(dir, 'tap.sock'), join(dir, 'a.sock'))
  await tap.start()
  proxy = startRuntime('parent-proxy', [
    '--upstream', `unix:${join(dir, 'tap.sock')}`,
    '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--self-signed', join(dir, 'tls'),
    '--concurrency', '4', '--queue', '4', '--body-limit', '65536', '--upstream-timeout', '15s', '--drain-timeout', '5s',
  ])
  const listening = await proxy.waitFor('listening')
  httpsUrl = `https://${String(listening.https)}`
  httpUrl = `http://${String(listening.http)}`
  await Promise.all([serverA.waitFor('listening'), serverB.waitFor('listening')])
  ca = await readFile(join(dir, 'tls', 'cert.pem'), 'utf8')
  root.a = await readFile(join(dir, 'a.pem'), 'utf8')
  root.b = await readFile(join(dir, 'b.pem'), 'utf8')
}, 90_000)

afterAll(async () => {
  for (const c of clients) c.close()
  for (const child of [serverA, serverB, proxy]) if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL')
  await tap?.stop()
  cleanup?.()
})

describe('secure channel end to end', () => {
  it('the model server says how it loaded the model: threads, and the last-position LM head', () => {
    const line = serverB.output().split('\n').find((l) => l.includes('"event":"model_loaded"'))
    expect(line).toBeDefined()
    expect(JSON.parse(line!)).toMatchObject({lastLogitsOnly: true, threads: expect.any(Number), ms: expect.any(Number)})
  })

  it('answers through the proxy (HTTPS) and no plaintext reaches any log or the relayed bytes', async () => {
    const c = await client(httpsUrl, 'a')
    const whole = await c.chat({messages: [{role: 'user', content: `Is ${CANARY} covered by my plan?`}]})
    expect(whole.choices[0]!.message.content).toContain(CANARY)
    const streamed = await collect(c.chatStream({messages: [{role: 'user', content: `And ${CANARY} in streaming?`}]}))
    expect(streamed.text).toBe(`Echo: And ${CANARY} in streaming?`)
    expect(streamed.chunks).toBeGreaterThan(4) // role chunk, one per word, final chunk
    expect(streamed.finish).toBe('stop')
    // Over loopback HTTP too.
    const plain = await client(httpUrl, 'a')
    expect((await plain.chat({messages: [{role: 'user', content: CANARY}]})).choices[0]!.message.content).toBe(`Echo: ${CANARY}`)

    expect(posts()).toBe(3)
    for (const visible of [tap.bytes().toString('latin1'), proxy.output(), serverA.output()]) {
      expect(visible).not.toContain(CANARY)
      expect(visible).not.toContain('covered by my plan')
    }
    expect(proxy.output()).toContain('"event":"access"')
  })

  it('a byte flipped in transit gives a clear client error and the server keeps serving', async () => {
    const c = await client(httpUrl, 'a')
    await c.attest()
    tap.corruptNextRequestBody = true
    await expect(c.chat({messages: [{role: 'user', content: 'tampered question'}]})).rejects.toMatchObject({
      code: 'CLIENT_REQUEST_REFUSED',
      details: {serverCode: 'CHANNEL_REQUEST_AUTH_FAILED'},
    })
    tap.corruptNextStreamChunk = true
    await expect(collect(c.chatStream({messages: [{role: 'user', content: 'tampered answer'}]}))).rejects.toMatchObject({code: 'CHANNEL_RESPONSE_AUTH_FAILED'})
    expect(serverA.proc.exitCode).toBeNull()
    expect((await c.chat({messages: [{role: 'user', content: 'still there?'}]})).choices[0]!.message.content).toBe('Echo: still there?')
  })

  it('refuses to send anything to an enclave whose PCRs differ from the lockfile', async () => {
    const before = posts()
    const c = await client(httpUrl, 'a', 'b') // expects image B, proxy serves image A
    await expect(c.chat({messages: [{role: 'user', content: CANARY}]})).rejects.toMatchObject({code: 'ATTEST_PCR_MISMATCH'})
    expect(posts()).toBe(before)
  })

  it('100 concurrent requests: each answered or refused with 429, none lost, no fd leak', async () => {
    const c = await client(httpUrl, 'a')
    await c.attest()
    const proxyFds = fdCount(proxy.pid)
    const serverFds = fdCount(serverA.pid)
    const results = await Promise.allSettled(Array.from({length: 100}, (_, i) => c.chat({messages: [{role: 'user', content: `question ${i}`}]})))
    let answered = 0
    let limited = 0
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        expect(r.value.choices[0]!.message.content).toBe(`Echo: question ${i}`)
        answered++
      } else {
        expect(r.reason).toMatchObject({code: 'CLIENT_RATE_LIMITED'})
        limited++
      }
    })
    expect(answered + limited).toBe(100)
    expect(answered).toBeGreaterThanOrEqual(4)
    c.close()
    expect(await settle(() => fdCount(proxy.pid), (n) => n <= proxyFds)).toBeLessThanOrEqual(proxyFds)
    expect(await settle(() => fdCount(serverA.pid), (n) => n <= serverFds)).toBeLessThanOrEqual(serverFds)
  })

  it('streams from the real tiny model over the enclave socket', async () => {
    const c = await client(`unix:${join(dir, 'b.sock')}`, 'b')
    const r = await collect(c.chatStream({messages: [{role: 'user', content: 'Hello'}], max_tokens: 8, temperature: 0}))
    expect(r.chunks).toBeGreaterThanOrEqual(3)
    expect(['stop', 'length']).toContain(r.finish)
  })

  it('refuses to start on a model whose files differ from the manifest (exit 5)', async () => {
    await cp(join(dir, 'model'), join(dir, 'bad-model'), {recursive: true})
    const config = join(dir, 'bad-model', 'config.json')
    await writeFile(config, (await readFile(config, 'utf8')).replace('{', '{ '))
    const bad = startRuntime('enclave-server', ['--socket', join(dir, 'bad.sock'), '--model', join(dir, 'bad-model'), '--nsm', 'simulator'])
    expect(await bad.exited).toBe(5)
    expect(bad.output()).toContain('SERVER_MODEL_DIGEST_MISMATCH')
  })

  it('the enclave server killed mid-stream gives a clear client error; then 502', async () => {
    const c = await client(httpUrl, 'a')
    const long = Array.from({length: 400}, (_, i) => `w${i}`).join(' ')
    const seen: string[] = []
    const outcome = (async () => {
      for await (const chunk of c.chatStream({messages: [{role: 'user', content: long}], max_tokens: 2000})) {
        seen.push(chunk.choices[0]?.delta.content ?? '')
        if (seen.length === 3) serverA.proc.kill('SIGKILL')
      }
    })()
    await expect(outcome).rejects.toMatchObject({code: expect.stringMatching(/^(CLIENT_STREAM_INTERRUPTED|CHANNEL_TRUNCATED)$/)})
    expect(seen.length).toBeLessThan(400)
    await serverA.exited
    await expect(c.chat({messages: [{role: 'user', content: 'anyone?'}]})).rejects.toMatchObject({code: 'CLIENT_ENCLAVE_UNAVAILABLE'})
    expect(proxy.proc.exitCode).toBeNull()
  })

  it('SIGTERM drains and exits 0 (enclave server and proxy)', async () => {
    serverB.proc.kill('SIGTERM')
    proxy.proc.kill('SIGTERM')
    expect(await serverB.exited).toBe(0)
    expect(await proxy.exited).toBe(0)
    expect(serverB.output()).toContain('"event":"drained"')
    expect(proxy.output()).toContain('"event":"drained"')
  })
})
