import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {quantizeModel} from '../model/quantize.js'
import {synthModel} from '../model/synth.js'
import {Engine} from './engine.js'
import {mapLargeAllocations} from './session.js'

describe('mapLargeAllocations', () => {
  it('nests, and each end is idempotent (the threshold is set back once, by the last load to finish)', () => {
    const endA = mapLargeAllocations()
    const endB = mapLargeAllocations()
    expect(() => {
      endA()
      endA()
      endB()
      endB()
    }).not.toThrow()
    // Usable again afterwards.
    mapLargeAllocations()()
  })
})

describe('quantized products at load', () => {
  it('run at accuracy level 4 when the file leaves 0, keep the file\'s level on request, and keep the last-position head when it is quantized', async () => {
    const root = await mkdtemp(join(tmpdir(), 'nle-nbits-'))
    try {
      await synthModel({preset: 'tiny', outDir: join(root, 'fp32'), seed: 9})
      await quantizeModel({inDir: join(root, 'fp32'), outDir: join(root, 'q4'), to: 'q4', accuracyLevel: 0})
      const raised = await Engine.load(join(root, 'q4'), {dtype: 'q4', threads: 1})
      const kept = await Engine.load(join(root, 'q4'), {dtype: 'q4', threads: 1, nbitsAccuracy: 'file'})
      try {
        expect(raised.decoder.nbits.nodes).toBeGreaterThan(0)
        expect(raised.decoder.nbits).toMatchObject({fileLevels: [0], runLevels: [4]})
        expect(kept.decoder.nbits).toMatchObject({nodes: raised.decoder.nbits.nodes, fileLevels: [0], runLevels: [0]})
        expect(raised.decoder.fullHeadReason).toBeUndefined()
        const a = await raised.generate({prompt: 'The enclave'}, {maxTokens: 4, temperature: 0})
        expect(a.tokenIds).toHaveLength(4)
      } finally {
        await raised.close()
        await kept.close()
      }
    } finally {
      await rm(root, {recursive: true, force: true})
    }
  }, 60_000)
})
