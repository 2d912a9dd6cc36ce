// Serving many users from one enclave server (child process, NSM simulator, real synth models,
// sealed requests on its Unix socket): the engine runs in a worker thread and batches the
// generations in flight. Nothing here waits on time: each step waits for an answer, a chunk or a
// state the server reports.
import {request} from 'node:http'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {SEALED_REQUEST_TYPE} from '../src/lib/protocol/routes.js'
import {NleClient} from '../src/lib/client/index.js'
import type {ChatRequest} from '../src/lib/client/client.js'
import {isNleError} from '../src/lib/errors.js'
import {saveModel, synthModel} from '../src/lib/model/index.js'
import {tempDir} from '../src/test-support/tmp.js'
import {writeBenchLockfile} from '../bench/_fixtures.js'
import {type Child, startRuntime} from './e2e-support.js'

let dir: string
let cleanup: () => void
let lock: string
/** A small Llama (grouped-query attention) whose long answers take seconds: the batching server. */
let server: Child
/** llama-tiny with a KV budget of 0.02 MiB (163 tokens of 128 bytes). */
let tight: Child
let client: NleClient
let tightClient: NleClient
const clients: NleClient[] = []

const LONG = 1000

async function runtimeConfig(name: string, model: string, server: Record<string, unknown>, maxTokens: number): Promise<string> {
  const path = join(dir, `${name}.runtime.json`)
  // Generation settings the tests need: greedy, one intra-op thread, answers up to maxTokens.
  await writeFile(path, JSON.stringify({model: {path: model}, runtime: {threads: 1, maxTokens, sampling: {temperature: 0, topP: 1, topK: 0}}, server}))
  return path
}

async function start(name: string, config: string): Promise<{child: Child; client: NleClient}> {
  const child = startRuntime('enclave-server', ['--socket', join(dir, `${name}.sock`), '--config', config, '--nsm', 'simulator', '--lockfile', lock, '--sim-root-out', join(dir, `${name}.pem`)])
  await child.waitFor('listening', 120_000)
  const c = await NleClient.fromLockfile(lock, {target: `unix:${join(dir, `${name}.sock`)}`, insecureDevRoot: insecureDevRoot(await readFile(join(dir, `${name}.pem`), 'utf8'))})
  clients.push(c)
  return {child, client: c}
}

function get(socket: string, path: string): Promise<{status: number; headers: Record<string, string | string[] | undefined>; body: string}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath: socket, path, method: 'GET'}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body}))
    })
    req.on('error', reject)
    req.end()
  })
}

/** A POST with a sealed content type and any body: the queue check comes before the body is opened. */
function postSealed(socket: string): Promise<{status: number; headers: Record<string, string | string[] | undefined>; body: string}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath: socket, path: '/v1/chat/completions', method: 'POST', headers: {'content-type': SEALED_REQUEST_TYPE}}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body}))
    })
    req.on('error', reject)
    req.end(Buffer.alloc(64))
  })
}

async function metrics(socket: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const line of (await get(socket, '/metrics')).body.split('\n')) {
    const m = /^(\w+) (\S+)$/.exec(line)
    if (m) out[m[1] as string] = Number(m[2])
  }
  return out
}

interface Running {
  /** Resolves at the first content chunk. */
  first: Promise<void>
  /** The whole text, or the error the stream ended with. */
  done: Promise<{text: string; finish: string | null} | {error: unknown}>
  readonly ended: boolean
  abort(): void
}

function run(c: NleClient, req: ChatRequest): Running {
  const ac = new AbortController()
  let sawFirst: () => void = () => undefined
  const first = new Promise<void>((resolve) => (sawFirst = resolve))
  const state = {ended: false}
  const done = (async (): Promise<{text: string; finish: string | null} | {error: unknown}> => {
    let text = ''
    let finish: string | null = null
    try {
      for await (const chunk of c.chatStream(req, {signal: ac.signal})) {
        const delta = chunk.choices[0]?.delta.content ?? ''
        if (delta.length > 0) sawFirst()
        text += delta
        finish = chunk.choices[0]?.finish_reason ?? finish
      }
      return {text, finish}
    } catch (error) {
      return {error}
    } finally {
      state.ended = true
      sawFirst()
    }
  })()
  return {
    first,
    done,
    get ended() {
      return state.ended
    },
    abort: () => ac.abort(),
  }
}

