// Serving many users from one enclave: N = 1, 4, 8, 16 clients at once through the real path —
// NleClient (attested channel, sealed requests, SSE of sealed chunks) → parent proxy (loopback
// HTTP, child process) → enclave server (child process, NSM simulator, the engine batching in its
// worker thread) — on the generated benchmark models, 64 new tokens each, greedy. Per case and N:
// aggregate decode tokens/s, TTFT p50/p95, inter-token latency p50/p95 (gaps between content
// chunks at the client), and the server process's peak RSS (VmHWM, reset before each N). The peer
// is the same server at N = 1, in the same run; the targets are the issue's (docs/serving.md).
// The second peer: transformers.js's text-generation pipeline on the same model and prompts, N
// generations at once, called directly in its own process (NLE_BENCH_NO_TJS skips it).
// Also the secure-path row: the channel + proxy's added latency over a direct engine call (tiny
// model, engine in its worker thread).
//
// Settings (environment): NLE_BENCH_CASES (substrings of case names, default all),
// NLE_BENCH_PRESET (synth presets to run instead, one per architecture, e.g. `tiny,llama-tiny`),
// NLE_BENCH_MODELS_DIR (where generated models are kept), NLE_BENCH_THREADS (2),
// NLE_BENCH_NEW_TOKENS (64), NLE_BENCH_CLIENTS (1,4,8,16), NLE_BENCH_PROMPT_WORDS (24).
//   npm run bench -- serving
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {performance} from 'node:perf_hooks'

import type {BenchRow} from '../scripts/bench.js'
import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {NleClient} from '../src/lib/client/index.js'
import {WorkerEngine} from '../src/lib/engine/worker-engine.js'
import {MIB, RUNTIME_OVERHEAD_MIB, kvCacheBytes} from '../src/lib/host/memory.js'
import {kvShapeFromConfig} from '../src/lib/model/kv-size.js'
import {type Dtype, findOnnxFile, readDecoderConfig} from '../src/lib/model/layout.js'
import {PRESETS, type PresetName, type SynthArch, synthModel} from '../src/lib/model/synth.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type Child, startRuntime} from '../test/e2e-support.js'
import {quantized, synthesized} from './engine.js'
import {servingPrompt, writeBenchLockfile} from './_fixtures.js'

const env = (name: string, fallback: number): number => (process.env[name] === undefined ? fallback : Number(process.env[name]))

interface ServingCase {
  name: string
  preset: PresetName
  dtype: Dtype
  produce: (fp32Dir: string) => Promise<string | {skip: string}>
  /** Aggregate decode at N = 8 over N = 1 (the issue: 4x on fp32, 1.8x on q4). */
  scaling: number
}

const CASES: ServingCase[] = [
  {name: 'gpt2-medium fp32', preset: 'gpt2-medium', dtype: 'fp32', produce: async (d) => d, scaling: 4},
  {name: 'llama-0.5b fp32', preset: 'llama-0.5b', dtype: 'fp32', produce: async (d) => d, scaling: 4},
  {name: 'llama-0.5b q4', preset: 'llama-0.5b', dtype: 'q4', produce: quantized('q4'), scaling: 1.8},
]

function pct(values: number[], p: number): number {
  if (values.length === 0) return 0
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

/** The server and proxy run from dist/ (runtime/<entry>/index.js): compile it, as the tests' global setup does. */
function buildDist(): void {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], {cwd: root, encoding: 'utf8'})
  if (r.status !== 0) process.stderr.write(`bench: tsc reported errors (dist/ is still emitted):\n${r.stdout.split('\n').slice(0, 5).join('\n')}\n`)
}

/** Peak resident memory of a process since the last reset (bytes), and the reset (Linux clear_refs 5). */
const peakRss = (pid: number): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
function resetPeak(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
  } catch {
    // Not Linux, or not allowed: the peak then covers everything before too.
  }
}

interface Stack {
  server: Child
  proxy: Child
  client: NleClient
  stop(): Promise<void>
}

async function startStack(dir: string, name: string, lock: string, config: Record<string, unknown>): Promise<Stack> {
  const cfg = join(dir, `${name}.runtime.json`)
  writeFileSync(cfg, JSON.stringify(config))
  const sock = join(dir, `${name}.sock`)
  const server = startRuntime('enclave-server', ['--socket', sock, '--config', cfg, '--nsm', 'simulator', '--lockfile', lock, '--sim-root-out', join(dir, `${name}.pem`)])
  const proxy = startRuntime('parent-proxy', ['--upstream', `unix:${sock}`, '--http-port', '0', '--concurrency', '64', '--queue', '64', '--upstream-timeout-ms', '900000'])
  const stop = async (): Promise<void> => {
    server.proc.kill('SIGTERM')
    proxy.proc.kill('SIGTERM')
    await Promise.all([server.exited, proxy.exited])
  }
  try {
    const listening = await proxy.waitFor('listening')
    await server.waitFor('listening', 600_000)
    const client = await NleClient.fromLockfile(lock, {
      target: `http://${String(listening.http)}`,
      insecureDevRoot: insecureDevRoot(await readFile(join(dir, `${name}.pem`), 'utf8')),
      timeoutMs: 900_000,
      idleTimeoutMs: 900_000,
    })
    await client.attest()
    return {server, proxy, client, stop}
  } catch (error) {
    await stop()
    throw error
  }
}

