// nle's engine against transformers.js's text-generation pipeline, in the same run, on the same
// generated model files (gpt2-medium shape by default), same prompt ids, greedy, same lengths, same
// intra-op threads. Each side runs in its own process (bench/_engine-worker.ts) so peak RSS is its own;
// the sides alternate for NLE_BENCH_ROUNDS rounds and the best round of each counts (the machine may be
// shared). Also: a roofline for decoding (weight bytes per token ÷ measured memory bandwidth) and the
// size of each runtime's production dependency closure: nle's as its enclave image ships it (other
// platforms' native binaries pruned, see src/lib/host/prune.ts) against transformers.js's as npm
// installs it (the target), and like for like both ways.
//
// Settings (environment): NLE_BENCH_PRESET (gpt2-medium | tiny), NLE_BENCH_MODEL_DIR, NLE_BENCH_THREADS (2),
// NLE_BENCH_PROMPT_TOKENS (128), NLE_BENCH_NEW_TOKENS (64), NLE_BENCH_ROUNDS (2), NLE_BENCH_REPEATS (3:
// requests per process after a short warm-up; TTFT and the rates are their median, and the first
// request's TTFT is reported on its own).
import {execFile} from 'node:child_process'
import {existsSync, readFileSync, readdirSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {Worker} from 'node:worker_threads'

import type {BenchRow} from '../scripts/bench.js'
import {isForeignBinary} from '../src/lib/host/prune.js'
import {type PresetName, SYNTH_FORMAT, parameterCount, resolvePreset, synthModel} from '../src/lib/model/synth.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

interface WorkerResult {
  impl: string
  loadMs: number
  /** The first full-size request after load; ttftMs and the rates are medians over the repeats. */
  firstTtftMs: number
  ttftMs: number
  prefillTokensPerSecond: number
  decodeTokensPerSecond: number
  generated: number
  decodeCpuMsPerToken: number
  peakRssBytes: number
  tokens: number[]
  /** nle's sides: whether the engine loaded the graph with a last-position LM head. */
  lastLogitsOnly?: boolean
}

async function side(impl: string, dir: string, threads: number, promptTokens: number, newTokens: number, repeats: number): Promise<WorkerResult> {
  const {stdout} = await run(
    process.execPath,
    ['--import', 'tsx', '--no-warnings', join(root, 'bench', '_engine-worker.ts'), impl, dir, String(threads), String(promptTokens), String(newTokens), String(repeats)],
    {cwd: root, maxBuffer: 1 << 20, env: {...process.env}},
  )
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as WorkerResult
}

function best(rs: WorkerResult[]): WorkerResult {
  return {
    impl: rs[0]!.impl,
    loadMs: Math.min(...rs.map((r) => r.loadMs)),
    firstTtftMs: Math.min(...rs.map((r) => r.firstTtftMs)),
    ttftMs: Math.min(...rs.map((r) => r.ttftMs)),
    prefillTokensPerSecond: Math.max(...rs.map((r) => r.prefillTokensPerSecond)),
    decodeTokensPerSecond: Math.max(...rs.map((r) => r.decodeTokensPerSecond)),
    generated: Math.min(...rs.map((r) => r.generated)),
    decodeCpuMsPerToken: Math.min(...rs.map((r) => r.decodeCpuMsPerToken)),
    // Peak memory is not luck: report the worst round.
    peakRssBytes: Math.max(...rs.map((r) => r.peakRssBytes)),
    tokens: rs[0]!.tokens,
  }
}

/** Memory bandwidth with `threads` workers each copying its own 256 MiB buffer (read + write bytes). */
async function memoryBandwidth(threads: number): Promise<number> {
  const code = `
    const {parentPort} = require('node:worker_threads')
    const n = 256 << 20, a = Buffer.alloc(n, 1), b = Buffer.alloc(n)
    a.copy(b); b.copy(a)
    parentPort.once('message', () => {
      let bestS = Infinity
      for (let r = 0; r < 5; r++) { const t = process.hrtime.bigint(); a.copy(b); bestS = Math.min(bestS, Number(process.hrtime.bigint() - t) / 1e9) }
      parentPort.postMessage(2 * n / bestS)
    })`
  const workers = Array.from({length: threads}, () => new Worker(code, {eval: true}))
  await new Promise((r) => setTimeout(r, 1500))
  const rates = await Promise.all(
    workers.map(
      (w) =>
        new Promise<number>((resolve) => {
          w.once('message', (v: number) => resolve(v))
          w.postMessage('go')
        }),
    ),
  )
  await Promise.all(workers.map((w) => w.terminate()))
  return rates.reduce((a, b) => a + b, 0)
}

/** Bytes on disk of a package closure, walking dependencies and installed optional dependencies. */
function closureBytes(roots: string[], skip: (path: string) => boolean): {bytes: number; packages: number} {
  const seen = new Set<string>()
  const resolvePkg = (name: string, from: string): string | undefined => {
    for (let d = from; ; d = dirname(d)) {
      const candidate = join(d, 'node_modules', name)
      if (existsSync(join(candidate, 'package.json'))) return candidate
      if (d === dirname(d)) return undefined
    }
  }
  const visit = (dir: string): void => {
    if (seen.has(dir)) return
    seen.add(dir)
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {dependencies?: object; optionalDependencies?: object}
    for (const dep of [...Object.keys(pj.dependencies ?? {}), ...Object.keys(pj.optionalDependencies ?? {})]) {
      const found = resolvePkg(dep, dir)
      if (found !== undefined) visit(found)
    }
  }
  for (const r of roots) {
    const found = resolvePkg(r, root)
    if (found === undefined) throw new Error(`package ${r} is not installed`)
    visit(found)
  }
  const du = (p: string): number => {
    if (skip(p)) return 0
    const st = statSync(p)
    if (!st.isDirectory()) return st.size
    let sum = 0
    for (const e of readdirSync(p)) if (e !== 'node_modules') sum += du(join(p, e))
    return sum
  }
  let bytes = 0
  for (const d of seen) bytes += du(d)
  return {bytes, packages: seen.size}
}

const env = (name: string, fallback: number): number => (process.env[name] === undefined ? fallback : Number(process.env[name]))

export default async function engineBench(): Promise<BenchRow[]> {
  const preset = (process.env.NLE_BENCH_PRESET ?? 'gpt2-medium') as PresetName
  const shape = resolvePreset(preset)
  const threads = env('NLE_BENCH_THREADS', 2)
  const promptTokens = env('NLE_BENCH_PROMPT_TOKENS', 128)
  const newTokens = env('NLE_BENCH_NEW_TOKENS', 64)
  const rounds = env('NLE_BENCH_ROUNDS', 2)
  const repeats = env('NLE_BENCH_REPEATS', 3)
  const dir = process.env.NLE_BENCH_MODEL_DIR ?? join(tmpdir(), `nle-bench-${preset}-seed1-f${SYNTH_FORMAT}`)
  if (!existsSync(join(dir, 'onnx', 'model.onnx'))) {
    process.stderr.write(`bench: generating the ${preset} model in ${dir} (once)…\n`)
    await synthModel({preset, outDir: dir, seed: 1})
  }
  const sides = ['nle', 'nle-no-prepack', 'nle-full-head', 'transformers.js'] as const
  const results: Record<(typeof sides)[number], WorkerResult[]> = {nle: [], 'nle-no-prepack': [], 'nle-full-head': [], 'transformers.js': []}
  for (let r = 0; r < rounds; r++) {
    for (const impl of sides) {
      process.stderr.write(`bench: ${impl}, round ${r + 1}/${rounds} (${preset}, ${threads} threads, ${promptTokens}+${newTokens} tokens, ${repeats} requests)…\n`)
      results[impl].push(await side(impl, dir, threads, promptTokens, newTokens, repeats))
    }
  }
  if (results.nle.some((r) => r.lastLogitsOnly === false)) {
    process.stderr.write(`bench: the engine could not give ${dir} a last-position LM head; regenerate the model (delete the folder)\n`)
  }
  const nle = best(results.nle)
  const nleNoPrepack = best(results['nle-no-prepack'])
  const nleFullHead = best(results['nle-full-head'])
  const tjs = best(results['transformers.js'])
  const peer = (value: number): {name: string; value: number} => ({name: 'transformers.js', value})
  const tag = `${preset}, ${threads} thr`

  const bandwidth = await memoryBandwidth(threads)
  const weightBytes = parameterCount(shape) * 4
  const roofline = bandwidth / weightBytes

  // What the enclave image ships: templates/enclave/Dockerfile runs src/lib/host/prune.ts after
  // `npm ci`, which removes the native binaries of every platform but the image's (linux/amd64).
  const image = {platform: 'linux', arch: 'x64'}
  const shipped = (p: string): boolean => isForeignBinary(p, image)
  // koffi: the engine binds glibc's mallopt with it (src/lib/engine/session.ts mapLargeAllocations).
  const nleRuntime = ['onnxruntime-node', 'koffi', '@huggingface/tokenizers', '@huggingface/jinja']
  const tjsRuntime = ['@huggingface/transformers']
  const deps = {
    nleShips: closureBytes(nleRuntime, shipped),
    nleNpm: closureBytes(nleRuntime, () => false),
    tjsNpm: closureBytes(tjsRuntime, () => false),
    tjsPruned: closureBytes(tjsRuntime, shipped),
  }
  const MB = 1e6

  const agree = Object.values(results).flat().every((r) => JSON.stringify(r.tokens) === JSON.stringify(nle.tokens))
  return [
    {
      name: `greedy tokens identical to transformers.js (${nle.tokens.length} tokens, every round)`,
      value: agree ? 1 : 0,
      unit: agree ? '(yes)' : '(NO)',
      target: '1',
      pass: agree,
    },
    {name: `prefill tokens/s (${tag}, ${promptTokens} tokens)`, value: nle.prefillTokensPerSecond, unit: 'tok/s', peer: peer(tjs.prefillTokensPerSecond)},
    {
      name: `decode tokens/s (${tag}, ${newTokens} tokens)`,
      value: nle.decodeTokensPerSecond,
      unit: 'tok/s',
      peer: peer(tjs.decodeTokensPerSecond),
      target: '>= 1.10x transformers.js',
      pass: nle.decodeTokensPerSecond >= 1.1 * tjs.decodeTokensPerSecond,
    },
    {name: `TTFT, first full-size request after load (${tag})`, value: nle.firstTtftMs, unit: 'ms', peer: peer(tjs.firstTtftMs)},
    {name: `TTFT (${tag})`, value: nle.ttftMs, unit: 'ms', peer: peer(tjs.ttftMs), target: '<= 1.0x transformers.js', pass: nle.ttftMs <= tjs.ttftMs},
    {
      name: `peak RSS (${tag})`,
      value: nle.peakRssBytes / MB,
      unit: 'MB',
      peer: peer(tjs.peakRssBytes / MB),
      target: '<= 0.8x transformers.js',
      pass: nle.peakRssBytes <= 0.8 * tjs.peakRssBytes,
    },
    // The same engine with ORT weight pre-packing off (EngineOptions.prepack: false): what pre-packing buys.
    {name: `without prepack: decode tokens/s (${tag})`, value: nleNoPrepack.decodeTokensPerSecond, unit: 'tok/s', peer: peer(tjs.decodeTokensPerSecond)},
    {name: `without prepack: TTFT (${tag})`, value: nleNoPrepack.ttftMs, unit: 'ms', peer: peer(tjs.ttftMs)},
    {name: `without prepack: peak RSS (${tag})`, value: nleNoPrepack.peakRssBytes / MB, unit: 'MB', peer: peer(tjs.peakRssBytes / MB)},
    {name: `without prepack: decode CPU time per token (${tag})`, value: nleNoPrepack.decodeCpuMsPerToken, unit: 'ms', peer: peer(tjs.decodeCpuMsPerToken)},
    // The same engine with the LM head over every prompt position (EngineOptions.lastLogitsOnly: false):
    // what feeding it the last position only buys.
    {name: `LM head over every position: TTFT (${tag})`, value: nleFullHead.ttftMs, unit: 'ms', peer: peer(tjs.ttftMs)},
    {name: `LM head over every position: decode tokens/s (${tag})`, value: nleFullHead.decodeTokensPerSecond, unit: 'tok/s', peer: peer(tjs.decodeTokensPerSecond)},
    {name: `LM head over every position: peak RSS (${tag})`, value: nleFullHead.peakRssBytes / MB, unit: 'MB', peer: peer(tjs.peakRssBytes / MB)},
    {name: `decode CPU time per token (${tag}; robust to a busy machine)`, value: nle.decodeCpuMsPerToken, unit: 'ms', peer: peer(tjs.decodeCpuMsPerToken)},
    {name: `model load (${tag})`, value: nle.loadMs, unit: 'ms', peer: peer(tjs.loadMs)},
    {name: `memory bandwidth (${threads} threads, memcpy read+write)`, value: bandwidth / 1e9, unit: 'GB/s'},
    {name: `decode roofline (${(weightBytes / MB).toFixed(0)} MB weights/token)`, value: roofline, unit: 'tok/s'},
    {name: 'decode fraction of roofline', value: (100 * nle.decodeTokensPerSecond) / roofline, unit: '%', peer: peer((100 * tjs.decodeTokensPerSecond) / roofline)},
    // The target compares what nle's image ships with transformers.js as `npm install` puts it on
    // disk (every platform's onnxruntime-node binaries included: transformers.js has no pruning step).
    {
      name: `runtime dependency closure: nle as its image ships it (linux-x64 binaries only) vs transformers.js as npm installs it (${deps.nleShips.packages} vs ${deps.tjsNpm.packages} packages)`,
      value: deps.nleShips.bytes / MB,
      unit: 'MB',
      peer: {name: 'transformers.js (npm install)', value: deps.tjsNpm.bytes / MB},
      target: '<= 0.5x transformers.js',
      pass: deps.nleShips.bytes <= 0.5 * deps.tjsNpm.bytes,
    },
    // Like for like: the same pruning applied to transformers.js's closure (its onnxruntime-node).
    {
      name: 'runtime dependency closure, like for like: both pruned to linux-x64 binaries',
      value: deps.nleShips.bytes / MB,
      unit: 'MB',
      peer: {name: 'transformers.js (pruned the same way)', value: deps.tjsPruned.bytes / MB},
    },
    {
      name: 'runtime dependency closure, like for like: both as npm installs them (all platforms)',
      value: deps.nleNpm.bytes / MB,
      unit: 'MB',
      peer: {name: 'transformers.js (npm install)', value: deps.tjsNpm.bytes / MB},
    },
  ]
}
