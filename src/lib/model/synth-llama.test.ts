import {copyFile, mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, dirname, join} from 'node:path'

import type onnxProto from 'onnx-proto'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {Engine} from '../engine/index.js'
import {argmax} from '../engine/sampling.js'
import {sharedTestdata} from '../../test-support/testdata.js'
import {hasCode} from '../errors.js'
import {sha256File} from './manifest.js'
import {onnx} from './onnx-graph.js'
import {probeDecoder} from './save.js'
import {buildLlamaOnnx, llamaParameterCount} from './synth-llama.js'
import {LLAMA_PRESETS} from './synth-presets.js'
import {PRESETS, presetId, synthModel} from './synth.js'

/** Optimum's real llama export (../shared/testdata/models/llama), or undefined in a clone without it. */
const REAL_LLAMA = sharedTestdata('models/llama/')
const PROMPTS = ['Hello, my name is', 'Patient data stays inside the enclave because']

let root: string
let inline: string
let external: string
let engine: Engine

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-synth-llama-'))
  inline = join(root, 'inline')
  external = join(root, 'external')
  await synthModel({preset: 'llama-tiny', outDir: inline, seed: 3})
  await synthModel({preset: 'llama-tiny', outDir: external, seed: 3, externalData: true})
  engine = await Engine.load(inline, {threads: 1})
})
afterAll(async () => {
  await engine?.close()
  await rm(root, {recursive: true, force: true})
})

async function transformersGreedy(dir: string, prompts: string[], n: number): Promise<{promptIds: number[]; tokens: number[]}[]> {
  const {env, pipeline} = await import('@huggingface/transformers')
  env.allowRemoteModels = false
  env.localModelPath = dirname(dir) + '/'
  const generator = await pipeline('text-generation', basename(dir), {dtype: 'fp32', device: 'cpu', session_options: {intraOpNumThreads: 1}})
  try {
    const out: {promptIds: number[]; tokens: number[]}[] = []
    for (const prompt of prompts) {
      const ids = generator.tokenizer(prompt).input_ids
      const all = ((await generator.model.generate({inputs: ids, max_new_tokens: n, min_new_tokens: n, do_sample: false})) as {tolist(): bigint[][]}).tolist()[0]!.map(Number)
      const promptLength = (ids as {dims: number[]}).dims.at(-1)!
      out.push({promptIds: all.slice(0, promptLength), tokens: all.slice(promptLength)})
    }
    return out
  } finally {
    await generator.dispose()
  }
}

const maxAbsDiff = (a: Float32Array, b: Float32Array): number => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!))
  return m
}