interface Timed {
  text: string
  tokens: number
  ttft: number
  gaps: number[]
  firstAt: number
  endAt: number
}

/** One streamed request, timed at the client: first content chunk, the gaps between chunks, the end. */
async function timedStream(client: NleClient, content: string, maxTokens: number): Promise<Timed> {
  const t0 = performance.now()
  let text = ''
  let tokens = 0
  let firstAt = 0
  let last = 0
  const gaps: number[] = []
  for await (const chunk of client.chatStream({messages: [{role: 'user', content}], max_tokens: maxTokens, temperature: 0})) {
    const delta = chunk.choices[0]?.delta.content ?? ''
    if (delta.length > 0) {
      const now = performance.now()
      if (firstAt === 0) firstAt = now
      else gaps.push(now - last)
      last = now
      text += delta
    }
    if (chunk.usage) tokens = chunk.usage.completion_tokens
  }
  return {text, tokens, ttft: firstAt - t0, gaps, firstAt, endAt: performance.now()}
}

const prompt = servingPrompt

interface Level {
  n: number
  aggregate: number
  ttft50: number
  ttft95: number
  itl50: number
  itl95: number
  peakRss: number
  tokens: number
  texts: string[]
}

/**
 * `waves` rounds of N clients at once (N = 1 runs a few, so its percentiles have more than one
 * sample). Aggregate decode: tokens after each request's first, over the time from a wave's first
 * token to its last answer's end, summed over the waves.
 */
async function level(stack: Stack, n: number, newTokens: number, words: number, waves: number): Promise<Level> {
  resetPeak(stack.server.pid)
  const results: Timed[] = []
  let decoded = 0
  let decodeMs = 0
  for (let w = 0; w < waves; w++) {
    const wave = await Promise.all(Array.from({length: n}, (_, i) => timedStream(stack.client, prompt(i, words), newTokens)))
    decoded += wave.reduce((a, r) => a + Math.max(0, r.tokens - 1), 0)
    decodeMs += Math.max(...wave.map((r) => r.endAt)) - Math.min(...wave.map((r) => r.firstAt))
    results.push(...wave)
  }
  const peak = peakRss(stack.server.pid)
  const gaps = results.flatMap((r) => r.gaps)
  return {
    n,
    aggregate: (decoded * 1000) / decodeMs,
    ttft50: pct(results.map((r) => r.ttft), 50),
    ttft95: pct(results.map((r) => r.ttft), 95),
    itl50: pct(gaps, 50),
    itl95: pct(gaps, 95),
    peakRss: peak,
    tokens: results.reduce((a, r) => a + r.tokens, 0),
    texts: results.slice(0, n).map((r) => r.text),
  }
}

/** The model's weights on disk: every file under onnx/ (the graphs and their external data). */
function modelBytesOf(dir: string): number {
  const d = join(dir, 'onnx')
  if (!existsSync(d)) return 0
  return readdirSync(d).reduce((sum, f) => sum + statSync(join(d, f)).size, 0)
}

