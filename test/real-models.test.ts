// Real exports: the tiny models of ../shared/testdata/models were made by transformers' own modeling
// code and exported by Optimum (see that folder's README); reference.json holds PyTorch's own greedy
// continuations and first-step logits. Each folder must go through `nle model save`, give PyTorch's
// greedy tokens exactly, agree with transformers.js on the same files, keep the last-position LM head,
// and answer a chat request through the enclave server and the attested channel.
import {readFileSync, readdirSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {ServerKeyRing} from '../src/lib/channel/index.js'
import {NleClient} from '../src/lib/client/index.js'
import {Engine} from '../src/lib/engine/index.js'
import {type Dtype, type ModelManifest, availableDtypes, saveModel} from '../src/lib/model/index.js'
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
