// The serving benchmark's transformers.js peer, in its own process (its peak RSS is its own):
//   node --import tsx bench/_serving-tjs.ts <modelDir> <dtype> <threads> <newTokens> <promptWords> <N,N,…>
// For each N: N generations at once with transformers.js's text-generation pipeline on one model
// (the same prompts as bench/serving.ts's clients, greedy, newTokens each), timed at its streamer.
// No channel, no HTTP: the pipeline called directly. Prints one JSON line.
import {readFileSync, writeFileSync} from 'node:fs'
import {basename, dirname} from 'node:path'
import {performance} from 'node:perf_hooks'

import {servingPrompt} from './_fixtures.js'

const [modelDir, dtype, threadsArg, newArg, wordsArg, levelsArg] = process.argv.slice(2)
const threads = Number(threadsArg)
const newTokens = Number(newArg)
const words = Number(wordsArg)
const levels = (levelsArg ?? '1').split(',').map(Number)

function pct(values: number[], p: number): number {
  if (values.length === 0) return 0
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

const peakRss = (): number => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024
function resetPeak(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5')
  } catch {
    // Not Linux: the peak covers everything before too.
  }
}

const {env, pipeline, Tensor} = await import('@huggingface/transformers')
env.allowRemoteModels = false
env.localModelPath = dirname(modelDir!) + '/'
const generator = await pipeline('text-generation', basename(modelDir!), {
  dtype: dtype as never,
  device: 'cpu',
  session_options: {intraOpNumThreads: threads, interOpNumThreads: 1},
})

interface Timed {
  ttft: number
  gaps: number[]
  firstAt: number
  endAt: number
  tokens: number
}

async function one(text: string, n: number): Promise<Timed> {
  const ids = (generator.tokenizer(text) as {input_ids: {data: BigInt64Array}}).input_ids.data
  const times: number[] = []
  let calls = 0
  // The streamer is called first with the prompt, then once per generated token.
  const streamer = {
    put: () => {
      if (calls++ > 0) times.push(performance.now())
    },
    end: () => undefined,
  }
  const t0 = performance.now()
  await generator.model.generate({
    inputs: new Tensor('int64', ids, [1, ids.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
    max_new_tokens: n,
    min_new_tokens: n,
    do_sample: false,
    streamer: streamer as never,
  })
  const end = performance.now()
  return {ttft: (times[0] ?? end) - t0, gaps: times.slice(1).map((t, i) => t - times[i]!), firstAt: times[0] ?? end, endAt: end, tokens: times.length}
}

await one(servingPrompt(0, words), 8) // warm-up
const out = []
for (const n of levels) {
  resetPeak()
  const waves = n === 1 ? 3 : 1
  const results: Timed[] = []
  let decoded = 0
  let decodeMs = 0
  for (let w = 0; w < waves; w++) {
    const wave = await Promise.all(Array.from({length: n}, (_, i) => one(servingPrompt(i, words), newTokens)))
    decoded += wave.reduce((a, r) => a + Math.max(0, r.tokens - 1), 0)
    decodeMs += Math.max(...wave.map((r) => r.endAt)) - Math.min(...wave.map((r) => r.firstAt))
    results.push(...wave)
  }
  const gaps = results.flatMap((r) => r.gaps)
  out.push({
    n,
    aggregate: (decoded * 1000) / decodeMs,
    ttft50: pct(results.map((r) => r.ttft), 50),
    ttft95: pct(results.map((r) => r.ttft), 95),
    itl50: pct(gaps, 50),
    itl95: pct(gaps, 95),
    peakRss: peakRss(),
  })
}
console.log(JSON.stringify(out))
process.exit(0)