async function runCase(c: ServingCase, preset: PresetName, o: {base: string; threads: number; newTokens: number; clients: number[]; words: number; dir: string; lock: string}): Promise<BenchRow[]> {
  const produced = await c.produce(await synthesized(preset, o.base))
  if (typeof produced !== 'string') return [{name: `${c.name}`, value: 0, unit: '', skipped: produced.skip}]
  if ((await findOnnxFile(produced, c.dtype)) === undefined) return [{name: `${c.name}`, value: 0, unit: '', skipped: `${produced} has no ${c.dtype} ONNX file`}]
  const label = `${c.name}${preset === c.preset ? '' : ` on ${preset}`}`
  const maxN = Math.max(...o.clients)
  process.stderr.write(`bench: serving ${label}: starting the server (${o.threads} threads, batch ${maxN})…\n`)
  const stack = await startStack(o.dir, c.name.replace(/\W+/g, '-'), o.lock, {
    model: {path: produced, dtype: c.dtype},
    runtime: {threads: o.threads, maxTokens: o.newTokens, sampling: {temperature: 0, topP: 1, topK: 0}},
    server: {generationConcurrency: maxN, generationQueue: 64},
  })
  const rows: BenchRow[] = []
  try {
    const serving = await stack.server.waitFor('serving')
    await timedStream(stack.client, prompt(0, o.words), 8) // warm-up
    const levels: Level[] = []
    for (const n of o.clients) {
      process.stderr.write(`bench: serving ${label}: N = ${n}…\n`)
      levels.push(await level(stack, n, o.newTokens, o.words, n === 1 ? 3 : 1))
    }
    const one = levels.find((l) => l.n === 1) ?? levels[0]!
    for (const l of levels) {
      const peer = l === one ? undefined : {name: 'nle N=1', value: one.aggregate}
      const at8 = l.n === 8
      rows.push({
        name: `${label}: N=${l.n} aggregate decode`,
        value: l.aggregate,
        unit: 'tok/s',
        ...(peer ? {peer} : {}),
        ...(at8 ? {target: `>= ${c.scaling}x N=1`, pass: l.aggregate >= c.scaling * one.aggregate} : {}),
      })
      rows.push({name: `${label}: N=${l.n} TTFT p50`, value: l.ttft50, unit: 'ms'})
      rows.push({
        name: `${label}: N=${l.n} TTFT p95`,
        value: l.ttft95,
        unit: 'ms',
        ...(l === one ? {} : {peer: {name: 'N=1 TTFT p95', value: one.ttft95}}),
        ...(at8 ? {target: '<= 3x N=1', pass: l.ttft95 <= 3 * one.ttft95} : {}),
      })
      rows.push({name: `${label}: N=${l.n} inter-token p50`, value: l.itl50, unit: 'ms'})
      rows.push({
        name: `${label}: N=${l.n} inter-token p95`,
        value: l.itl95,
        unit: 'ms',
        ...(l === one ? {} : {peer: {name: 'N=1 inter-token p50', value: one.itl50}}),
        ...(at8 ? {target: '<= 2x N=1', pass: l.itl95 <= 2 * one.itl50} : {}),
      })
      rows.push({name: `${label}: N=${l.n} peak RSS (server)`, value: l.peakRss / MIB, unit: 'MiB'})
    }
    // The allocator's rule for this batch: model + runtime overhead + batch x context x per-token KV bytes.
    const config = await readDecoderConfig(produced)
    const shape = kvShapeFromConfig(config, c.dtype)
    const modelBytes = modelBytesOf(produced)
    if (shape !== undefined && config.maxPositions !== undefined) {
      const kv = kvCacheBytes({...shape, contextTokens: config.maxPositions, sequences: maxN})
      const top = levels.find((l) => l.n === maxN)!
      const allowance = modelBytes + RUNTIME_OVERHEAD_MIB * MIB + kv
      rows.push({
        name: `${label}: N=${maxN} peak RSS vs model ${(modelBytes / MIB).toFixed(0)} + runtime ${RUNTIME_OVERHEAD_MIB} + KV ${(kv / MIB).toFixed(0)} MiB (allocator)`,
        value: top.peakRss / MIB,
        unit: 'MiB',
        peer: {name: 'allocator rule', value: allowance / MIB},
        target: '<= allocator rule',
        pass: top.peakRss <= allowance,
      })
      // What this run's sequences can actually hold: (prompt + max_tokens) each, the server's reservation.
      rows.push({name: `${label}: KV budget the server computed (${String(serving.kvBudgetSource)})`, value: Number(serving.kvBudgetMiB), unit: 'MiB'})
    }
    // The peer: transformers.js serving the same requests with its pipeline (no channel), same threads.
    if (process.env.NLE_BENCH_NO_TJS === undefined) {
      process.stderr.write(`bench: serving ${label}: transformers.js peer…\n`)
      const peer = transformersPeer(produced, c.dtype, o)
      if ('skip' in peer) rows.push({name: `${label}: transformers.js peer`, value: 0, unit: '', skipped: peer.skip})
      else {
        for (const p of peer) {
          const mine = levels.find((l) => l.n === p.n)
          if (mine === undefined) continue
          rows.push({name: `${label}: N=${p.n} aggregate decode vs transformers.js`, value: mine.aggregate, unit: 'tok/s', peer: {name: 'transformers.js', value: p.aggregate}})
          rows.push({name: `${label}: N=${p.n} TTFT p95 vs transformers.js`, value: mine.ttft95, unit: 'ms', peer: {name: 'transformers.js', value: p.ttft95}})
          rows.push({name: `${label}: N=${p.n} inter-token p95 vs transformers.js`, value: mine.itl95, unit: 'ms', peer: {name: 'transformers.js', value: p.itl95}})
          rows.push({name: `${label}: N=${p.n} peak RSS vs transformers.js`, value: mine.peakRss / MIB, unit: 'MiB', peer: {name: 'transformers.js', value: p.peakRss / MIB}})
        }
      }
    }
    // Batched greedy answers equal the N = 1 answer for the same prompt (client 0 in every level).
    const agree = levels.every((l) => l.texts[0] === one.texts[0])
    rows.push({name: `${label}: client 0's greedy answer identical at every N`, value: agree ? 1 : 0, unit: agree ? '(yes)' : '(NO)', target: 'identical', pass: agree})
  } finally {
    await stack.stop()
  }
  return rows
}

