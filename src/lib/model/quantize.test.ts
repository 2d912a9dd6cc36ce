import {existsSync, readFileSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, dirname, join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {Engine} from '../engine/index.js'
import {hasCode} from '../errors.js'
import {readManifest} from './manifest.js'
import {onnx} from './onnx-graph.js'
import {lastLogitsSimilarity, quantizeModel, type QuantizeTarget} from './quantize.js'
import {synthModel} from './synth.js'

const TESTDATA = join(process.cwd(), '..', 'shared', 'testdata', 'models')
const GPT2_PROMPTS = [
  [15496, 11, 616, 1438, 318],
  [464, 3139, 7033, 3436, 262, 6500, 11, 340, 318],
]

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-quantize-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(hasCode(error, code), `expected ${code}, got ${String((error as {code?: string})?.code ?? error)}`).toBe(true)
}

/** Greedy ids from transformers.js on a folder's file of `dtype`. */
async function transformersGreedy(dir: string, dtype: QuantizeTarget, prompt: readonly number[], maxNewTokens: number): Promise<number[]> {
  const {env, pipeline} = await import('@huggingface/transformers')
  env.allowRemoteModels = false
  env.localModelPath = dirname(dir) + '/'
  const generator = await pipeline('text-generation', basename(dir), {dtype, device: 'cpu', session_options: {intraOpNumThreads: 1}})
  try {
    const {Tensor} = await import('@huggingface/transformers')
    const ids = new Tensor('int64', BigInt64Array.from(prompt, (x) => BigInt(x)), [1, prompt.length])
    const out = (await generator.model.generate({inputs: ids, attention_mask: new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]), max_new_tokens: maxNewTokens, min_new_tokens: maxNewTokens, do_sample: false})) as {tolist(): bigint[][]}
    return out.tolist()[0]!.map(Number).slice(prompt.length)
  } finally {
    await generator.dispose()
  }
}

interface Case {
  name: string
  /** Prepares the fp32 folder; returns undefined (with the reason printed) when it cannot. */
  source: () => Promise<string | undefined>
  prompts: () => number[][]
  /** Lowest cosine accepted: the bounds, or, for random weights drawn with std 0.3, the floor measured (see the report). */
  minCosine: Record<QuantizeTarget, number>
  /** Smallest weight-matrix reduction accepted. */
  minRatio: Record<QuantizeTarget, number>
  /** False where transformers.js does not read the file name (it has no decoder_model_merged lookup). */
  transformers?: boolean
}

const exportCase = (folder: string, file = 'model.onnx'): Case => ({
  name: `the ${folder} export`,
  source: async () => {
    const dir = join(TESTDATA, folder)
    if (existsSync(join(dir, 'onnx', file))) return dir
    console.log(`skipped: ${dir} is absent (a clone without ../shared/testdata)`)
    return undefined
  },
  prompts: () => (JSON.parse(readFileSync(join(TESTDATA, folder, 'reference.json'), 'utf8')) as {prompts: {ids: number[]}[]}).prompts.map((p) => p.ids),
  // Random weights with initializer_range 0.3 (15x GPT-2's) amplify any weight error through the
  // layers: measured q4 cosines 0.92–0.98 here, against 0.993 for the same shapes at std 0.02 below.
  minCosine: {q8: 0.999, q4: 0.9},
  minRatio: {q8: 3.4, q4: 6},
})

const cases: Case[] = [
  exportCase('llama'),
  exportCase('gpt2'),
  // Optimum's merged decoder: the products are in both branches of an If, the weights shared in the main graph.
  {...exportCase('llama-merged', 'decoder_model_merged.onnx'), transformers: false},
  {
    name: 'the tiny synth model (hidden 16: K is smaller than a block)',
    source: async () => (await synthModel({preset: 'tiny', outDir: join(root, 'synth-tiny'), seed: 7})).dir,
    prompts: () => GPT2_PROMPTS,
    minCosine: {q8: 0.999, q4: 0.95},
    // K = 16 pads every column to one 32-value block: 16 fp32 bytes become 16 (+ scale, zero point).
    minRatio: {q8: 1.7, q4: 3},
  },
  {
    name: 'a synth model with GPT-2 initialisation (hidden 64, std 0.02)',
    source: async () => (await synthModel({preset: {nLayer: 2, nEmbd: 64, nHead: 4, nPositions: 256, initStd: 0.02}, outDir: join(root, 'synth-64'), seed: 7})).dir,
    prompts: () => GPT2_PROMPTS,
    minCosine: {q8: 0.999, q4: 0.99},
    minRatio: {q8: 3.4, q4: 6},
  },
]

