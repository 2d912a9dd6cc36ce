// The engine in a worker thread answers exactly as the in-process engine, batches, cancels between
// steps, and keeps error codes across the thread boundary.
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {synthModel} from '../model/synth.js'
import {expectCode} from '../../test-support/rejection.js'
import {Engine} from './engine.js'
import {WorkerEngine} from './worker-engine.js'
import {abortAfter} from '../../test-support/abort.js'

let root: string
let dir: string
let worker: WorkerEngine

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-worker-'))
  dir = join(root, 'llama-tiny')
  await synthModel({preset: 'llama-tiny', outDir: dir, seed: 3})
  worker = await WorkerEngine.load(dir, {threads: 1, maxBatch: 4})
})
afterAll(async () => {
  await worker?.close()
  await rm(root, {recursive: true, force: true})
})

describe('the engine in a worker thread', () => {
  it('gives the in-process engine\'s ids and text, for concurrent requests batched together', async () => {
    const local = await Engine.load(dir, {threads: 1, maxBatch: 1})
    try {
      const prompts = ['Hello there', 'The enclave seals every answer it gives', 'x', 'Batching four requests at once']
      const want = []
      for (const [i, p] of prompts.entries()) want.push(await local.generate({prompt: p}, {maxTokens: 12, temperature: i % 2 === 0 ? 0 : 0.8, seed: i}))
      const got = await Promise.all(prompts.map((p, i) => worker.generate({prompt: p}, {maxTokens: 12, temperature: i % 2 === 0 ? 0 : 0.8, seed: i})))
      expect(got.map((r) => r.tokenIds)).toEqual(want.map((r) => r.tokenIds))
      expect(got.map((r) => r.text)).toEqual(want.map((r) => r.text))
      const stats = await worker.schedulerStats()
      expect(stats.decodeRows).toBeGreaterThan(stats.decodeSteps)
      expect(worker.promptIds({prompt: 'Hello there'})).toEqual(local.promptIds({prompt: 'Hello there'}))
      expect(worker.decoder.lastLogitsOnly).toBe(local.decoder.lastLogitsOnly)
    } finally {
      await local.close()
    }
  })

  it('cancels between steps in the worker, before start and when the reader stops', async () => {
    const ac = new AbortController()
    const result = await abortAfter(worker.stream({prompt: 'Cancel me'}, {maxTokens: 200, signal: ac.signal}), ac, 2)
    expect(result.finishReason).toBe('cancelled')
    expect(result.tokenIds.length).toBeLessThan(200)
    const pre = await worker.generate({prompt: 'Cancel me'}, {maxTokens: 50, signal: AbortSignal.abort()})
    expect(pre.finishReason).toBe('cancelled')
    expect(pre.tokenIds).toHaveLength(0)
    const early = worker.stream({prompt: 'Stop reading'}, {maxTokens: 200})
    await early.next()
    await early.return(undefined as never)
    // The sequence left the worker's batch: nothing is in flight once the worker saw the cancel.
    for (;;) {
      const s = await worker.schedulerStats()
      if (s.active + s.prefilling + s.waiting === 0) break
    }
  })

  it('keeps error codes across the thread boundary', async () => {
    await expectCode(worker.generate({prompt: ''}), 'ENGINE_PROMPT_EMPTY')
    await expectCode(worker.generate({prompt: 'x'}, {maxTokens: 0}), 'ENGINE_BAD_OPTIONS')
    expect(() => worker.promptIds({inputIds: [1e9]})).toThrow()
    await expectCode(WorkerEngine.load(join(root, 'absent')), 'ENGINE_MODEL_NOT_FOUND')
    await expectCode(WorkerEngine.load(dir, {dtype: 'q4'}), 'ENGINE_MODEL_NOT_FOUND')
  })
})