type PeerLevel = Omit<Level, 'tokens' | 'texts'>

/** transformers.js's pipeline on the same model and prompts, N generations at once, in its own process (bench/_serving-tjs.ts). */
function transformersPeer(dir: string, dtype: Dtype, o: {threads: number; newTokens: number; words: number; clients: number[]}): PeerLevel[] | {skip: string} {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--no-warnings', join(root, 'bench', '_serving-tjs.ts'), dir, dtype, String(o.threads), String(o.newTokens), String(o.words), o.clients.join(',')],
    {cwd: root, encoding: 'utf8', maxBuffer: 1 << 20},
  )
  if (r.status !== 0) return {skip: `transformers.js failed: ${(r.stderr || r.stdout).trim().split('\n').at(-1) ?? r.status}`}
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as PeerLevel[]
}

/** The secure path's added latency with the engine in its worker thread: tiny model, 8 tokens. */
async function securePath(dir: string, lock: string): Promise<BenchRow[]> {
  await synthModel({preset: 'tiny', outDir: join(dir, 'tiny')})
  const stack = await startStack(dir, 'secure', lock, {model: {path: join(dir, 'tiny')}, runtime: {threads: 1, maxTokens: 8, sampling: {temperature: 0, topP: 1, topK: 0}}})
  const engine = await WorkerEngine.load(join(dir, 'tiny'), {threads: 1})
  try {
    const messages = [{role: 'user' as const, content: 'What does my dental plan cover?'}]
    const direct: number[] = []
    const secure: number[] = []
    for (let i = 0; i < 220; i++) {
      await new Promise((resolve) => setTimeout(resolve, 2))
      let t = performance.now()
      await engine.generate({messages}, {maxTokens: 8, temperature: 0})
      if (i >= 20) direct.push(performance.now() - t)
      await new Promise((resolve) => setTimeout(resolve, 2))
      t = performance.now()
      await stack.client.chat({messages, max_tokens: 8, temperature: 0})
      if (i >= 20) secure.push(performance.now() - t)
    }
    const added = pct(secure, 50) - pct(direct, 50)
    return [
      {name: 'secure path, tiny, 8 tokens p50', value: pct(secure, 50), unit: 'ms', peer: {name: 'engine (worker) direct p50', value: pct(direct, 50)}},
      {name: 'added latency of channel + proxy p50 (processes)', value: added, unit: 'ms', target: '<= 5 ms', pass: added <= 5},
      {name: 'added latency of channel + proxy p99 (processes)', value: pct(secure, 99) - pct(direct, 99), unit: 'ms'},
    ]
  } finally {
    await engine.close()
    await stack.stop()
  }
}

export default async function servingBench(): Promise<BenchRow[]> {
  buildDist()
  const {dir, cleanup} = tempDir('nle-bench-serving-')
  const lock = await writeBenchLockfile(dir)
  const o = {
    base: process.env.NLE_BENCH_MODELS_DIR ?? tmpdir(),
    threads: env('NLE_BENCH_THREADS', 2),
    newTokens: env('NLE_BENCH_NEW_TOKENS', 64),
    clients: (process.env.NLE_BENCH_CLIENTS ?? '1,4,8,16').split(',').map(Number),
    words: env('NLE_BENCH_PROMPT_WORDS', 24),
    dir,
    lock,
  }
  const swap = new Map<SynthArch, PresetName>()
  for (const p of (process.env.NLE_BENCH_PRESET ?? '').split(',').filter(Boolean)) {
    if (!Object.hasOwn(PRESETS, p)) throw new Error(`NLE_BENCH_PRESET: unknown preset ${p}`)
    swap.set(PRESETS[p as PresetName].arch, p as PresetName)
  }
  const only = (process.env.NLE_BENCH_CASES ?? '').split(',').filter(Boolean)
  const rows: BenchRow[] = []
  try {
    rows.push(...(await securePath(dir, lock)))
    for (const c of CASES) {
      if (only.length > 0 && !only.some((s) => c.name.includes(s))) continue
      const preset = swap.size === 0 ? c.preset : swap.get(PRESETS[c.preset].arch)
      if (preset === undefined) {
        rows.push({name: c.name, value: 0, unit: '', skipped: `NLE_BENCH_PRESET names no ${PRESETS[c.preset].arch} preset`})
        continue
      }
      rows.push(...(await runCase(c, preset, o)))
    }
  } finally {
    cleanup()
  }
  return rows
}
