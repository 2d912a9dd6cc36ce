// Real exports: the tiny models of ../shared/testdata/models were made by transformers' own modeling
// code and exported by Optimum (see that folder's README); reference.json holds PyTorch's own greedy
// continuations and first-step logits. Each folder must go through `nle model save`, give PyTorch's
// greedy tokens exactly, agree with transformers.js on the same files, keep the last-position LM head,
// and answer a chat request through the enclave server and the attested channel.
import {readFileSync, readdirSync} from 'node:fs'
import {randomUUID} from 'node:crypto'
import {chmod, cp, readFile, rename, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {ServerKeyRing} from '../src/lib/channel/index.js'
import {NleClient} from '../src/lib/client/index.js'
import {Engine} from '../src/lib/engine/index.js'
import {isNleError} from '../src/lib/errors.js'
import {codeOf} from '../src/test-support/rejection.js'
import {type Dtype, type ModelManifest, availableDtypes, saveModel} from '../src/lib/model/index.js'
import {onnx} from '../src/lib/model/onnx-graph.js'
import {EnclaveServer} from '../src/lib/server/app.js'
import {loadChatModel} from '../src/lib/server/model.js'
import {sharedTestdata} from '../src/test-support/testdata.js'
import {tempDir} from '../src/test-support/tmp.js'

interface Reference {
  arch: string
  prompts: {text: string; ids: number[]; greedy_cache: number[]; first_logits: number[]; first_top5: [number, number][]}[]
}

const MODELS = sharedTestdata('models/')
const FOLDERS = MODELS === undefined ? [] : readdirSync(MODELS).filter((d) => readdirSync(join(MODELS, d)).includes('reference.json')).sort()

function listing(dir: string): string[] {
  return readdirSync(dir, {recursive: true, encoding: 'utf8'}).map((p) => p.split('\\').join('/'))
}

let dir: string
let cleanup: () => void

beforeAll(() => {
  ;({dir, cleanup} = tempDir('nle-real-models-'))
})

afterAll(() => cleanup?.())

describe.skipIf(MODELS === undefined)('real exports from ../shared/testdata/models', () => {
  it('holds the folders the README lists (so a missing one cannot pass unnoticed)', () => {
    expect(FOLDERS).toEqual(expect.arrayContaining(['bloom', 'gpt2', 'gpt2-fp16', 'llama', 'llama-merged', 'phi3', 'qwen2']))
  })

  describe.each(FOLDERS)('%s', (name) => {
    const source = join(MODELS ?? '', name)
    const reference = JSON.parse(readFileSync(join(source, 'reference.json'), 'utf8')) as Reference
    const config = JSON.parse(readFileSync(join(source, 'config.json'), 'utf8')) as Record<string, number | boolean | string>
    const dtype = availableDtypes(listing(source))[0] as Dtype
    const fp16 = dtype === 'fp16'
    let saved: string
    let manifest: ModelManifest
    let engine: Engine

    beforeAll(async () => {
      saved = join(dir, name)
      manifest = (await saveModel({source, outDir: saved, dtype})).manifest
      engine = await Engine.load(saved, {threads: 1, dtype})
    }, 60_000)

    afterAll(async () => {
      await engine?.close()
    })

    it('model save accepts it and records its dtype and cache facts', () => {
      const heads = Number(config.n_head ?? config.num_attention_heads)
      const kvHeads = Number(config.num_key_value_heads ?? heads)
      const hidden = Number(config.hidden_size ?? config.n_embd)
      expect(manifest.dtype).toBe(dtype)
      expect(manifest.modelType).toBe(config.model_type)
      expect(manifest.onnx).toMatchObject({
        numLayers: Number(config.n_layer ?? config.num_hidden_layers),
        numHeads: heads,
        numKvHeads: kvHeads,
        headDim: hidden / heads,
        cacheType: fp16 ? 'float16' : 'float32',
        logitsType: fp16 ? 'float16' : 'float32',
        mergedDecoder: name.includes('merged'),
        // The last-position LM head applies to every real export (Cast after the head, tied heads,
        // the merged decoder's If, float16), and the engine loaded that graph too.
        lastLogitsOnly: true,
      })
      expect(engine.decoder.fullHeadReason).toBeUndefined()
    })

    it("greedy generation from reference.json's prompt ids equals PyTorch's greedy_cache exactly", async () => {
      for (const p of reference.prompts) {
        const r = await engine.generate({inputIds: p.ids}, {maxTokens: p.greedy_cache.length, temperature: 0, stopTokenIds: []})
        const eos = p.greedy_cache.findIndex((id) => engine.config.eosTokenIds.includes(id))
        expect(r.tokenIds).toEqual(eos < 0 ? p.greedy_cache : p.greedy_cache.slice(0, eos))
      }
    })

    it(`first-step logits are PyTorch's (within ${fp16 ? 'float16' : 'float32'} tolerance)`, async () => {
      for (const p of reference.prompts) {
        const step = await engine.decoder.forward(p.ids, engine.decoder.emptyCache())
        expect(step.lastLogits).toHaveLength(p.first_logits.length)
        let worst = 0
        for (let i = 0; i < p.first_logits.length; i++) worst = Math.max(worst, Math.abs((step.lastLogits[i] as number) - (p.first_logits[i] as number)))
        // float16 carries ~3 decimal digits; PyTorch's reference was computed in float32.
        expect(worst).toBeLessThan(fp16 ? 0.05 : 1e-3)
        expect(worst).not.toBeNaN()
      }
    })

    it('equals transformers.js on the same files', async () => {
      const {env, pipeline} = await import('@huggingface/transformers')
      env.allowRemoteModels = false
      env.localModelPath = `${dir}/`
      const merged = manifest.onnx.file.includes('decoder_model_merged')
      const generator = await pipeline('text-generation', name, {
        dtype,
        device: 'cpu',
        session_options: {intraOpNumThreads: 1},
        ...(merged ? {model_file_name: 'decoder_model_merged'} : {}),
      })
      try {
        for (const p of reference.prompts) {
          const {Tensor} = await import('@huggingface/transformers')
          const ids = new Tensor('int64', BigInt64Array.from(p.ids, BigInt), [1, p.ids.length])
          const out = (await generator.model.generate({inputs: ids, max_new_tokens: 20, do_sample: false})) as {tolist(): bigint[][]}
          const theirs = out.tolist()[0]!.map(Number).slice(p.ids.length)
          const ours = await engine.generate({inputIds: p.ids}, {maxTokens: 20, temperature: 0})
          expect(ours.tokenIds).toEqual(theirs.filter((id) => !engine.config.eosTokenIds.includes(id)))
        }
      } finally {
        await generator.dispose()
      }
    })

    it('the enclave server loads it and answers a chat request through the attested channel', async () => {
      const logs: string[] = []
      const logger = {log: (level: string, event: string, fields: Record<string, unknown> = {}): void => void logs.push(JSON.stringify({level, event, ...fields}))}
      const digest = `sha256:${(await import('node:crypto')).createHash('sha256').update(await readFile(join(saved, 'nle-model.json'))).digest('hex')}`
      const chat = await loadChatModel({path: saved, digest, threads: 1}, logger)
      const pcrs = {PCR0: 'a'.repeat(96), PCR1: 'b'.repeat(96), PCR2: 'c'.repeat(96)}
      const nsm = new NsmSimulator({measurements: pcrs})
      const server = new EnclaveServer({chat, nsm, keyRing: await ServerKeyRing.create({graceMs: 0}), defaults: {maxTokens: 8, sampling: {temperature: 0, topP: 1, topK: 0}}, logger})
      const socket = join(dir, `${name}.sock`)
      await server.listen(socket)
      const client = new NleClient({target: `unix:${socket}`, expectedPcrs: pcrs, insecureDevRoot: nsm.root})
      try {
        const answer = await client.chat({messages: [{role: 'user', content: 'Is my visit covered?'}], max_tokens: 8, temperature: 0})
        expect(answer.choices[0]!.message.role).toBe('assistant')
        expect(answer.usage?.completion_tokens).toBeGreaterThan(0)
        expect(answer.usage?.prompt_tokens).toBe(engine.promptIds({messages: [{role: 'user', content: 'Is my visit covered?'}]}).length)
        const loaded = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'model_loaded' && 'lastLogitsOnly' in l)
        expect(loaded).toMatchObject({lastLogitsOnly: true})
      } finally {
        client.close()
        await server.drain(1000)
      }
    })
  })
})

