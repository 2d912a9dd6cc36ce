import {cp, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {MANIFEST_FILE, readManifest, sha256File} from './manifest.js'
import {GraphBuilder, onnx} from './onnx-graph.js'
import {saveModel} from './save.js'
import {synthModel} from './synth.js'
import {expectCode} from '../../test-support/rejection.js'

let root: string
let modelDir: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-save-'))
  modelDir = join(root, 'tiny')
  await synthModel({preset: 'tiny', outDir: modelDir, seed: 5})
})

afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

/** A copy of the tiny model with one change applied. */
async function variant(name: string, change: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(root, name)
  await cp(modelDir, dir, {recursive: true})
  await change(dir)
  return dir
}

async function patchConfig(dir: string, patch: Record<string, unknown>): Promise<void> {
  const path = join(dir, 'config.json')
  await writeFile(path, JSON.stringify({...(JSON.parse(await readFile(path, 'utf8')) as object), ...patch}))
}

describe('nle model save from a local folder', () => {
  it('copies the model files and writes a manifest with sizes and sha256', async () => {
    const out = join(root, 'saved')
    const r = await saveModel({source: modelDir, outDir: out})
    expect(r.manifest.source).toEqual({kind: 'local', path: modelDir})
    expect(r.manifest.modelType).toBe('gpt2')
    expect(r.manifest.onnx).toMatchObject({file: 'onnx/model.onnx', numLayers: 2})
    expect(r.manifest.files.map((f) => f.path)).toEqual([
      'config.json',
      'generation_config.json',
      'onnx/model.onnx',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ])
    for (const f of r.manifest.files) expect(f.sha256).toBe(await sha256File(join(modelDir, f.path)))
    expect(r.manifest.totalBytes).toBe(r.manifest.files.reduce((a, f) => a + f.size, 0))
    expect(await readManifest(out)).toEqual(r.manifest)
    await expectCode(saveModel({source: modelDir, outDir: out}), 'MODEL_OUTPUT_EXISTS')
    await saveModel({source: modelDir, outDir: out, force: true})
  })

  it('a missing tokenizer, a corrupt ONNX, a non-decoder ONNX and a wrong-shaped ONNX give distinct codes', async () => {
    const out = join(root, 'never')
    const noTokenizer = await variant('no-tokenizer', (d) => rm(join(d, 'tokenizer.json')))
    await expectCode(saveModel({source: noTokenizer, outDir: out}), 'MODEL_TOKENIZER_MISSING')
    const corrupt = await variant('corrupt', (d) => writeFile(join(d, 'onnx', 'model.onnx'), Buffer.from([0x08, 0x07, 0xff, 0xff, 0x12])))
    await expectCode(saveModel({source: corrupt, outDir: out}), 'MODEL_ONNX_CORRUPT')
    const notDecoder = await variant('not-decoder', async (d) => {
      const g = new GraphBuilder()
      g.input('input_ids', onnx.TensorProto.DataType.FLOAT, ['n'])
      g.op('Identity', ['input_ids'], {}, 'logits')
      g.output('logits', onnx.TensorProto.DataType.FLOAT, ['n'])
      await writeFile(join(d, 'onnx', 'model.onnx'), g.encode('g', 17, 'test'))
    })
    await expectCode(saveModel({source: notDecoder, outDir: out}), 'MODEL_ONNX_NOT_DECODER')
    for (const [name, patch] of [
      ['layers', {n_layer: 3}],
      ['heads', {n_head: 4}],
      ['vocab', {vocab_size: 1000}],
    ] as const) {
      const dir = await variant(`wrong-${name}`, (d) => patchConfig(d, patch))
      await expectCode(saveModel({source: dir, outDir: out}), 'MODEL_ONNX_SHAPE_MISMATCH')
    }
    const badConfig = await variant('bad-config', (d) => writeFile(join(d, 'config.json'), '{not json'))
    await expectCode(saveModel({source: badConfig, outDir: out}), 'MODEL_CONFIG_INVALID')
  })

  it('a missing dtype, a missing source and an unparsable source give distinct codes', async () => {
    const out = join(root, 'never')
    await expectCode(saveModel({source: modelDir, dtype: 'q8', outDir: out}), 'MODEL_DTYPE_UNAVAILABLE')
    await expectCode(saveModel({source: join(root, 'absent'), outDir: out}), 'MODEL_SOURCE_NOT_FOUND')
    await expectCode(saveModel({source: 'not a repo id', outDir: out}), 'MODEL_SOURCE_NOT_FOUND')
    await expect(readFile(join(out, MANIFEST_FILE))).rejects.toThrow()
  })
})
