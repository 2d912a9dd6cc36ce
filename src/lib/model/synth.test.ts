import {readFile, mkdtemp, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {Tokenizer} from '@huggingface/tokenizers'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {hasCode} from '../errors.js'
import {sha256File} from './manifest.js'
import {probeDecoder} from './save.js'
import {PRESETS, SYNTH_FORMAT, type SynthProgress, parameterCount, resolvePreset, synthModel} from './synth.js'

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-synth-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

describe('nle model synth', () => {
  it('writes the HF/transformers.js layout; the tiny model is a few MB and a KV-cache decoder', async () => {
    const r = await synthModel({preset: 'tiny', outDir: join(root, 'a'), seed: 1})
    expect(r.files).toEqual([
      'config.json',
      'generation_config.json',
      'onnx/model.onnx',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ])
    expect((await stat(join(root, 'a', 'onnx', 'model.onnx'))).size).toBeLessThan(5_000_000)
    const config = JSON.parse(await readFile(join(root, 'a', 'config.json'), 'utf8')) as Record<string, unknown>
    expect(config).toMatchObject({model_type: 'gpt2', n_layer: 2, n_head: 2, n_embd: 16, vocab_size: 50257, tie_word_embeddings: true})
    const {io, lastLogitsOnly} = await probeDecoder(join(root, 'a', 'onnx', 'model.onnx'), {numLayers: 2, numKvHeads: 2, headDim: 8, vocabSize: 50257})
    expect(lastLogitsOnly).toBe(true)
    expect(io.numLayers).toBe(2)
    expect(io.inputs.map((i) => i.name)).toEqual([
      'input_ids',
      'attention_mask',
      'position_ids',
      'past_key_values.0.key',
      'past_key_values.0.value',
      'past_key_values.1.key',
      'past_key_values.1.value',
    ])
    expect(io.outputs.map((o) => o.name)).toEqual(['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'])
    expect(io.pastKeyShape).toEqual(['batch_size', 2, 'past_sequence_length', 8])
  })

  it('reports its progress: the weights as they are made (up to all of them), then the write; the bytes are the same', async () => {
    const seen: SynthProgress[] = []
    await synthModel({preset: 'tiny', outDir: join(root, 'p'), seed: 1, onProgress: (p) => seen.push(p)})
    const weights = seen.filter((p) => p.stage === 'weights')
    expect(weights.length).toBeGreaterThan(10)
    expect(weights.every((p, i) => i === 0 || p.bytes >= weights[i - 1]!.bytes)).toBe(true)
    expect(weights[0]!.bytes).toBe(0)
    expect(weights.at(-1)!.bytes).toBe(parameterCount(resolvePreset('tiny')) * 4)
    expect(seen.at(-1)).toEqual({stage: 'write', file: 'onnx/model.onnx'})
    expect(await sha256File(join(root, 'p', 'onnx', 'model.onnx'))).toBe(await sha256File(join(root, 'a', 'onnx', 'model.onnx')))
  })

  it('is reproducible: the same seed gives the same bytes, another seed other weights', async () => {
    await synthModel({preset: 'tiny', outDir: join(root, 'b'), seed: 1})
    await synthModel({preset: 'tiny', outDir: join(root, 'c'), seed: 2})
    const a = await sha256File(join(root, 'a', 'onnx', 'model.onnx'))
    expect(await sha256File(join(root, 'b', 'onnx', 'model.onnx'))).toBe(a)
    expect(await sha256File(join(root, 'c', 'onnx', 'model.onnx'))).not.toBe(a)
  })

  it("ships GPT-2's real byte-level BPE vocabulary and merges", async () => {
    const json = JSON.parse(await readFile(join(root, 'a', 'tokenizer.json'), 'utf8')) as object
    const config = JSON.parse(await readFile(join(root, 'a', 'tokenizer_config.json'), 'utf8')) as object
    const tok = new Tokenizer(json, config)
    // GPT-2's published ids for these strings.
    expect(tok.encode('Hello world').ids).toEqual([15496, 995])
    expect(tok.encode(' the<|endoftext|>').ids).toEqual([262, 50256])
    expect(tok.decode(tok.encode('naïve café ☕').ids)).toBe('naïve café ☕')
  })

  it('writes the GPT-2 graph of SYNTH_FORMAT.gpt2 (bump it, and this digest, when the graph changes)', async () => {
    expect(SYNTH_FORMAT.gpt2).toBe(2)
    expect(await sha256File(join(root, 'a', 'onnx', 'model.onnx'))).toBe('6029bd508616e44bcbe22222529d0f5482864e768cfdd063945c02cefcb7342b')
  })

  it('gpt2-medium has the shape of gpt2-medium (~355M parameters)', () => {
    expect(PRESETS['gpt2-medium'].shape).toMatchObject({nLayer: 24, nEmbd: 1024, nHead: 16})
    const n = parameterCount(PRESETS['gpt2-medium'])
    expect(n).toBeGreaterThan(350e6)
    expect(n).toBeLessThan(360e6)
  })

  it('rejects an unknown preset', () => {
    let error: unknown
    try {
      resolvePreset('gpt5')
    } catch (e) {
      error = e
    }
    expect(hasCode(error, 'MODEL_PRESET_UNKNOWN')).toBe(true)
  })
})