describe.skipIf(MODELS === undefined)('what model save refuses, with a code naming why', () => {
  const llama = join(MODELS ?? '', 'llama')
  const merged = join(MODELS ?? '', 'llama-merged')

  /** A copy of a real export with config.json patched and/or its ONNX graph changed. */
  async function variant(from: string, name: string, change: {config?: Record<string, unknown>; graph?: (m: InstanceType<typeof onnx.ModelProto>) => void; rename?: [string, string]}): Promise<string> {
    const out = join(dir, 'variants', name)
    await cp(from, out, {recursive: true})
    await chmodTree(out)
    if (change.config) {
      const path = join(out, 'config.json')
      await writeFile(path, JSON.stringify({...(JSON.parse(await readFile(path, 'utf8')) as object), ...change.config}))
    }
    if (change.graph) {
      const file = readdirSync(join(out, 'onnx')).find((f) => f.endsWith('.onnx')) as string
      const m = onnx.ModelProto.decode(await readFile(join(out, 'onnx', file)))
      change.graph(m)
      await writeFile(join(out, 'onnx', file), onnx.ModelProto.encode(m).finish())
    }
    if (change.rename) await rename(join(out, change.rename[0]), join(out, change.rename[1]))
    return out
  }

  const codeOfSave = (source: string, dtype: Dtype = 'fp32'): Promise<string | undefined> => codeOf(saveModel({source, outDir: join(dir, 'refused', randomUUID()), dtype}))

  it('an encoder-decoder model, by its config or by its decoder graph', async () => {
    expect(await codeOfSave(await variant(llama, 'enc-dec-config', {config: {is_encoder_decoder: true}}))).toBe('MODEL_UNSUPPORTED')
    const encoderStates = await variant(llama, 'enc-dec-graph', {
      graph: (m) => {
        m.graph!.input!.push(valueInfo('encoder_hidden_states', onnx.TensorProto.DataType.FLOAT, ['batch_size', 'encoder_sequence_length', 64]))
      },
    })
    expect(await codeOfSave(encoderStates)).toBe('MODEL_UNSUPPORTED')
  })

  it('a vision model, by its config or by a pixel_values input', async () => {
    expect(await codeOfSave(await variant(llama, 'vision-config', {config: {vision_config: {model_type: 'siglip_vision_model'}}}))).toBe('MODEL_UNSUPPORTED')
    const pixels = await variant(llama, 'vision-graph', {
      graph: (m) => {
        m.graph!.input!.push(valueInfo('pixel_values', onnx.TensorProto.DataType.FLOAT, ['batch_size', 3, 224, 224]))
      },
    })
    expect(await codeOfSave(pixels)).toBe('MODEL_UNSUPPORTED')
  })

  it('a merged decoder without its branch input: dropped, fixed to one branch, or a plain graph under the merged name', async () => {
    const dropped = await variant(merged, 'merged-no-branch', {
      graph: (m) => {
        m.graph!.input = m.graph!.input!.filter((i) => i.name !== 'use_cache_branch')
      },
    })
    expect(await codeOfSave(dropped)).toBe('MODEL_ONNX_CORRUPT')
    const fixed = await variant(merged, 'merged-fixed-branch', {
      graph: (m) => {
        m.graph!.input = m.graph!.input!.filter((i) => i.name !== 'use_cache_branch')
        m.graph!.initializer!.push(onnx.TensorProto.create({name: 'use_cache_branch', dims: [1], dataType: onnx.TensorProto.DataType.BOOL, rawData: new Uint8Array([0])}))
      },
    })
    expect(await codeOfSave(fixed)).toBe('MODEL_ONNX_NOT_DECODER')
    // Under a plain name it loads and answers a first step, but ignores its cache: the probe's cached step shows it.
    const fixedPlain = await variant(fixed, 'merged-fixed-branch-plain', {rename: ['onnx/decoder_model_merged.onnx', 'onnx/model.onnx']})
    expect(await codeOfSave(fixedPlain)).toBe('MODEL_ONNX_UNRUNNABLE')
    const plain = await variant(llama, 'plain-named-merged', {rename: ['onnx/model.onnx', 'onnx/decoder_model_merged.onnx']})
    expect(await codeOfSave(plain)).toBe('MODEL_ONNX_NOT_DECODER')
  })

  it('a config whose head counts do not fit the graph', async () => {
    for (const [name, patch] of [
      ['kv-heads', {num_key_value_heads: 4}],
      ['heads', {num_attention_heads: 8}],
      ['head-dim', {head_dim: 32}],
      ['layers', {num_hidden_layers: 3}],
    ] as const) {
      expect(await codeOfSave(await variant(llama, `wrong-${name}`, {config: patch})), name).toBe('MODEL_ONNX_SHAPE_MISMATCH')
    }
  })

  it('a dtype that is not in the folder, naming the ones that are', async () => {
    const error = await saveModel({source: llama, outDir: join(dir, 'refused', 'q4'), dtype: 'q4'}).catch((e: unknown) => e)
    expect(isNleError(error) && error.code).toBe('MODEL_DTYPE_UNAVAILABLE')
    expect(isNleError(error) && error.details).toMatchObject({available: ['fp32']})
    expect(isNleError(error) && error.hint).toContain('--dtype fp32')
  })
})

function valueInfo(name: string, elemType: number, dims: (number | string)[]): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: {tensorType: {elemType, shape: {dim: dims.map((d) => (typeof d === 'number' ? {dimValue: d} : {dimParam: d}))}}},
  })
}

/** The shared test data is read-only; copies of it must be writable. */
async function chmodTree(path: string): Promise<void> {
  await chmod(path, 0o755)
  for (const e of readdirSync(path, {withFileTypes: true})) {
    const full = join(path, e.name)
    if (e.isDirectory()) await chmodTree(full)
    else await chmod(full, 0o644)
  }
}
