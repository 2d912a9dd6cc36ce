// Continuous batching must not change anyone's output: every sequence decoded in a batch (joining
// at a different step, prompts of different lengths) gets exactly the ids it gets alone.
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {synthModel} from '../model/synth.js'
import {sharedTestdata} from '../../test-support/testdata.js'
import {Engine, type GenerateOptions, type GenerateResult} from './index.js'
import {abortAfter} from '../../test-support/abort.js'

const TEXTS = [
  'Hi',
  'The enclave answers',
  'Patient data stays inside the enclave because',
  'A much longer prompt, with commas, numbers like 1234 and 5678, and a few more words to make it long',
  'One',
  'Two words here',
  'Secrets are sealed to the attested key before they leave',
  'Short again, but not the shortest',
]

let root: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-batching-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

/** Each prompt alone, one after another, through a batch-1 engine. */
async function alone(dir: string, prompts: number[][], options: (i: number) => GenerateOptions, engineOptions = {}): Promise<GenerateResult[]> {
  const engine = await Engine.load(dir, {threads: 1, maxBatch: 1, ...engineOptions})
  try {
    const out: GenerateResult[] = []
    for (const [i, p] of prompts.entries()) out.push(await engine.generate({inputIds: p}, options(i)))
    return out
  } finally {
    await engine.close()
  }
}

/**
 * All prompts through one batching engine: prompt i starts when prompt i-1 has streamed its
 * i-th token (or ended), so they join the batch at different steps.
 */
async function together(engine: Engine, prompts: number[][], options: (i: number) => GenerateOptions): Promise<GenerateResult[]> {
  const results: Promise<GenerateResult>[] = []
  const start = (i: number): void => {
    const p = prompts[i]
    if (p === undefined) return
    results[i] = (async () => {
      const it = engine.stream({inputIds: p}, options(i))
      let n = 0
      let next = false
      for (;;) {
        const r = await it.next()
        if (r.done) {
          if (!next) start(i + 1)
          return r.value
        }
        if (++n === i + 1 && !next) {
          next = true
          start(i + 1)
        }
      }
    })()
  }
  start(0)
  // Wait for the chain of starts to reach the last prompt, then for every result.
  const out: GenerateResult[] = []
  for (let i = 0; i < prompts.length; i++) {
    while (results[i] === undefined) await (results[i - 1] ?? Promise.resolve())
    out.push(await (results[i] as Promise<GenerateResult>))
  }
  return out
}

async function checkModel(dir: string, options: {maxTokens: number; sampled?: boolean; engine?: Record<string, unknown>}): Promise<void> {
  const probe = await Engine.load(dir, {threads: 1, maxBatch: 8, ...options.engine})
  try {
    const prompts = TEXTS.map((t) => probe.tokenizer.encode(t))
    expect(new Set(prompts.map((p) => p.length)).size).toBeGreaterThan(4)
    const opts = (i: number): GenerateOptions =>
      options.sampled === true ? {maxTokens: options.maxTokens + i, temperature: 0.9, topP: 0.95, seed: 100 + i} : {maxTokens: options.maxTokens + i}
    const want = await alone(dir, prompts, opts, options.engine)
    const got = await together(probe, prompts, opts)
    for (let i = 0; i < prompts.length; i++) {
      expect(got[i]?.tokenIds, `prompt ${i}`).toEqual(want[i]?.tokenIds)
      expect(got[i]?.finishReason).toBe(want[i]?.finishReason)
      expect(got[i]?.text).toBe(want[i]?.text)
    }
    const stats = probe.stats()
    console.log(`[batching] ${dir}: max batch ${probe.batching.maxBatch}${probe.batching.unbatchable === undefined ? '' : ` (${probe.batching.unbatchable})`}, ${stats.decodeRows} rows in ${stats.decodeSteps} decode steps`)
    if (probe.batching.unbatchable === undefined) {
      // Rows really shared steps: more rows than decode steps.
      expect(stats.decodeRows).toBeGreaterThan(stats.decodeSteps)
    } else {
      expect(stats.decodeRows).toBe(stats.decodeSteps)
    }
    expect(stats.active + stats.prefilling + stats.waiting).toBe(0)
  } finally {
    await probe.close()
  }
}

describe('continuous batching on the synth models', () => {
  for (const preset of ['tiny', 'llama-tiny'] as const) {
    it(`${preset}: batched greedy ids equal each prompt alone, 8 prompts joining at different steps`, async () => {
      const dir = join(root, preset)
      await synthModel({preset, outDir: dir, seed: 11})
      await checkModel(dir, {maxTokens: 12})
    })

    it(`${preset}: seeded sampling is identical batched and alone`, async () => {
      const dir = join(root, preset)
      await checkModel(dir, {maxTokens: 10, sampled: true})
    })

    it(`${preset}: a long prompt prefilled in chunks joins without changing anyone's output`, async () => {
      const dir = join(root, preset)
      await checkModel(dir, {maxTokens: 8, engine: {prefillChunk: 5}})
    })
  }
})

describe('continuous batching on real exports', () => {
  const models = sharedTestdata('models/')
  for (const name of ['gpt2', 'gpt2-fp16', 'llama', 'llama-merged', 'qwen2', 'phi3', 'bloom']) {
    it.skipIf(models === undefined)(`${name}: batched greedy ids equal each prompt alone`, async () => {
      await checkModel(join(models as string, name), {maxTokens: 10, engine: name.endsWith('fp16') ? {dtype: 'fp16'} : {}})
    })
  }
})

describe('cancellation inside a batch', () => {
  it('a request cancelled mid-batch frees its slot and leaves the others\' output unchanged', async () => {
    const dir = join(root, 'cancel-tiny')
    await synthModel({preset: 'tiny', outDir: dir, seed: 5})
    const engine = await Engine.load(dir, {threads: 1, maxBatch: 2})
    try {
      const [a, b, c] = [TEXTS[2], TEXTS[3], TEXTS[6]].map((t) => engine.tokenizer.encode(t as string)) as [number[], number[], number[]]
      const want = await alone(dir, [a, b, c], () => ({maxTokens: 40}))
      const ra = engine.generate({inputIds: a}, {maxTokens: 40})
      const ac = new AbortController()
      const rb = await abortAfter(engine.stream({inputIds: b}, {maxTokens: 40, signal: ac.signal}), ac, 3)
      expect(rb.finishReason).toBe('cancelled')
      expect(rb.tokenIds.length).toBeLessThan(40)
      expect(rb.tokenIds).toEqual(want[1]?.tokenIds.slice(0, rb.tokenIds.length))
      // Its row left the batch when it finished: at most A is decoding now.
      expect(engine.stats().active + engine.stats().prefilling).toBeLessThanOrEqual(1)
      // Its place goes to C, which joins A's batch.
      const rc = await engine.generate({inputIds: c}, {maxTokens: 40})
      expect((await ra).tokenIds).toEqual(want[0]?.tokenIds)
      expect(rc.tokenIds).toEqual(want[2]?.tokenIds)
    } finally {
      await engine.close()
    }
  })
})
