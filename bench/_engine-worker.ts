// One side of the engine benchmark, in its own process so that its peak RSS is its own:
//   node --import tsx bench/_engine-worker.ts <nle|nle-no-prepack|nle-full-head|transformers.js> <modelDir> <dtype> <threads> <promptTokens> <newTokens> [repeats]
// Prints one JSON line: load time, the first request's TTFT, then the median over `repeats` requests of
// TTFT, prefill and decode tokens/s, tokens generated, peak RSS.
// Both sides get the same file (the dtype's, as transformers.js names dtypes), the same token ids,
// greedy decoding, the same number of new tokens, and the same intra-op thread count; each runs a
// short warm-up generation first.
import {basename, dirname} from 'node:path'
import {performance} from 'node:perf_hooks'

import {Tokenizer} from '@huggingface/tokenizers'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import type {Dtype} from '../src/lib/model/layout.js'

const [impl, modelDir, dtypeArg, threadsArg, promptArg, newArg, repeatsArg] = process.argv.slice(2)
const dtype = dtypeArg as Dtype
const threads = Number(threadsArg)
const promptTokens = Number(promptArg)
const newTokens = Number(newArg)
const repeats = Number(repeatsArg ?? 3)

const TEXT =
  'An employee asks about the dental plan, the deductible for a family of four, and whether an ' +
  'orthodontist visit for a child is covered when the provider is out of network. The benefits ' +
  'assistant answers from the plan documents and never stores the question. '

function promptIds(): number[] {
  const tok = new Tokenizer(
    JSON.parse(readFileSync(join(modelDir!, 'tokenizer.json'), 'utf8')) as object,
    JSON.parse(readFileSync(join(modelDir!, 'tokenizer_config.json'), 'utf8')) as object,
  )
  const ids: number[] = []
  while (ids.length < promptTokens) ids.push(...tok.encode(TEXT).ids)
  return ids.slice(0, promptTokens)
}

interface Run {
  ttftMs: number
  decodeMs: number
  generated: number
  /** Process CPU time (user + system) from the first generated token to the last. */
  decodeCpuMs: number
  tokens: number[]
}

const cpuMs = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

async function nle(options: {prepack?: boolean; lastLogitsOnly?: boolean}): Promise<{loadMs: number; lastLogitsOnly?: boolean; run: (ids: number[], n: number) => Promise<Run>}> {
  const {Engine} = await import('../src/lib/engine/index.js')
  const t0 = performance.now()
  const engine = await Engine.load(modelDir!, {threads, dtype, ...options})
  const loadMs = performance.now() - t0
  return {
    loadMs,
    lastLogitsOnly: engine.decoder.lastLogitsOnly,
    // Timed from outside, as for transformers.js: at each token the stream yields.
    run: async (ids, n) => {
      const times: number[] = []
      const tokens: number[] = []
      let cpuFirst = 0
      const start = performance.now()
      for await (const chunk of engine.stream({inputIds: ids}, {maxTokens: n})) {
        if (chunk.tokenIds.length === 0) continue
        times.push(performance.now())
        tokens.push(...chunk.tokenIds)
        if (times.length === 1) cpuFirst = cpuMs()
      }
      const first = times[0] ?? start
      return {ttftMs: first - start, decodeMs: (times.at(-1) ?? first) - first, generated: times.length, decodeCpuMs: cpuMs() - cpuFirst, tokens}
    },
  }
}

async function transformers(): Promise<{loadMs: number; lastLogitsOnly?: boolean; run: (ids: number[], n: number) => Promise<Run>}> {
  const {env, pipeline, Tensor} = await import('@huggingface/transformers')
  env.allowRemoteModels = false
  env.localModelPath = dirname(modelDir!) + '/'
  const t0 = performance.now()
  const generator = await pipeline('text-generation', basename(modelDir!), {
    dtype,
    device: 'cpu',
    session_options: {intraOpNumThreads: threads, interOpNumThreads: 1},
  })
  const loadMs = performance.now() - t0
  return {
    loadMs,
    run: async (ids, n) => {
      const times: number[] = []
      const tokens: number[] = []
      let calls = 0
      let cpuFirst = 0
      let cpuLast = 0
      // The streamer is called first with the prompt, then once per generated token.
      const streamer = {
        put: (value: bigint[][]) => {
          if (calls++ === 0) return
          times.push(performance.now())
          tokens.push(...value.flat().map(Number))
          cpuLast = cpuMs()
          if (times.length === 1) cpuFirst = cpuLast
        },
        end: () => undefined,
      }
      const input = new Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, ids.length])
      const start = performance.now()
      await generator.model.generate({
        inputs: input,
        attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
        max_new_tokens: n,
        min_new_tokens: n,
        do_sample: false,
        streamer: streamer as never,
      })
      const first = times[0] ?? start
      return {ttftMs: first - start, decodeMs: (times.at(-1) ?? first) - first, generated: times.length, decodeCpuMs: cpuLast - cpuFirst, tokens}
    },
  }
}

const ids = promptIds()
const nleSides: Record<string, {prepack?: boolean; lastLogitsOnly?: boolean}> = {nle: {}, 'nle-no-prepack': {prepack: false}, 'nle-full-head': {lastLogitsOnly: false}}
const options = nleSides[impl!]
const side = options === undefined ? await transformers() : await nle(options)
await side.run(ids.slice(0, 8), 4)
// The first full-size request after load pays one-time costs (the ORT arena and the heap growing to
// this prompt's activations); a serving engine answers many. It is reported on its own, and the
// steady-state figures are the median of `repeats` requests.
const runs: Run[] = []
for (let i = 0; i < repeats; i++) runs.push(await side.run(ids, newTokens))
/**
 * This process's own peak RSS: VmHWM, which exec resets. getrusage's maxRSS is not: Linux carries the
 * peak of the image exec replaced into it, so a worker forked from a parent holding a freshly
 * generated gpt2-medium reported that parent's 2.9 GB as its own.
 */
function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))
    if (m) return Number(m[1]) * 1024
  } catch {
    // Not Linux.
  }
  return process.resourceUsage().maxRSS * 1024
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const ttftMs = median(runs.map((r) => r.ttftMs))
const perToken = (r: Run, ms: number): number => (r.generated > 1 ? ms / (r.generated - 1) : 0)
process.stdout.write(
  JSON.stringify({
    impl,
    loadMs: side.loadMs,
    ...(side.lastLogitsOnly === undefined ? {} : {lastLogitsOnly: side.lastLogitsOnly}),
    firstTtftMs: runs[0]!.ttftMs,
    ttftMs,
    prefillTokensPerSecond: (ids.length * 1000) / ttftMs,
    decodeTokensPerSecond: 1000 / median(runs.map((r) => perToken(r, r.decodeMs))),
    generated: Math.min(...runs.map((r) => r.generated)),
    decodeCpuMsPerToken: median(runs.map((r) => perToken(r, r.decodeCpuMs))),
    tokens: runs[0]!.tokens,
    peakRssBytes: peakRssBytes(),
  }) + '\n',
)
