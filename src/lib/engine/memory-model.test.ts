// A model folder held in memory (a sealed model opened in the enclave) runs exactly as the same
// folder on disk: in the worker, with the graph's own and its external data given to onnxruntime as
// buffers, and nothing read from (or looked for on) the disk.
import {readFile, readdir} from 'node:fs/promises'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {MEMORY_ROOT, memoryModelFiles, registerMemoryModel} from '../model/memory.js'
import {synthModel} from '../model/synth.js'
import {sharedTestdata} from '../../test-support/testdata.js'
import {tempDir} from '../../test-support/tmp.js'
import {WorkerEngine, ownsBuffer} from './worker-engine.js'

let tmp: ReturnType<typeof tempDir>
beforeAll(() => {
  tmp = tempDir('nle-memory-model-')
})
afterAll(() => tmp.cleanup())

async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>()
  for (const e of await readdir(dir, {recursive: true, withFileTypes: true})) {
    if (!e.isFile()) continue
    const full = join(e.parentPath, e.name)
    const bytes = await readFile(full)
    const own = Buffer.allocUnsafeSlow(bytes.length)
    bytes.copy(own)
    out.set(relative(dir, full), own)
  }
  return out
}

async function sameAnswers(dir: string, name: string): Promise<void> {
  const virtual = `${MEMORY_ROOT}/${name}`
  registerMemoryModel(virtual, await filesOf(dir))
  const fromMemory = await WorkerEngine.load(virtual, {threads: 1, maxBatch: 1})
  // Moved to the worker: nothing of it stays registered on this thread.
  expect(memoryModelFiles(virtual)).toBeUndefined()
  const fromDisk = await WorkerEngine.load(dir, {threads: 1, maxBatch: 1})
  try {
    // The graph rewritten at load (last-position LM head) loads from memory too, with its external data.
    expect(fromMemory.decoder.lastLogitsOnly).toBe(fromDisk.decoder.lastLogitsOnly)
    expect(fromMemory.decoder.fullHeadReason).toBe(fromDisk.decoder.fullHeadReason)
    for (const prompt of ['The enclave', 'Hello there']) {
      const a = await fromMemory.generate({prompt}, {maxTokens: 8, temperature: 0})
      const b = await fromDisk.generate({prompt}, {maxTokens: 8, temperature: 0})
      expect(a.tokenIds).toEqual(b.tokenIds)
      expect(a.tokenIds.length).toBeGreaterThan(0)
    }
  } finally {
    await fromMemory.close()
    await fromDisk.close()
  }
}

describe('an in-memory model folder', () => {
  it('with external data (onnx/model.onnx_data) answers as the folder on disk', async () => {
    const dir = join(tmp.dir, 'llama-ext')
    await synthModel({preset: 'llama-tiny', outDir: dir, seed: 5, externalData: true})
    expect((await readdir(join(dir, 'onnx'))).sort()).toEqual(['model.onnx', 'model.onnx_data'])
    await sameAnswers(dir, 'llama-ext')
  })

  it.skipIf(sharedTestdata('models/gpt2') === undefined)('a real Optimum export (inline weights) answers as on disk', async () => {
    await sameAnswers(sharedTestdata('models/gpt2')!, 'gpt2')
  })

  // The sealed path hands the manifest over as a small Buffer, which Node slices from its pool. Node
  // marks the pool untransferable: Node 24 (the enclave's) refused the whole load with
  // "DataCloneError: Cannot transfer object of unsupported type", Node 20 copied it quietly.
  it('moves only buffers a file owns whole: a small pooled Buffer is copied (Node 24 refuses to move the pool), and this thread\'s pool stays usable', async () => {
    const dir = join(tmp.dir, 'tiny-pooled')
    await synthModel({preset: 'tiny', outDir: dir, seed: 6})
    const files = await filesOf(dir)
    const neighbour = Buffer.from('a neighbour in the same pool')
    const pooled = Buffer.from(new TextDecoder().decode(files.get('config.json')!))
    expect(ownsBuffer(pooled)).toBe(false)
    expect(pooled.buffer).toBe(neighbour.buffer)
    files.set('config.json', pooled)
    const virtual = `${MEMORY_ROOT}/tiny-pooled`
    registerMemoryModel(virtual, files)
    const engine = await WorkerEngine.load(virtual, {threads: 1, maxBatch: 1})
    try {
      expect(neighbour.toString()).toBe('a neighbour in the same pool')
      expect(Buffer.from('after').toString()).toBe('after')
      expect((await engine.generate({prompt: 'Hello'}, {maxTokens: 4, temperature: 0})).tokenIds.length).toBeGreaterThan(0)
    } finally {
      await engine.close()
    }
  })
})
