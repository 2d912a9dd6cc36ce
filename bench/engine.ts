// nle's engine against transformers.js's text-generation pipeline, in the same run, on the same
// model files, for each case of CASES (a generated model at a dtype): same prompt ids, greedy, same
// lengths, same intra-op threads. Each side runs in its own process (bench/_engine-worker.ts) so peak
// RSS is its own; the sides alternate for NLE_BENCH_ROUNDS rounds and the best round of each counts
// (the machine may be shared). Per case: decode tokens/s and TTFT of both, and the decode roofline —
// measured memory read bandwidth ÷ the bytes a decode step must read (the weights it multiplies, the
// embedding rows it gathers aside, plus the KV cache at the mean context) — with the fraction of it
// each side reaches. Once: the bandwidth, and the size of each runtime's production dependency
// closure: nle's as its enclave image ships it (other platforms' native binaries pruned, see
// src/lib/host/prune.ts) against transformers.js's as npm installs it (the target), and like for like
// both ways.
//
// Settings (environment): NLE_BENCH_CASES (comma-separated substrings of case names, default all),
// NLE_BENCH_PRESET (comma-separated synth presets to run the cases on instead of theirs, one per
// architecture: `tiny,llama-tiny` runs every case on the test models in seconds; cases of another
// architecture are skipped), NLE_BENCH_MODELS_DIR (where generated models are kept, default the OS
// temp folder), NLE_BENCH_THREADS (2), NLE_BENCH_PROMPT_TOKENS (128), NLE_BENCH_NEW_TOKENS (64),
// NLE_BENCH_ROUNDS (2), NLE_BENCH_REPEATS (3: requests per process after a short warm-up; TTFT and the
// rates are their median, and the first request's TTFT is reported on its own).
import {execFile} from 'node:child_process'
import {existsSync, readFileSync, readdirSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import {Worker} from 'node:worker_threads'

import type {BenchRow} from '../scripts/bench.js'
import {isForeignBinary} from '../src/lib/host/prune.js'
import {lastPositionLogitsModel} from '../src/lib/model/last-logits.js'
import {type Dtype, findOnnxFile, readDecoderConfig} from '../src/lib/model/layout.js'
import {onnx} from '../src/lib/model/onnx-graph.js'
import {type QuantizeTarget, quantizeModel} from '../src/lib/model/quantize.js'
import {PRESETS, type PresetName, SYNTH_FORMAT, type SynthArch, synthModel} from '../src/lib/model/synth.js'

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

async function side(impl: string, dir: string, dtype: Dtype, threads: number, promptTokens: number, newTokens: number, repeats: number): Promise<WorkerResult> {
  const {stdout} = await run(
    process.execPath,
    ['--import', 'tsx', '--no-warnings', join(root, 'bench', '_engine-worker.ts'), impl, dir, dtype, String(threads), String(promptTokens), String(newTokens), String(repeats)],
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
    ...(rs.some((r) => r.lastLogitsOnly === false) ? {lastLogitsOnly: false} : {}),
  }
}

/**
 * Memory bandwidth with `threads` workers each on its own 256 MiB buffer, best of 5: reading it
 * (memchr for a byte that is not there: what a decode step does to its weights) and copying it
 * (memcpy, read + write bytes counted).
 */
async function memoryBandwidth(threads: number): Promise<{read: number; copy: number}> {
  const code = `
    const {parentPort} = require('node:worker_threads')
    const n = 256 << 20, a = Buffer.alloc(n, 1), b = Buffer.alloc(n)
    a.copy(b); b.copy(a); a.indexOf(7)
    parentPort.once('message', () => {
      let copyS = Infinity, readS = Infinity
      for (let r = 0; r < 5; r++) {
        let t = process.hrtime.bigint(); a.copy(b); copyS = Math.min(copyS, Number(process.hrtime.bigint() - t) / 1e9)
        t = process.hrtime.bigint(); if (a.indexOf(7) !== -1) throw new Error('found'); readS = Math.min(readS, Number(process.hrtime.bigint() - t) / 1e9)
      }
      parentPort.postMessage({read: n / readS, copy: 2 * n / copyS})
    })`
  const workers = Array.from({length: threads}, () => new Worker(code, {eval: true}))
  await new Promise((r) => setTimeout(r, 1500))
  const rates = await Promise.all(
    workers.map(
      (w) =>
        new Promise<{read: number; copy: number}>((resolve) => {
          w.once('message', (v: {read: number; copy: number}) => resolve(v))
          w.postMessage('go')
        }),
    ),
  )
  await Promise.all(workers.map((w) => w.terminate()))
  return {read: rates.reduce((a, r) => a + r.read, 0), copy: rates.reduce((a, r) => a + r.copy, 0)}
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

/** What a case measures: a model file at a dtype, both engines on it. */
interface BenchCase {
  name: string
  /** The generated model the case starts from (NLE_BENCH_PRESET may swap it for another of the same architecture). */
  preset: PresetName
  dtype: Dtype
  /** Makes (or finds) the folder holding the case's dtype file from the fp32 model's; a string is why the case is skipped. */
  produce: (fp32Dir: string) => Promise<string | {skip: string}>
  /** Also run nle's ablations (pre-packing off; LM head over every position) on this case. */
  ablations?: boolean
  /** The case's decode against the fp32 case of the same model (q4: >= 2.5x), and its fraction of the roofline (q4: >= 60%). */
  targets?: {vsFp32?: number; roofline?: number}
}

const fp32 = async (dir: string): Promise<string> => dir

/** The folder `nle model quantize` writes from the fp32 one (next to it, kept between runs), with the quantizer's defaults. */
export const quantized =
  (to: QuantizeTarget) =>
  async (fp32Dir: string): Promise<string | {skip: string}> => {
    const out = `${fp32Dir}-${to}`
    if ((await findOnnxFile(out, to)) !== undefined) return out
    process.stderr.write(`bench: quantizing ${fp32Dir} to ${to} in ${out} (once)…\n`)
    const r = await quantizeModel({inDir: fp32Dir, outDir: out, to, force: true})
    process.stderr.write(
      `bench: ${to}: ${r.quantized} products as MatMulNBits bits=${r.bits} block ${r.blockSize} ${r.symmetric ? 'symmetric' : 'asymmetric'} accuracy_level ${r.accuracyLevel}; weights ${(r.bytes.weightsBefore / r.bytes.weightsAfter).toFixed(2)}x smaller\n`,
    )
    if ((await findOnnxFile(out, to)) === undefined) return {skip: `quantizeModel wrote no ${to} ONNX file in ${out}`}
    return out
  }

/** The benchmark's table: one entry per (model, dtype). */
const CASES: BenchCase[] = [
  {name: 'gpt2-medium fp32', preset: 'gpt2-medium', dtype: 'fp32', produce: fp32, ablations: true},
  {name: 'llama-0.5b fp32', preset: 'llama-0.5b', dtype: 'fp32', produce: fp32},
  {name: 'llama-0.5b q8', preset: 'llama-0.5b', dtype: 'q8', produce: quantized('q8')},
  {name: 'llama-0.5b q4', preset: 'llama-0.5b', dtype: 'q4', produce: quantized('q4'), targets: {vsFp32: 2.5, roofline: 0.6}},
]

/** The generated fp32 model of a preset, made once under `base` (keyed by the generator's format). */
export async function synthesized(preset: PresetName, base: string): Promise<string> {
  const arch = PRESETS[preset].arch
  const dir = join(base, `nle-bench-${preset}-seed1-f${SYNTH_FORMAT[arch]}`)
  if (!existsSync(join(dir, 'onnx', 'model.onnx'))) {
    process.stderr.write(`bench: generating the ${preset} model in ${dir} (once)…\n`)
    await synthModel({preset, outDir: dir, seed: 1})
  }
  return dir
}

/**
 * Bytes one decode step reads: every initializer, except those only gathered from (an embedding
 * table: one row per token), plus the KV cache at `context` positions. The graph is read without
 * its weights (model/last-logits.ts's reader leaves them in the file as external data); when it
 * cannot be read that way, the files' sizes stand in for the weights.
 */
async function decodeBytes(dir: string, onnxFile: string, context: number): Promise<{weights: number; kv: number; how: string}> {
  const config = await readDecoderConfig(dir)
  const path = join(dir, onnxFile)
  const kvPerPosition = (elementBytes: number): number => 2 * (config.numLayers ?? 0) * (config.numKvHeads ?? 0) * (config.headDim ?? 0) * elementBytes
  const model = await lastPositionLogitsModel(path)
  if (!('bytes' in model)) {
    const size = (p: string): number => (existsSync(p) ? statSync(p).size : 0)
    return {weights: size(path) + size(`${path}_data`), kv: kvPerPosition(4) * context, how: `file sizes (${model.reason})`}
  }
  const graph = onnx.ModelProto.decode(model.bytes).graph!
  const readers = new Map<string, Set<string>>()
  for (const node of graph.node ?? []) for (const input of node.input ?? []) readers.set(input, (readers.get(input) ?? new Set()).add(node.opType ?? ''))
  let weights = 0
  for (const t of graph.initializer ?? []) {
    const ops = [...(readers.get(t.name ?? '') ?? [])]
    if (ops.length > 0 && ops.every((op) => op.startsWith('Gather'))) continue
    const external = (t.externalData ?? []).find((e) => e.key === 'length')
    weights += external !== undefined ? Number(external.value) : (t.rawData?.length ?? 0)
  }
  const cache = (graph.input ?? []).find((i) => i.name === 'past_key_values.0.key')
  const halfCache = cache?.type?.tensorType?.elemType === onnx.TensorProto.DataType.FLOAT16
  return {weights, kv: kvPerPosition(halfCache ? 2 : 4) * context, how: 'graph'}
}

interface CaseResult {
  bench: BenchCase
  preset: PresetName
  nle: WorkerResult
  tjs: WorkerResult
  ablations?: {noPrepack: WorkerResult; fullHead: WorkerResult}
  agree: boolean
  bytes: {weights: number; kv: number; how: string}
}

async function runCase(bench: BenchCase, preset: PresetName, o: {base: string; threads: number; promptTokens: number; newTokens: number; rounds: number; repeats: number}): Promise<CaseResult | {skip: string}> {
  const produced = await bench.produce(await synthesized(preset, o.base))
  if (typeof produced !== 'string') return produced
  const onnxFile = await findOnnxFile(produced, bench.dtype)
  if (onnxFile === undefined) return {skip: `${produced} has no ${bench.dtype} ONNX file`}
  const sides = bench.ablations ? (['nle', 'nle-no-prepack', 'nle-full-head', 'transformers.js'] as const) : (['nle', 'transformers.js'] as const)
  const results = new Map<string, WorkerResult[]>(sides.map((s) => [s, []]))
  for (let r = 0; r < o.rounds; r++) {
    for (const impl of sides) {
      process.stderr.write(`bench: ${impl}, round ${r + 1}/${o.rounds} (${bench.name}${preset === bench.preset ? '' : ` on ${preset}`}, ${o.threads} threads, ${o.promptTokens}+${o.newTokens} tokens, ${o.repeats} requests)…\n`)
      results.get(impl)!.push(await side(impl, produced, bench.dtype, o.threads, o.promptTokens, o.newTokens, o.repeats))
    }
  }
  const nle = best(results.get('nle')!)
  if (nle.lastLogitsOnly === false) process.stderr.write(`bench: the engine could not give ${produced} a last-position LM head\n`)
  const agree = [...results.values()].flat().every((r) => JSON.stringify(r.tokens) === JSON.stringify(nle.tokens))
  return {
    bench,
    preset,
    nle,
    tjs: best(results.get('transformers.js')!),
    ...(bench.ablations ? {ablations: {noPrepack: best(results.get('nle-no-prepack')!), fullHead: best(results.get('nle-full-head')!)}} : {}),
    agree,
    bytes: await decodeBytes(produced, onnxFile, o.promptTokens + o.newTokens / 2),
  }
}

export default async function engineBench(): Promise<BenchRow[]> {
  const threads = env('NLE_BENCH_THREADS', 2)
  const o = {
    base: process.env.NLE_BENCH_MODELS_DIR ?? tmpdir(),
    threads,
    promptTokens: env('NLE_BENCH_PROMPT_TOKENS', 128),
    newTokens: env('NLE_BENCH_NEW_TOKENS', 64),
    rounds: env('NLE_BENCH_ROUNDS', 2),
    repeats: env('NLE_BENCH_REPEATS', 3),
  }
  const swap = new Map<SynthArch, PresetName>()
  for (const p of (process.env.NLE_BENCH_PRESET ?? '').split(',').filter(Boolean)) {
    if (!Object.hasOwn(PRESETS, p)) throw new Error(`NLE_BENCH_PRESET: unknown preset ${p} (one of ${Object.keys(PRESETS).join(', ')})`)
    swap.set(PRESETS[p as PresetName].arch, p as PresetName)
  }
  const only = (process.env.NLE_BENCH_CASES ?? '').split(',').filter(Boolean)
  // Measured before and after the cases, the better of the two kept: on a shared machine one
  // measurement may land on someone else's burst, and the roofline is what the machine can do.
  const before = await memoryBandwidth(threads)
  const done: CaseResult[] = []
  const skipped: {name: string; why: string}[] = []
  for (const bench of CASES) {
    if (only.length > 0 && !only.some((s) => bench.name.includes(s))) continue
    const arch = PRESETS[bench.preset].arch
    const preset = swap.size === 0 ? bench.preset : swap.get(arch)
    const r = preset === undefined ? {skip: `NLE_BENCH_PRESET names no ${arch} preset`} : await runCase(bench, preset, o)
    if ('skip' in r) {
      process.stderr.write(`bench: skipping ${bench.name}: ${r.skip}\n`)
      skipped.push({name: bench.name, why: r.skip})
    } else done.push(r)
  }

  const after = await memoryBandwidth(threads)
  const bandwidth = Math.max(before.read, after.read)
  const copyBandwidth = Math.max(before.copy, after.copy)
  const MB = 1e6
  const rows: BenchRow[] = []
  const peer = (value: number): {name: string; value: number} => ({name: 'transformers.js', value})
  for (const c of done) {
    const {nle, tjs} = c
    const tag = `${c.bench.name}${c.preset === c.bench.preset ? '' : ` on ${c.preset}`}, ${threads} thr`
    const perToken = c.bytes.weights + c.bytes.kv
    const roofline = bandwidth / perToken
    const fraction = nle.decodeTokensPerSecond / roofline
    rows.push(
      {
        name: `${tag}: greedy tokens identical to transformers.js (${nle.tokens.length} tokens, every round)`,
        value: c.agree ? 1 : 0,
        unit: c.agree ? '(yes)' : '(NO)',
        target: '1',
        pass: c.agree,
      },
      {name: `${tag}: prefill tokens/s (${o.promptTokens} tokens)`, value: nle.prefillTokensPerSecond, unit: 'tok/s', peer: peer(tjs.prefillTokensPerSecond)},
      {
        name: `${tag}: decode tokens/s (${o.newTokens} tokens)`,
        value: nle.decodeTokensPerSecond,
        unit: 'tok/s',
        peer: peer(tjs.decodeTokensPerSecond),
        target: '>= 1.0x transformers.js',
        pass: nle.decodeTokensPerSecond >= tjs.decodeTokensPerSecond,
      },
      {name: `${tag}: TTFT, first full-size request after load`, value: nle.firstTtftMs, unit: 'ms', peer: peer(tjs.firstTtftMs)},
      {name: `${tag}: TTFT`, value: nle.ttftMs, unit: 'ms', peer: peer(tjs.ttftMs), target: '<= 1.0x transformers.js', pass: nle.ttftMs <= tjs.ttftMs},
      {
        name: `${tag}: peak RSS`,
        value: nle.peakRssBytes / MB,
        unit: 'MB',
        peer: peer(tjs.peakRssBytes / MB),
        target: '<= 0.8x transformers.js',
        pass: nle.peakRssBytes <= 0.8 * tjs.peakRssBytes,
      },
      {name: `${tag}: decode CPU time per token (robust to a busy machine)`, value: nle.decodeCpuMsPerToken, unit: 'ms', peer: peer(tjs.decodeCpuMsPerToken)},
      {name: `${tag}: model load`, value: nle.loadMs, unit: 'ms', peer: peer(tjs.loadMs)},
      {
        name: `${tag}: bytes read per decoded token (weights ${(c.bytes.weights / MB).toFixed(0)} MB, from the ${c.bytes.how}; KV cache ${(c.bytes.kv / MB).toFixed(1)} MB at ${o.promptTokens + o.newTokens / 2} positions)`,
        value: perToken / MB,
        unit: 'MB',
      },
      {name: `${tag}: decode roofline (read bandwidth / bytes per token)`, value: roofline, unit: 'tok/s'},
      {
        name: `${tag}: decode fraction of roofline`,
        value: 100 * fraction,
        unit: '%',
        peer: peer((100 * tjs.decodeTokensPerSecond) / roofline),
        ...(c.bench.targets?.roofline === undefined ? {} : {target: `>= ${100 * c.bench.targets.roofline}%`, pass: fraction >= c.bench.targets.roofline}),
      },
    )
    const ref = c.bench.targets?.vsFp32 === undefined ? undefined : done.find((d) => d.preset === c.preset && d.bench.dtype === 'fp32')
    if (ref !== undefined && c.bench.targets?.vsFp32 !== undefined) {
      const target = c.bench.targets.vsFp32
      rows.push({
        name: `${tag}: nle decode against the same model at fp32`,
        value: nle.decodeTokensPerSecond,
        unit: 'tok/s',
        peer: {name: `nle ${ref.bench.name}`, value: ref.nle.decodeTokensPerSecond},
        target: `>= ${target}x fp32`,
        pass: nle.decodeTokensPerSecond >= target * ref.nle.decodeTokensPerSecond,
      })
    }
    if (c.ablations !== undefined) {
      const {noPrepack, fullHead} = c.ablations
      // The same engine with ORT weight pre-packing off (EngineOptions.prepack: false): what pre-packing buys.
      rows.push(
        {name: `${tag}: without prepack: decode tokens/s`, value: noPrepack.decodeTokensPerSecond, unit: 'tok/s', peer: peer(tjs.decodeTokensPerSecond)},
        {name: `${tag}: without prepack: TTFT`, value: noPrepack.ttftMs, unit: 'ms', peer: peer(tjs.ttftMs)},
        {name: `${tag}: without prepack: peak RSS`, value: noPrepack.peakRssBytes / MB, unit: 'MB', peer: peer(tjs.peakRssBytes / MB)},
        {name: `${tag}: without prepack: decode CPU time per token`, value: noPrepack.decodeCpuMsPerToken, unit: 'ms', peer: peer(tjs.decodeCpuMsPerToken)},
        // The same engine with the LM head over every prompt position (EngineOptions.lastLogitsOnly: false):
        // what feeding it the last position only buys.
        {name: `${tag}: LM head over every position: TTFT`, value: fullHead.ttftMs, unit: 'ms', peer: peer(tjs.ttftMs)},
        {name: `${tag}: LM head over every position: decode tokens/s`, value: fullHead.decodeTokensPerSecond, unit: 'tok/s', peer: peer(tjs.decodeTokensPerSecond)},
        {name: `${tag}: LM head over every position: peak RSS`, value: fullHead.peakRssBytes / MB, unit: 'MB', peer: peer(tjs.peakRssBytes / MB)},
      )
    }
  }

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
  for (const s of skipped) rows.push({name: s.name, value: 0, unit: '', skipped: s.why})
  rows.push(
    {name: `memory read bandwidth (${threads} threads, memchr; the rooflines' bandwidth)`, value: bandwidth / 1e9, unit: 'GB/s'},
    {name: `memory copy bandwidth (${threads} threads, memcpy read+write)`, value: copyBandwidth / 1e9, unit: 'GB/s'},
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
  )
  return rows
}