/**
 * Asks again after each answer until `ok`: each read is a request the server answers once it has
 * handled what came before (no sleeping), at most `tries` times.
 */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, tries = 500): Promise<T> {
  let v = await read()
  for (let i = 0; i < tries && !ok(v); i++) v = await read()
  return v
}

/** Waits until the server holds no generation (a previous test's cancelled ones have left). */
async function idle(name: string): Promise<void> {
  const m = await until(
    () => metrics(socket(name)),
    (v) => v.nle_server_generation_inflight === 0 && v.nle_server_generation_queued === 0 && v.nle_server_batch_active === 0,
  )
  expect(m).toMatchObject({nle_server_generation_inflight: 0, nle_server_generation_queued: 0})
}

const ask = (content: string, maxTokens: number): ChatRequest => ({messages: [{role: 'user', content}], max_tokens: maxTokens, temperature: 0})

/** Eight prompts of different lengths. */
const PROMPTS = [
  'Hi',
  'What does my dental plan cover?',
  'Summarise the policy on remote work for a new employee in two sentences.',
  'a b c d e f g h i j k l m n o p q r s t u v w x y z',
  'Why?',
  'List three things to check before signing a lease for a flat in a city you have not lived in before.',
  'Translate "good morning" into French, German, Italian and Spanish, one per line.',
  'x',
]

beforeAll(async () => {
  ;({dir, cleanup} = tempDir('nle-serving-'))
  lock = await writeBenchLockfile(dir)
  await synthModel({
    preset: {arch: 'llama', shape: {nLayer: 2, hidden: 128, nHead: 4, nKvHead: 2, intermediate: 256, maxPositions: 1024, ropeTheta: 10000, rmsNormEps: 1e-6, initStd: 0.3}, externalData: false},
    outDir: join(dir, 'synth-small'),
  })
  await saveModel({source: join(dir, 'synth-small'), outDir: join(dir, 'small')})
  await synthModel({preset: 'llama-tiny', outDir: join(dir, 'synth-tiny')})
  await saveModel({source: join(dir, 'synth-tiny'), outDir: join(dir, 'tiny')})
  ;[{child: server, client}, {child: tight, client: tightClient}] = await Promise.all([
    start('batch', await runtimeConfig('batch', join(dir, 'small'), {generationConcurrency: 4, generationQueue: 4}, LONG)),
    start('tight', await runtimeConfig('tight', join(dir, 'tiny'), {generationConcurrency: 4, kvCacheMiB: 0.02}, 200)),
  ])
}, 240_000)

afterAll(async () => {
  for (const c of clients) c.close()
  for (const c of [server, tight]) c?.proc.kill('SIGTERM')
  await Promise.all([server?.exited, tight?.exited])
  cleanup?.()
})

const socket = (name: string): string => join(dir, `${name}.sock`)

