// `nle gateway` end to end: the official `openai` client → gateway (loopback HTTP) → parent proxy
// (HTTPS, self-signed) → byte tap → enclave server (NSM simulator, echo engine), all child processes
// on Unix sockets and loopback (the harness of e2e-channel.test.ts). A fake proxy on a Unix socket
// (attestation relayed to the real enclave, chat answered with a chosen status) covers 429/504.
import {spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {type Server, createServer, request as httpRequest} from 'node:http'
import {statSync} from 'node:fs'
import {copyFile, mkdir, readFile, realpath} from 'node:fs/promises'
import {join} from 'node:path'

import OpenAI from 'openai'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {NleClient} from '../src/lib/client/index.js'
import {type Gateway, type GatewayEvent, startGateway} from '../src/lib/gateway/index.js'
import {writeEndpoints} from '../src/lib/dev/endpoints.js'
import {type Lockfile, writeLockfile} from '../src/lib/lockfile.js'
import {fakeNleDev} from '../src/test-support/fake-dev.js'
import {tempDir} from '../src/test-support/tmp.js'
import {BIN, REPO_ROOT, jsonFailure, runCli} from '../src/test-support/cli.js'
import {type Child, Tap, startRuntime} from './e2e-support.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const lockfile = (label: string): Lockfile => ({
  version: 1,
  measurements: {PCR0: digest(`${label}0`), PCR1: digest(`${label}1`), PCR2: digest(`${label}2`)},
  eif: {sha384: digest(label), size: 1, version: 4, signed: false},
  builder: {name: 'gateway-test', version: '0'},
  inputs: {},
})

const CANARY = `CANARY-${randomBytes(8).toString('hex')}`
let dir: string
let cleanup: () => void
let server: Child
let proxy: Child
let tap: Tap
let httpsUrl: string
let ca: string
let root: string
const lock = {good: '', other: ''}
const gateways: Gateway[] = []
const events: GatewayEvent[] = []
let fake: Server
let fakeStatus = 429
let fakeChatHits = 0

async function gateway(target: string, which: 'good' | 'other' = 'good', listen = '127.0.0.1:0'): Promise<{url: string; gateway: Gateway}> {
  const client = await NleClient.fromLockfile(lock[which], {target, insecureDevRoot: insecureDevRoot(root), ...(target.startsWith('https') ? {tls: {ca}} : {})})
  const g = await startGateway({upstream: client, upstreamDisplay: target, listen, token: TOKEN, log: (e) => events.push(e)})
  gateways.push(g.gateway)
  return g
}

// Every request carries the gateway's access token: the OpenAI SDK sends its API key as the bearer token.
const TOKEN = `gw-test-${randomBytes(16).toString('hex')}`
const openai = (url: string, apiKey = TOKEN): OpenAI => new OpenAI({baseURL: `${url}/v1`, apiKey, maxRetries: 0})
const authed = (url: string, init: RequestInit = {}): Promise<Response> => fetch(url, {...init, headers: {authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string> | undefined)}})
const posts = (): number => Buffer.concat(tap.toEnclave).toString('latin1').split('POST /v1/chat/completions').length - 1

beforeAll(async () => {
  ;({dir, cleanup} = tempDir('nle-gateway-'))
  lock.good = join(dir, 'good.lock.json')
  lock.other = join(dir, 'other.lock.json')
  await writeLockfile(lock.good, lockfile('image good'))
  await writeLockfile(lock.other, lockfile('image other'))
  server = startRuntime('enclave-server', ['--socket', join(dir, 'enclave.sock'), '--engine', 'echo', '--nsm', 'simulator', '--lockfile', lock.good, '--sim-root-out', join(dir, 'root.pem')])
  tap = new Tap(join(dir, 'tap.sock'), join(dir, 'enclave.sock'))
  await tap.start()
  proxy = startRuntime('parent-proxy', [
    '--upstream', `unix:${join(dir, 'tap.sock')}`,
    '--host', '127.0.0.1', '--port', '0', '--self-signed', join(dir, 'tls'),
    '--concurrency', '4', '--queue', '4', '--body-limit', '65536', '--upstream-timeout', '15s', '--drain-timeout', '2s',
  ])
  httpsUrl = `https://${String((await proxy.waitFor('listening')).https)}`
  await server.waitFor('listening')
  ca = await readFile(join(dir, 'tls', 'cert.pem'), 'utf8')
  root = await readFile(join(dir, 'root.pem'), 'utf8')
  // The fake proxy: attestation relayed to the real enclave, chat answered with `fakeStatus`.
  fake = createServer((req, res) => {
    if (req.method === 'GET') {
      const up = httpRequest({socketPath: join(dir, 'enclave.sock'), method: 'GET', path: req.url}, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.pipe(res)
      })
      up.end()
      return
    }
    fakeChatHits++
    req.resume()
    res.writeHead(fakeStatus, {'content-type': 'application/json', ...(fakeStatus === 429 ? {'retry-after': '7'} : {})})
    res.end(JSON.stringify({error: {code: fakeStatus === 429 ? 'PROXY_BUSY' : 'PROXY_UPSTREAM_TIMEOUT', message: 'fake'}}))
  })
  await new Promise<void>((resolve) => fake.listen(join(dir, 'fake.sock'), resolve))
}, 90_000)

