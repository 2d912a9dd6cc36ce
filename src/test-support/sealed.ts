// Sealed-model fixtures: a small model folder with a manifest (bytes only, no ONNX needed to seal),
// and an in-memory stand-in for KMS's GenerateDataKey / Decrypt that checks the encryption context.
import {createCipheriv, createDecipheriv, randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {NleError} from '../lib/errors.js'
import {type ModelManifest, describeFiles, writeManifest} from '../lib/model/manifest.js'
import type {FetchSealed, UnwrapModelKey} from '../lib/model/seal/open.js'
import type {GenerateDataKey} from '../lib/model/seal/seal.js'

export const CANARY = Buffer.from('NLE-CANARY-7f3a9c1e-weights-must-stay-sealed')

/** A model folder: config, tokenizer files and an "ONNX" weight file of `weightBytes` with canaries planted. */
export async function writeFakeModel(dir: string, o: {weightBytes?: number; seed?: number} = {}): Promise<ModelManifest> {
  await mkdir(join(dir, 'onnx'), {recursive: true})
  const weights = Buffer.alloc(o.weightBytes ?? 50_000)
  let x = o.seed ?? 1
  for (let i = 0; i < weights.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    weights[i] = x >>> 24
  }
  for (let at = 0; at + CANARY.length < weights.length; at += 9_973) CANARY.copy(weights, at)
  // The graph file and its external data (as Optimum writes large models), both several chunks long.
  await writeFile(join(dir, 'onnx', 'model.onnx'), weights.subarray(0, 20_000))
  await writeFile(join(dir, 'onnx', 'model.onnx_data'), weights)
  await writeFile(join(dir, 'config.json'), JSON.stringify({model_type: 'gpt2', seed: o.seed ?? 1}))
  await writeFile(join(dir, 'tokenizer.json'), '{}')
  await writeFile(join(dir, 'tokenizer_config.json'), '{}')
  const files = await describeFiles(dir, ['config.json', 'onnx/model.onnx', 'onnx/model.onnx_data', 'tokenizer.json', 'tokenizer_config.json'])
  const manifest: ModelManifest = {
    schemaVersion: 1,
    source: {kind: 'synth', preset: 'tiny', seed: o.seed ?? 1},
    dtype: 'fp32',
    modelType: 'gpt2',
    onnx: {file: 'onnx/model.onnx', numLayers: 1, inputs: ['input_ids'], outputs: ['logits']},
    files,
    totalBytes: files.reduce((s, f) => s + f.size, 0),
  }
  await writeManifest(dir, manifest)
  return manifest
}

/** A KMS stand-in: data keys wrapped under a master key with the context as AAD; `refuse` makes Decrypt deny. */
export function fakeKms(o: {refuse?: boolean} = {}): {generate: GenerateDataKey; unwrap: UnwrapModelKey; calls: {generate: number; decrypt: number}} {
  const master = randomBytes(32)
  const calls = {generate: 0, decrypt: 0}
  const aad = (ctx: Record<string, string>): Buffer => Buffer.from(JSON.stringify(Object.entries(ctx).sort()))
  return {
    calls,
    async generate(context) {
      calls.generate++
      const plaintext = randomBytes(32)
      const iv = randomBytes(12)
      const c = createCipheriv('aes-256-gcm', master, iv).setAAD(aad(context))
      const body = Buffer.concat([c.update(plaintext), c.final()])
      return {plaintext: new Uint8Array(plaintext), ciphertextBlob: Buffer.concat([iv, c.getAuthTag(), body]), keyId: 'arn:aws:kms:us-east-1:111122223333:key/fake'}
    },
    async unwrap(wrapped, context) {
      calls.decrypt++
      if (o.refuse) throw new NleError('CHANNEL_KMS_DENIED', 'denied')
      const b = Buffer.from(wrapped)
      const d = createDecipheriv('aes-256-gcm', master, b.subarray(0, 12)).setAAD(aad(context))
      d.setAuthTag(b.subarray(12, 28))
      try {
        return Buffer.concat([d.update(b.subarray(28)), d.final()])
      } catch {
        throw new NleError('CHANNEL_KMS_REJECTED', 'InvalidCiphertextException')
      }
    },
  }
}

/** Fetch sealed files from a folder on disk. */
export function fetchFromDir(dir: string): FetchSealed {
  return async (file) => createReadStream(join(dir, file.sealed), {highWaterMark: 1000})
}