for (const c of cases) {
  describe(`model quantize on ${c.name}`, () => {
    for (const to of ['q8', 'q4'] as const) {
      it(`${to}: loads in nle's engine and in transformers.js, both give the same greedy tokens; logits stay close to fp32; weights shrink`, async () => {
        const src = await c.source()
        if (src === undefined) return
        const out = join(root, `${basename(src)}-${to}`)
        const r = await quantizeModel({inDir: src, outDir: out, to})
        const ratio = r.bytes.weightsBefore / r.bytes.weightsAfter
        const prompts = c.prompts()
        const sim = await lastLogitsSimilarity({dir: src, dtype: 'fp32'}, {dir: out, dtype: to}, prompts)
        console.log(
          `${c.name} ${to}: ${r.quantized} products quantized, ${r.kept.length} kept; weight matrices ${r.bytes.weightsBefore} → ${r.bytes.weightsAfter} bytes (${ratio.toFixed(2)}x), ` +
            `ONNX files ${r.bytes.fileBefore} → ${r.bytes.fileAfter} bytes; last-position logits cosine vs fp32 ${sim.cosine.map((x) => x.toFixed(5)).join(', ')}; ${Math.round(r.ms)} ms`,
        )
        expect(r.quantized).toBeGreaterThan(0)
        expect(r.kept).toEqual([])
        expect(ratio).toBeGreaterThanOrEqual(c.minRatio[to])
        expect(sim.min).toBeGreaterThanOrEqual(c.minCosine[to])
        // The manifest records the dtype and the files the engine and `model save` pick up.
        const manifest = await readManifest(out)
        expect(manifest.dtype).toBe(to)
        expect(manifest.onnx.file).toBe(r.onnxFile)
        expect(manifest.files.map((f) => f.path)).toContain(`${r.onnxFile}_data`)

        // prepack: the engine turns pre-packing off below 100 MB, and without it onnxruntime runs
        // MatMulNBits's fp32 fallback instead of the accuracy_level 4 kernel transformers.js runs.
        const engine = await Engine.load(out, {dtype: to, threads: 1, prepack: true})
        try {
          for (const ids of prompts) {
            const ours = await engine.generate({inputIds: ids}, {maxTokens: 12})
            expect(ours.tokenIds.length).toBeGreaterThan(0)
            if (c.transformers === false) continue
            expect(ours.tokenIds).toEqual(await transformersGreedy(out, to, ids, ours.tokenIds.length))
          }
        } finally {
          await engine.close()
        }
      }, 120_000)
    }
  })
}

describe('model quantize options and refusals', () => {
  let tiny: string
  beforeAll(async () => {
    tiny = (await synthModel({preset: 'tiny', outDir: join(root, 'opts'), seed: 3})).dir
  })

  it('writes MatMulNBits nodes with K, N, bits, block_size and accuracy_level 4; --keep lm-head leaves the head a MatMul', async () => {
    const out = join(root, 'opts-keep')
    const r = await quantizeModel({inDir: tiny, outDir: out, to: 'q4', keepLmHead: true, symmetric: true})
    expect(r.kept).toEqual([expect.objectContaining({reason: expect.stringContaining('LM head')})])
    const model = onnx.ModelProto.decode(await readFile(join(out, r.onnxFile)))
    const nbits = model.graph!.node!.filter((n) => n.opType === 'MatMulNBits')
    expect(nbits.length).toBe(r.quantized)
    const attrs = Object.fromEntries(nbits[0]!.attribute!.map((a) => [a.name, Number(a.i)]))
    expect(attrs).toEqual({K: 16, N: 48, bits: 4, block_size: 32, accuracy_level: 4})
    expect(nbits.every((n) => n.domain === 'com.microsoft' && n.input![3] === '')).toBe(true)
    expect(model.opsetImport!.some((o) => o.domain === 'com.microsoft')).toBe(true)
    const head = model.graph!.node!.find((n) => n.output!.includes('logits'))
    expect(head?.opType).toBe('MatMul')
    // The kept head's Transpose of the embedding is still there; the engine still slices it to the last position.
    const engine = await Engine.load(out, {dtype: 'q4', threads: 1})
    try {
      expect(engine.decoder.lastLogitsOnly).toBe(true)
    } finally {
      await engine.close()
    }
  })

  it('OUT = IN adds the file beside the fp32 one; existing outputs are refused without --force', async () => {
    const dir = (await synthModel({preset: 'tiny', outDir: join(root, 'beside'), seed: 3})).dir
    const first = await quantizeModel({inDir: dir, outDir: dir, to: 'q8'})
    expect(first.onnxFile).toBe('onnx/model_quantized.onnx')
    expect(existsSync(join(dir, 'onnx', 'model.onnx'))).toBe(true)
    await expectCode(quantizeModel({inDir: dir, outDir: dir, to: 'q8'}), 'MODEL_OUTPUT_EXISTS')
    const again = await quantizeModel({inDir: dir, outDir: dir, to: 'q8', force: true})
    expect(again.manifest.files).toEqual(first.manifest.files)
    // Another folder that already has the copied files is refused too.
    await expectCode(quantizeModel({inDir: dir, outDir: join(root, 'opts-keep'), to: 'q8'}), 'MODEL_OUTPUT_EXISTS')
  })

  it('refuses a folder without an fp32 file and a graph with nothing to quantize', async () => {
    await expectCode(quantizeModel({inDir: join(root, 'nope'), outDir: join(root, 'x'), to: 'q4'}), 'MODEL_SOURCE_NOT_FOUND')
    const q = join(root, 'only-q4')
    await quantizeModel({inDir: tiny, outDir: q, to: 'q4'})
    await expectCode(quantizeModel({inDir: q, outDir: join(root, 'y'), to: 'q8'}), 'MODEL_DTYPE_UNAVAILABLE')
    await expectCode(quantizeModel({inDir: tiny, outDir: join(root, 'z'), to: 'q4', blockSize: 24}), 'MODEL_UNSUPPORTED')
  })
})
