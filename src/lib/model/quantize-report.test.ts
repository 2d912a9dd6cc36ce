import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {quantizeModel} from './quantize.js'
import {quantizeLines, quantizeReport} from './quantize-report.js'
import {synthModel} from './synth.js'

const tmp = tempDir('nle-quantize-report-')
afterAll(() => tmp.cleanup())

describe('quantizeModel stages, quantizeReport and quantizeLines', () => {
  it('announces the quantize stage before the first tensor and the quality stage after the last; reports and summarises the result', async () => {
    const dir = (await synthModel({preset: 'tiny', outDir: join(tmp.dir, 'in'), seed: 3})).dir
    const events: string[] = []
    const r = await quantizeModel({
      inDir: dir,
      outDir: join(tmp.dir, 'out'),
      to: 'q4',
      keepLmHead: true,
      measureQuality: true,
      onStage: (stage) => events.push(stage),
      onProgress: (p) => events.push(`${p.done}/${p.total}`),
    })
    const tensors = events.filter((e) => e.includes('/'))
    expect(tensors.length).toBeGreaterThan(0)
    expect(events).toEqual(['quantize', ...tensors, 'quality'])
    expect(tensors.at(-1)).toMatch(/^(\d+)\/\1$/)

    const report = quantizeReport(r)
    expect(Object.keys(report)).toEqual(['dir', 'dtype', 'onnxFile', 'dataFile', 'bits', 'blockSize', 'symmetric', 'accuracyLevel', 'quantized', 'kept', 'bytes', 'quality', 'ms', 'manifest', 'manifestDigest'])
    expect(report).toMatchObject({dtype: 'q4', onnxFile: 'onnx/model_q4.onnx', bits: 4, manifest: r.manifestPath, ms: Math.round(r.ms)})
    expect(report.quality?.cosine.length).toBe(3)

    const lines = quantizeLines(r)
    expect(lines[0]).toMatch(/^Quantized \d+ weight products to 4-bit \(asymmetric, block 32, accuracy_level 4\) in \d+\.\d s: .*\/onnx\/model_q4\.onnx$/)
    expect(lines[1]).toMatch(/^Kept in fp32: .+ \(.*LM head.*\)$/)
    expect(lines[2]).toMatch(/^Weight matrices [\d.]+ MB → [\d.]+ MB \([\d.]+x\); ONNX files /)
    expect(lines[3]).toMatch(/^Quality: last-position logits cosine vs fp32 [\d.]+, [\d.]+, [\d.]+ \(min [\d.]+\); same next token on \d of 3 prompts$/)
    expect(lines[4]).toBe(`Manifest: ${r.manifestPath} (${r.manifestDigest})`)
  })
})