describe('the batching enclave server', () => {
  it('reports its batch limit and KV budget, and serves /healthz while a long generation runs', async () => {
    expect(await server.waitFor('serving')).toMatchObject({concurrency: 4, concurrencySource: 'config', kvBytesPerToken: 2 * 2 * 2 * 32 * 4})
    const long = run(client, ask('Tell me a long story.', LONG))
    await long.first
    const health = await get(socket('batch'), '/healthz')
    // Answered while the generation was still running in the engine's worker thread.
    const runningThen = !long.ended
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body)).toMatchObject({status: 'ok', inFlight: 1})
    expect(runningThen).toBe(true)
    const m = await metrics(socket('batch'))
    expect(m.nle_server_batch_active).toBe(1)
    expect(m.nle_server_batch_limit).toBe(4)
    expect(m.nle_server_generation_slots).toBe(4)
    long.abort()
    await long.done
  }, 120_000)

  it('batched greedy output through the server equals each prompt served alone', async () => {
    await idle('batch')
    const alone: string[] = []
    for (const p of PROMPTS) {
      const r = await client.chat(ask(p, 24))
      alone.push(r.choices[0]?.message.content ?? '')
    }
    expect(new Set(alone).size).toBeGreaterThan(1)
    const before = await metrics(socket('batch'))
    // All eight at once: four decode together, the rest queue and join as slots free.
    const together = await Promise.all(PROMPTS.map((p) => client.chat(ask(p, 24)).then((r) => r.choices[0]?.message.content ?? '')))
    expect(together).toEqual(alone)
    const after = await metrics(socket('batch'))
    expect(after.nle_server_batch_decode_rows_total! - before.nle_server_batch_decode_rows_total!).toBeGreaterThan(0)
    expect(after.nle_server_ttft_ms_count).toBeGreaterThanOrEqual(16)
    // Each generation's log line carries its token count and timings, never its text.
    const lines = server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    const generations = lines.filter((l) => l.event === 'access' && l.tokens !== undefined)
    expect(generations.length).toBeGreaterThanOrEqual(16)
    for (const g of generations) expect(g).toMatchObject({tokens: expect.any(Number), ttftMs: expect.any(Number)})
  }, 120_000)

  it('a request cancelled mid-batch frees its slot; the others answer as they would alone', async () => {
    await idle('batch')
    const others = PROMPTS.slice(1, 4)
    const alone = []
    for (const p of others) alone.push((await client.chat(ask(p, 48))).choices[0]?.message.content ?? '')
    const before = await metrics(socket('batch'))
    const cancelled = run(client, ask('Tell me a long story.', LONG))
    await cancelled.first
    const rest = others.map((p) => run(client, ask(p, 48)))
    await Promise.all(rest.map((r) => r.first))
    cancelled.abort()
    expect(await cancelled.done).toHaveProperty('error')
    const results = await Promise.all(rest.map((r) => r.done))
    expect(results.map((r) => ('text' in r ? r.text : r.error))).toEqual(alone)
    // Its slot, its KV reservation and its row in the worker's batch are given back.
    const m = await until(
      () => metrics(socket('batch')),
      (v) => v.nle_server_generation_inflight === 0 && v.nle_server_batch_active === 0,
    )
    expect(m).toMatchObject({nle_server_generation_inflight: 0, nle_server_batch_active: 0, nle_server_kv_reserved_bytes: 0})
    // The worker stopped it: far fewer decode rows than its LONG tokens would have taken.
    expect(m.nle_server_batch_decode_rows_total! - before.nle_server_batch_decode_rows_total!).toBeLessThan(3 * 48 + LONG / 2)
    // And the freed slots serve again.
    expect((await client.chat(ask('Hi', 4))).choices).toHaveLength(1)
  }, 120_000)

  it('a full queue answers 429 with Retry-After; the queued request is served once a slot frees', async () => {
    await idle('batch')
    const running = [0, 1, 2, 3].map((i) => run(client, ask(`Story number ${i}.`, LONG)))
    await Promise.all(running.map((r) => r.first))
    const queued = [0, 1, 2, 3].map(() => run(client, ask('Hi', 4)))
    const health = await until(
      async () => JSON.parse((await get(socket('batch'), '/healthz')).body) as {queued: number},
      (h) => h.queued === 4,
    )
    expect(health.queued).toBe(4)
    const refused = await postSealed(socket('batch'))
    expect(refused.status).toBe(429)
    expect(refused.headers['retry-after']).toBe('1')
    expect(JSON.parse(refused.body)).toMatchObject({error: {code: 'SERVER_BUSY'}})
    expect(running.every((r) => !r.ended)).toBe(true)
    running[0]!.abort()
    for (const q of queued) expect(await q.done).toHaveProperty('text')
    for (const r of running) r.abort()
    await Promise.all(running.map((r) => r.done))
  }, 120_000)
})

describe('the KV-cache budget', () => {
  it('refuses a sequence it has no memory for with SERVER_KV_BUDGET, and serves the next one', async () => {
    expect(await tight.waitFor('serving')).toMatchObject({kvBudgetMiB: 0, kvBudgetSource: 'config', kvBytesPerToken: 128})
    // 200 new tokens of 128 bytes need 25.6 kB: more than the 20.9 kB budget.
    const error = await tightClient.chat(ask('Hi', 200)).catch((e: unknown) => e)
    expect(isNleError(error) ? [error.code, error.details?.serverCode] : error).toEqual(['CLIENT_SERVER_ERROR', 'SERVER_KV_BUDGET'])
    expect((await tightClient.chat(ask('Hi', 16))).choices).toHaveLength(1)
    const m = await metrics(socket('tight'))
    expect(m).toMatchObject({nle_server_kv_refused_total: 1, nle_server_kv_reserved_bytes: 0, nle_server_kv_budget_bytes: Math.floor(0.02 * 1024 * 1024)})
    // The process is still up and healthy.
    expect((await get(socket('tight'), '/healthz')).status).toBe(200)
  }, 60_000)
})