afterAll(async () => {
  for (const g of gateways) await g.stop().catch(() => undefined)
  for (const child of [server, proxy]) if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL')
  await tap?.stop()
  await new Promise<void>((resolve) => (fake ? fake.close(() => resolve()) : resolve()))
  cleanup?.()
})

describe('nle gateway', () => {
  it('the official openai client completes a chat and a streaming chat; no plaintext reaches proxy, enclave logs or the access log', async () => {
    const {url} = await gateway(httpsUrl)
    const client = openai(url)
    const whole = await client.chat.completions.create({model: 'anything', messages: [{role: 'user', content: `Is ${CANARY} covered?`}]})
    expect(whole.object).toBe('chat.completion')
    expect(whole.choices[0]!.message.content).toBe(`Echo: Is ${CANARY} covered?`)
    expect(whole.choices[0]!.finish_reason).toBe('stop')
    expect(whole.usage!.total_tokens).toBeGreaterThan(0)

    const stream = await client.chat.completions.create({model: 'anything', stream: true, stream_options: {include_usage: true}, messages: [{role: 'user', content: [{type: 'text', text: `And ${CANARY} streamed?`}]}]})
    let text = ''
    let finish: string | null = null
    let usage = 0
    let chunks = 0
    for await (const chunk of stream) {
      chunks++
      text += chunk.choices[0]?.delta.content ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
      usage = chunk.usage?.total_tokens ?? usage
    }
    expect(text).toBe(`Echo: And ${CANARY} streamed?`)
    expect(chunks).toBeGreaterThan(4)
    expect(finish).toBe('stop')
    expect(usage).toBeGreaterThan(0)

    const legacy = await client.completions.create({model: 'anything', prompt: `Complete ${CANARY}`})
    expect(legacy.object).toBe('text_completion')
    expect(legacy.choices[0]!.text).toBe(`Echo: Complete ${CANARY}`)

    const models = await client.models.list()
    expect(models.data.map((m) => m.id)).toEqual(['nle-enclave']) // one stable id (the CLI derives it from the lockfile)

    // The Responses API, whole and streamed, through the official client's own types and event parser.
    const response = await client.responses.create({model: 'anything', input: `Respond ${CANARY}`, store: false})
    expect(response.status).toBe('completed')
    expect(response.output_text).toBe(`Echo: Respond ${CANARY}`)
    const seen: string[] = []
    let streamed = ''
    for await (const event of await client.responses.create({model: 'anything', input: [{role: 'user', content: [{type: 'input_text', text: `Stream ${CANARY}`}]}], stream: true})) {
      seen.push(event.type)
      if (event.type === 'response.output_text.delta') streamed += event.delta
    }
    expect(streamed).toBe(`Echo: Stream ${CANARY}`)
    expect(seen[0]).toBe('response.created')
    expect(seen.at(-1)).toBe('response.completed')

    const logged = JSON.stringify(events)
    for (const visible of [tap.bytes().toString('latin1'), proxy.output(), server.output(), logged]) {
      expect(visible).not.toContain(CANARY)
      expect(visible).not.toContain('covered?')
    }
    expect(events.filter((e) => e.event === 'access').map((e) => e.event === 'access' && e.route)).toContain('/v1/chat/completions')
  })

  it('raw HTTP (curl-style) works: JSON, SSE in OpenAI format ending with [DONE], text completions stream', async () => {
    const {url} = await gateway(httpsUrl)
    const post = (path: string, body: unknown): Promise<Response> => authed(`${url}${path}`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)})
    const r = await post('/v1/chat/completions', {model: 'x', messages: [{role: 'system', content: 'be brief'}, {role: 'user', content: 'hello there'}]})
    expect(r.status).toBe(200)
    expect(((await r.json()) as {choices: {message: {content: string}}[]}).choices[0]!.message.content).toBe('Echo: hello there')

    const s = await post('/v1/chat/completions', {messages: [{role: 'user', content: 'one two'}], stream: true})
    expect(s.status).toBe(200)
    expect(s.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const raw = await s.text()
    expect(raw.endsWith('data: [DONE]\n\n')).toBe(true)
    const events = raw.split('\n\n').filter(Boolean)
    for (const e of events) expect(e).toMatch(/^data: /)
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)) as {object: string; choices: {delta: {content?: string}}[]})
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Echo: one two')

    const t = await post('/v1/completions', {prompt: 'three four', stream: true})
    const tRaw = await t.text()
    expect(tRaw.endsWith('data: [DONE]\n\n')).toBe(true)
    const tChunks = tRaw.split('\n\n').filter((e) => e && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)) as {object: string; choices: {text: string}[]})
    expect(tChunks.every((c) => c.object === 'text_completion')).toBe(true)
    expect(tChunks.map((c) => c.choices[0]!.text).join('')).toBe('Echo: three four')

    // Bad requests: 400 in OpenAI's error shape, nothing forwarded.
    const before = posts()
    for (const body of ['{not json', JSON.stringify({messages: []}), JSON.stringify({messages: [{role: 'critic', content: 'x'}]}), JSON.stringify({messages: [{role: 'user', content: 'x'}], temperature: 9})]) {
      const b = await authed(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json'}, body})
      expect(b.status).toBe(400)
      expect(await b.json()).toMatchObject({error: {type: 'invalid_request_error', code: 'GATEWAY_BAD_REQUEST', message: expect.any(String)}})
    }
    expect(posts()).toBe(before)
    expect((await authed(`${url}/v1/embeddings`, {method: 'POST', body: '{}'})).status).toBe(404)
    expect((await authed(`${url}/v1/chat/completions`)).status).toBe(405)
    // A page elsewhere (Origin) is refused.
    expect((await authed(`${url}/v1/models`, {headers: {origin: 'https://evil.example'}})).status).toBe(403)
  })

  it('GET /nle/attestation shows what was verified', async () => {
    const {url} = await gateway(httpsUrl)
    const r = await authed(`${url}/nle/attestation`)
    expect(r.status).toBe(200)
    const state = (await r.json()) as Record<string, unknown> & {pcrs: Record<string, string>}
    const expected = lockfile('image good').measurements
    expect(state).toMatchObject({status: 'verified', mode: 'attested', upstream: httpsUrl, root: 'insecure-dev-root', debug: false, reason: 'start', moduleId: expect.any(String)})
    expect(state.pcrs.PCR0).toBe(expected.PCR0)
    expect(state.pcrs.PCR1).toBe(expected.PCR1)
    expect(state.pcrs.PCR2).toBe(expected.PCR2)
    expect(Number.isNaN(Date.parse(String(state.verifiedAt)))).toBe(false)
    expect(Number.isNaN(Date.parse(String(state.documentTime)))).toBe(false)
    const fresh = (await (await authed(`${url}/nle/attestation?fresh=1`)).json()) as Record<string, unknown>
    expect(fresh).toMatchObject({status: 'verified', reason: 'requested'})
  })

  it('PCRs differ from the lockfile: 503 in OpenAI shape for every route, and nothing reaches the enclave', async () => {
    const before = posts()
    const {url, gateway: g} = await gateway(httpsUrl, 'other')
    expect(g.state()).toMatchObject({status: 'failed', error: {code: 'ATTEST_PCR_MISMATCH', type: 'attestation_error'}})
    const client = openai(url)
    const refused = await client.chat.completions.create({model: 'x', messages: [{role: 'user', content: CANARY}]}).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.APIError)
    expect(refused).toMatchObject({status: 503, code: 'ATTEST_PCR_MISMATCH', type: 'attestation_error'})
    const streamRefused = await client.chat.completions.create({model: 'x', stream: true, messages: [{role: 'user', content: CANARY}]}).catch((e: unknown) => e)
    expect(streamRefused).toMatchObject({status: 503, code: 'ATTEST_PCR_MISMATCH'})
    const raw = await authed(`${url}/v1/completions`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({prompt: CANARY})})
    expect(raw.status).toBe(503)
    expect(raw.headers.get('x-should-retry')).toBe('false')
    expect(await raw.json()).toEqual({error: {message: expect.stringContaining('PCR'), type: 'attestation_error', code: 'ATTEST_PCR_MISMATCH', param: null}})
    const state = await authed(`${url}/nle/attestation`)
    expect(state.status).toBe(503)
    expect(await state.json()).toMatchObject({status: 'failed', error: {code: 'ATTEST_PCR_MISMATCH'}})
    expect(posts()).toBe(before)
    expect(tap.bytes().toString('latin1')).not.toContain(CANARY)
  })

  it('an answer altered in transit is an error for the OpenAI client, never a shorter answer', async () => {
    const {url} = await gateway(httpsUrl)
    const client = openai(url)
    tap.corruptNextStreamChunk = true
    const outcome = await (async () => {
      const stream = await client.chat.completions.create({model: 'x', stream: true, messages: [{role: 'user', content: 'tamper with this answer please'}]})
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      return text
    })().catch((e: unknown) => e)
    expect(outcome).toBeInstanceOf(OpenAI.APIError)
    expect(outcome).toMatchObject({code: 'CHANNEL_RESPONSE_AUTH_FAILED'})
    const after = await client.chat.completions.create({model: 'x', messages: [{role: 'user', content: 'still there?'}]})
    expect(after.choices[0]!.message.content).toBe('Echo: still there?')
  })

  it('proxy 429 → 429 with its Retry-After; proxy 504 → 504', async () => {
    const {url} = await gateway(`unix:${join(dir, 'fake.sock')}`)
    fakeStatus = 429
    const limited = await authed(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({messages: [{role: 'user', content: 'hi'}]})})
    expect(limited.status).toBe(429)
    expect(limited.headers.get('retry-after')).toBe('7')
    expect(await limited.json()).toMatchObject({error: {type: 'rate_limit_error', code: 'CLIENT_RATE_LIMITED'}})
    const sdk = await openai(url).chat.completions.create({model: 'x', stream: true, messages: [{role: 'user', content: 'hi'}]}).catch((e: unknown) => e)
    expect(sdk).toMatchObject({status: 429, code: 'CLIENT_RATE_LIMITED'})
    fakeStatus = 504
    const slow = await authed(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({messages: [{role: 'user', content: 'hi'}]})})
    expect(slow.status).toBe(504)
    expect(await slow.json()).toMatchObject({error: {type: 'server_error', code: 'CLIENT_UPSTREAM_TIMEOUT'}})
    expect(fakeChatHits).toBe(3)
  })

  it('loopback only: a non-loopback --listen is refused before anything listens', async () => {
    for (const listen of ['0.0.0.0:0', '[::]:0', '192.168.1.10:8787', 'example.com:80']) {
      await expect(gateway(httpsUrl, 'good', listen)).rejects.toMatchObject({code: 'GATEWAY_LISTEN_NOT_LOOPBACK'})
    }
    const local = await gateway(httpsUrl, 'good', 'localhost:0')
    expect(local.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
  })

  async function runGatewayCli(args: string[], cwd: string): Promise<void> {
    const proc = spawn(process.execPath, [BIN, 'gateway', '--json', '--listen', '127.0.0.1:0', ...args], {cwd, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
    let stdout = ''
    let stderr = ''
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve))
    const listening = await new Promise<{ok: boolean; event: string; result: {url: string; token: {required: boolean; file: string}; attestation: {status: string; pcr0: string}}}>((resolve, reject) => {
      proc.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
        if (stdout.includes('\n')) resolve(JSON.parse(stdout.split('\n')[0]!) as never)
      })
      void exited.then((code) => reject(new Error(`gateway exited ${code}: ${stdout}${stderr}`)))
    })
    expect(listening).toMatchObject({ok: true, command: 'gateway', event: 'listening', result: {url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), attestation: {status: 'verified', pcr0: lockfile('image good').measurements.PCR0}}})
    const ready = listening.result
    // The token was made on first use in a 0600 file; the ready line names the file, never the token.
    expect(ready.token).toEqual({required: true, file: expect.any(String)})
    expect(statSync(ready.token.file).mode & 0o777).toBe(0o600)
    const token = (await readFile(ready.token.file, 'utf8')).trim()
    expect(stdout).not.toContain(token)
    const refused = await openai(ready.url, 'not-the-token-at-all').chat.completions.create({model: 'x', messages: [{role: 'user', content: 'hi'}]}).catch((e: unknown) => e)
    expect(refused).toMatchObject({status: 401, code: 'GATEWAY_UNAUTHORIZED'})
    const answer = await openai(ready.url, token).chat.completions.create({model: 'x', messages: [{role: 'user', content: `cli ${CANARY}`}]})
    expect(answer.choices[0]!.message.content).toBe(`Echo: cli ${CANARY}`)
    proc.kill('SIGINT')
    expect(await exited).toBe(0)
    // stdout is line-delimited JSON from the first line to the last (no pretty-printed result at the end).
    const lines = stdout.split('\n')
    expect(lines.at(-1)).toBe('')
    expect(lines.slice(0, -1).map((l) => (JSON.parse(l) as {event: string}).event)).toEqual(['listening', 'stopped'])
    expect(stderr).toContain('"event":"access"')
    expect(stdout + stderr).not.toContain(CANARY)
  }

  it('`nle gateway --json` (explicit --upstream/--lockfile/--dev-root/--ca) prints a ready line, serves the openai client, stops on SIGINT', async () => {
    await runGatewayCli(['--upstream', httpsUrl, '--lockfile', lock.good, '--dev-root', join(dir, 'root.pem'), '--ca', join(dir, 'tls', 'cert.pem'), '--token-file', join(dir, 'gw.token')], REPO_ROOT)
  })

  it('`nle gateway` with no flags finds a running `nle dev` stack (.nle/dev/endpoints.json)', async () => {
    // A project as `nle dev` leaves it: its lockfile, the dev root and certificate in .nle/dev, the
    // endpoints file naming them, written by a live `nle dev` of this project (a stand-in process).
    const project = join(dir, 'project')
    const devDir = join(project, '.nle', 'dev')
    await mkdir(devDir, {recursive: true})
    await copyFile(lock.good, join(project, 'nle.lock.json'))
    await copyFile(join(dir, 'root.pem'), join(devDir, 'sim-root.pem'))
    await copyFile(join(dir, 'tls', 'cert.pem'), join(devDir, 'cert.pem'))
    const dev = await fakeNleDev(project)
    try {
      const devRootSha256 = insecureDevRoot(await readFile(join(devDir, 'sim-root.pem'), 'utf8')).sha256
      await writeEndpoints(project, {projectDir: await realpath(project), proxyUrl: httpsUrl, enclaveSocket: join(dir, 'enclave.sock'), kmsUrl: 'http://127.0.0.1:1', devRootFile: join(devDir, 'sim-root.pem'), devRootSha256, caFile: join(devDir, 'cert.pem'), pid: dev.pid})
      await runGatewayCli([], project)
    } finally {
      await dev.stop()
    }
  })

  it('`nle gateway` refuses a non-loopback --listen (exit 2), and --mode kms without a KMS key (exit 3)', async () => {
    const open = await runCli(['gateway', '--json', '--upstream', httpsUrl, '--lockfile', lock.good, '--listen', '0.0.0.0:8787'])
    expect(open.exitCode).toBe(2)
    expect(jsonFailure(open)).toMatchObject({code: 'GATEWAY_LISTEN_NOT_LOOPBACK'})
    const kms = await runCli(['gateway', '--json', '--upstream', httpsUrl, '--lockfile', lock.good, '--mode', 'kms'], {cwd: dir})
    expect(kms.exitCode).toBe(3)
    expect(jsonFailure(kms)).toMatchObject({code: 'CLIENT_KMS_UNCONFIGURED', hint: expect.stringContaining('--kms-key-id')})
  })

  it('upstream unreachable → 502; enclave down behind the proxy → 503 (and re-attestation is attempted)', async () => {
    const nowhere = await gateway(`unix:${join(dir, 'nothing-here.sock')}`)
    const r = await authed(`${nowhere.url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({messages: [{role: 'user', content: 'hi'}]})})
    expect(r.status).toBe(502)
    expect(await r.json()).toMatchObject({error: {type: 'server_error', code: 'CLIENT_UNREACHABLE'}})

    const {url, gateway: g} = await gateway(httpsUrl)
    expect(g.state().status).toBe('verified')
    server.proc.kill('SIGKILL')
    await server.exited
    const client = openai(url)
    const down = await client.chat.completions.create({model: 'x', messages: [{role: 'user', content: 'anyone?'}]}).catch((e: unknown) => e)
    expect(down).toMatchObject({status: 503, code: 'CLIENT_ENCLAVE_UNAVAILABLE'})
    // The next request verifies afresh (reconnect) — which cannot succeed now: still 503, still shaped.
    const again = await client.chat.completions.create({model: 'x', messages: [{role: 'user', content: 'anyone?'}]}).catch((e: unknown) => e)
    expect(again).toMatchObject({status: 503, code: 'CLIENT_ENCLAVE_UNAVAILABLE'})
    expect(events).toContainEqual({event: 'attestation_failed', reason: 'reconnect', code: 'CLIENT_ENCLAVE_UNAVAILABLE'})
    expect(g.state().status).toBe('failed')
  })
})
