// Sealing the real exporters' models (../shared/testdata/models): every file opens back byte for
// byte, and a model opened into memory generates PyTorch's own greedy continuation.
import {readFile, readdir, symlink, mkdir} from 'node:fs/promises'
import {dirname, join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {WorkerEngine} from '../../engine/worker-engine.js'
import {fakeKms, fetchFromDir} from '../../../test-support/sealed.js'
import {sharedTestdata} from '../../../test-support/testdata.js'
import {tempDir} from '../../../test-support/tmp.js'
import {type ModelManifest, describeFiles, writeManifest} from '../manifest.js'
import {MEMORY_ROOT, registerMemoryModel} from '../memory.js'
import {parseSealedManifest} from './format.js'
import {openSealedModel} from './open.js'
import {sealModel} from './seal.js'

const MODELS = sharedTestdata('models/')
const NAMES = ['gpt2', 'gpt2-fp16', 'bloom', 'llama', 'llama-merged', 'phi3', 'qwen2']
/** Models whose opened copy is also run against PyTorch's greedy tokens. */
const RUN = new Set(['gpt2', 'llama-merged'])

let tmp: ReturnType<typeof tempDir>
beforeAll(() => {
  tmp = tempDir('nle-seal-real-')
})
afterAll(() => tmp.cleanup())

/** The export as a saved model folder: its files linked, with a manifest of them. */
async function asSavedModel(src: string, dir: string): Promise<{manifest: ModelManifest; onnxFile: string}> {
  const paths: string[] = []
  for (const e of await readdir(src, {recursive: true, withFileTypes: true})) if (e.isFile() && e.name !== 'reference.json') paths.push(relative(src, join(e.parentPath, e.name)))
  for (const p of paths) {
    await mkdir(dirname(join(dir, p)), {recursive: true})
    await symlink(join(src, p), join(dir, p))
  }
  const onnxFile = paths.find((p) => p.endsWith('.onnx'))!
  const files = await describeFiles(src, paths)
  const config = JSON.parse(await readFile(join(src, 'config.json'), 'utf8')) as {model_type: string}
  const manifest: ModelManifest = {
    schemaVersion: 1,
    source: {kind: 'local', path: src},
    dtype: onnxFile.includes('fp16') ? 'fp16' : 'fp32',
    modelType: config.model_type,
    onnx: {file: onnxFile, numLayers: 2, inputs: [], outputs: []},
    files,
    totalBytes: files.reduce((s, f) => s + f.size, 0),
  }
  await writeManifest(dir, manifest)
  return {manifest, onnxFile}
}

describe.skipIf(MODELS === undefined).each(NAMES)('the real export %s, sealed', (name) => {
  it('opens back byte for byte' + (RUN.has(name) ? ', and generates PyTorch\'s greedy tokens from memory' : ''), async () => {
    const src = join(MODELS!, name)
    const modelDir = join(tmp.dir, name, 'model')
    const outDir = join(tmp.dir, name, 'sealed')
    const {manifest, onnxFile} = await asSavedModel(src, modelDir)
    const kms = fakeKms()
    const r = await sealModel({modelDir, outDir, generateDataKey: kms.generate, chunkBytes: 64 << 10})
    expect(r.chunks).toBeGreaterThan(manifest.files.length)
    const sealed = parseSealedManifest(await readFile(r.manifestPath))
    const opened = await openSealedModel({sealed, expectedModelDigest: r.modelDigest, unwrap: kms.unwrap, fetch: fetchFromDir(outDir)})
    for (const f of manifest.files) expect(opened.files.get(f.path)!.equals(await readFile(join(src, f.path))), f.path).toBe(true)
    if (!RUN.has(name)) return
    const reference = JSON.parse(await readFile(join(src, 'reference.json'), 'utf8')) as {prompts: {ids: number[]; greedy_cache: number[]}[]}
    const virtual = `${MEMORY_ROOT}/real-${name}`
    registerMemoryModel(virtual, opened.files)
    const engine = await WorkerEngine.load(virtual, {threads: 1, maxBatch: 1, onnxFile})
    try {
      for (const p of reference.prompts) {
        const got = await engine.generate({inputIds: p.ids}, {maxTokens: p.greedy_cache.length, temperature: 0})
        expect(got.tokenIds.length).toBeGreaterThan(0)
        expect(got.tokenIds).toEqual(p.greedy_cache.slice(0, got.tokenIds.length))
      }
    } finally {
      await engine.close()
    }
  })
})