describe('nle model synth --arch llama', () => {
  it("writes a LlamaConfig and Optimum's llama I/O; the 4-head tiny preset's cache has 2 KV heads", async () => {
    const config = JSON.parse(await readFile(join(inline, 'config.json'), 'utf8')) as Record<string, unknown>
    expect(config).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      num_hidden_layers: 2,
      hidden_size: 16,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 48,
      hidden_act: 'silu',
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 256,
      tie_word_embeddings: false,
      vocab_size: 50257,
    })
    const {io, lastLogitsOnly} = await probeDecoder(join(inline, 'onnx', 'model.onnx'), {numLayers: 2, numKvHeads: 2, headDim: 4, vocabSize: 50257})
    expect(lastLogitsOnly).toBe(true)
    expect(io.kvHeads).toBe(2)
    expect(io.pastKeyShape).toEqual(['batch_size', 2, 'past_sequence_length', 4])
    expect(io.inputs.map((i) => [i.name, i.type])).toEqual([
      ['input_ids', 'int64'],
      ['attention_mask', 'int64'],
      ['position_ids', 'int64'],
      ['past_key_values.0.key', 'float32'],
      ['past_key_values.0.value', 'float32'],
      ['past_key_values.1.key', 'float32'],
      ['past_key_values.1.value', 'float32'],
    ])
    expect(io.outputs.map((o) => o.name)).toEqual(['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'])
    const model = onnx.ModelProto.decode(await readFile(join(inline, 'onnx', 'model.onnx')))
    const inits = new Set(model.graph!.initializer!.map((t) => t.name))
    // Untied: the LM head is its own weight, not the embedding.
    expect(inits.has('lm_head.weight')).toBe(true)
    expect(inits.has('model.embed_tokens.weight')).toBe(true)
  })

  it.skipIf(REAL_LLAMA === undefined)("declares the same I/O names, dim names and dtypes as Optimum's real llama export", async () => {
    const llama = REAL_LLAMA!
    const signature = async (path: string): Promise<string[]> => {
      const g = onnx.ModelProto.decode(await readFile(path)).graph!
      // Symbolic dims by name; fixed ones (heads, head size, vocabulary) differ with the shape.
      const dims = (v: onnxProto.onnx.IValueInfoProto): string => v.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || 'N').join(',')
      return [...g.input!, ...g.output!].map((v) => `${v.name} ${v.type!.tensorType!.elemType} [${dims(v)}]`)
    }
    expect(await signature(join(inline, 'onnx', 'model.onnx'))).toEqual(await signature(join(llama, 'onnx', 'model.onnx')))
  })

  it('loads in nle and in transformers.js, and both give the same greedy tokens', async () => {
    const theirs = await transformersGreedy(inline, PROMPTS, 24)
    for (const [i, prompt] of PROMPTS.entries()) {
      const ours = await engine.generate({prompt}, {maxTokens: 24})
      expect(theirs[i]!.promptIds).toEqual(engine.tokenizer.encode(prompt))
      expect(ours.tokenIds).toEqual(theirs[i]!.tokens)
      console.log(`llama-tiny greedy, "${prompt}": ${ours.tokenIds.length} tokens identical in nle and transformers.js`)
    }
  })

  it('generation with the KV cache equals recomputation of the whole sequence without it', async () => {
    const prompt = engine.tokenizer.encode('A question with private data')
    const cached = await engine.generate({inputIds: prompt}, {maxTokens: 12})
    let step = await engine.decoder.forward(prompt, engine.decoder.emptyCache())
    const seq = [...prompt]
    let worst = 0
    for (const id of cached.tokenIds) {
      const full = await engine.decoder.forward(seq, engine.decoder.emptyCache())
      worst = Math.max(worst, maxAbsDiff(full.lastLogits, step.lastLogits))
      expect(argmax(full.lastLogits)).toBe(id)
      seq.push(id)
      step = await engine.decoder.forward([id], step.cache)
    }
    console.log(`llama-tiny: ${cached.tokenIds.length} cached steps, largest |cached - recomputed| logit difference ${worst.toExponential(2)}`)
    expect(worst).toBeLessThan(1e-4)
  })

  it('is reproducible: the same seed gives the same bytes, another seed other weights', async () => {
    const again = join(root, 'again')
    const other = join(root, 'other')
    await synthModel({preset: 'llama-tiny', outDir: again, seed: 3})
    await synthModel({preset: 'llama-tiny', outDir: other, seed: 4})
    const a = await sha256File(join(inline, 'onnx', 'model.onnx'))
    expect(await sha256File(join(again, 'onnx', 'model.onnx'))).toBe(a)
    expect(await sha256File(join(other, 'onnx', 'model.onnx'))).not.toBe(a)
    const externalAgain = join(root, 'external-again')
    await synthModel({preset: 'llama-tiny', outDir: externalAgain, seed: 3, externalData: true})
    for (const f of ['model.onnx', 'model.onnx_data']) {
      expect(await sha256File(join(externalAgain, 'onnx', f))).toBe(await sha256File(join(external, 'onnx', f)))
    }
  })

  it('with external data (onnx/model.onnx_data, as Optimum writes big models) both engines load it and agree with the inline file', async () => {
    const config = JSON.parse(await readFile(join(external, 'config.json'), 'utf8')) as Record<string, unknown>
    expect(config['transformers.js_config']).toEqual({use_external_data_format: {'model.onnx': 1}})
    const onnxFile = onnx.ModelProto.decode(await readFile(join(external, 'onnx', 'model.onnx')))
    const weights = onnxFile.graph!.initializer!.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    expect(weights.map((t) => t.name)).toContain('lm_head.weight')
    const e = await Engine.load(external, {threads: 1})
    try {
      expect(e.decoder.lastLogitsOnly).toBe(true)
      const prompt = e.tokenizer.encode(PROMPTS[0]!)
      const a = await e.decoder.forward(prompt, e.decoder.emptyCache())
      const b = await engine.decoder.forward(prompt, engine.decoder.emptyCache())
      expect(maxAbsDiff(a.lastLogits, b.lastLogits)).toBe(0)
      const theirs = await transformersGreedy(external, [PROMPTS[0]!], 16)
      const ours = await e.generate({inputIds: prompt}, {maxTokens: 16})
      expect(ours.tokenIds).toEqual(theirs[0]!.tokens)
    } finally {
      await e.close()
    }
  })

  it.skipIf(REAL_LLAMA === undefined)("computes what transformers' LlamaForCausalLM computes: with the real export's weights, PyTorch's greedy ids and logits", async () => {
    const llama = REAL_LLAMA!
    // The real export's weights, by the parameter each MatMul or RMSNorm scale is (the exporter
    // names some initializers by parameter and shares identical ones, such as all-ones norm scales).
    const real = onnx.ModelProto.decode(await readFile(join(llama, 'onnx', 'model.onnx'))).graph!
    const byName = new Map(real.initializer!.map((t) => [t.name!, t]))
    const names = new Map<string, string>()
    for (const t of real.initializer!) names.set(t.name!, t.name!)
    for (const n of real.node!) {
      const m = /^\/model\/layers\.(\d+)\/(self_attn|mlp)\/(\w+_proj)\/MatMul$/.exec(n.name ?? '')
      if (m) names.set(`model.layers.${m[1]}.${m[2]}.${m[3]}.weight`, n.input![1]!)
      const norm = /^\/model\/(?:layers\.(\d+)\/)?(input_layernorm|post_attention_layernorm|norm)\/Mul_1$/.exec(n.name ?? '')
      if (norm) names.set(norm[1] === undefined ? 'model.norm.weight' : `model.layers.${norm[1]}.${norm[2]}.weight`, n.input![0]!)
      if (n.name === '/lm_head/MatMul') names.set('lm_head.weight', n.input![1]!)
    }
    // Shared initializers appear under their other names through Identity nodes.
    const identity = new Map(real.node!.filter((n) => n.opType === 'Identity').map((n) => [n.output![0]!, n.input![0]!]))
    const weights = (name: string): Float32Array => {
      const source = names.get(name) ?? ''
      const t = byName.get(identity.get(source) ?? source)
      if (t === undefined) throw new Error(`the real export has no weight for ${name}`)
      const raw = t.rawData!
      return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
    }
    const config = JSON.parse(await readFile(join(llama, 'config.json'), 'utf8')) as Record<string, number>
    const shape = {
      nLayer: config.num_hidden_layers!,
      hidden: config.hidden_size!,
      nHead: config.num_attention_heads!,
      nKvHead: config.num_key_value_heads!,
      intermediate: config.intermediate_size!,
      maxPositions: config.max_position_embeddings!,
      ropeTheta: config.rope_theta!,
      rmsNormEps: config.rms_norm_eps!,
      initStd: 0,
    }
    const dir = join(root, 'real-weights')
    await mkdir(join(dir, 'onnx'), {recursive: true})
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) await copyFile(join(llama, f), join(dir, f))
    await writeFile(join(dir, 'onnx', 'model.onnx'), buildLlamaOnnx(shape, {seed: 0, vocabSize: config.vocab_size!, weights}))
    const reference = JSON.parse(await readFile(join(llama, 'reference.json'), 'utf8')) as {
      prompts: {ids: number[]; greedy_cache: number[]; first_logits: number[]}[]
    }
    const e = await Engine.load(dir, {threads: 1})
    try {
      for (const p of reference.prompts) {
        const first = await e.decoder.forward(p.ids, e.decoder.emptyCache())
        const diff = maxAbsDiff(first.lastLogits, Float32Array.from(p.first_logits))
        const ours = await e.generate({inputIds: p.ids}, {maxTokens: p.greedy_cache.length})
        console.log(`synth llama graph with the real export's weights: ${p.greedy_cache.length} greedy ids equal PyTorch's; first-step logits within ${diff.toExponential(2)}`)
        expect(ours.tokenIds).toEqual(p.greedy_cache)
        expect(diff).toBeLessThan(1e-4)
      }
    } finally {
      await e.close()
    }
  })

  it('presets: --arch picks the shape; tiny alone stays GPT-2; 0.5b has the shape of Qwen2.5-0.5B', () => {
    expect(presetId(undefined, 'tiny')).toBe('tiny')
    expect(presetId('gpt2', 'tiny')).toBe('tiny')
    expect(presetId('llama', 'tiny')).toBe('llama-tiny')
    expect(presetId('llama', '0.5b')).toBe('llama-0.5b')
    expect(presetId('llama', 'llama-0.5b')).toBe('llama-0.5b')
    expect(presetId(undefined, 'llama-0.5b')).toBe('llama-0.5b')
    expect(PRESETS.tiny.arch).toBe('gpt2')
    for (const [arch, preset] of [
      ['gpt2', '0.5b'],
      ['llama', 'gpt2-medium'],
      ['gpt2', 'llama-tiny'],
      [undefined, '0.5b'],
    ] as const) {
      let error: unknown
      try {
        presetId(arch, preset)
      } catch (e) {
        error = e
      }
      expect(hasCode(error, 'MODEL_PRESET_UNKNOWN'), `${arch} ${preset}`).toBe(true)
    }
    expect(LLAMA_PRESETS['0.5b']).toMatchObject({nLayer: 24, hidden: 896, nHead: 14, nKvHead: 2, intermediate: 4864})
    expect(PRESETS['llama-0.5b'].externalData).toBe(true)
    const n = llamaParameterCount(LLAMA_PRESETS['0.5b'])
    console.log(`llama-0.5b: ${(n / 1e6).toFixed(1)}M parameters, ${((4 * n) / 1e9).toFixed(2)} GB fp32`)
    expect(n).toBeGreaterThan(440e6)
    expect(n).toBeLessThan(455e6)
  })
})
