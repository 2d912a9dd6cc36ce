// `nle model quantize` as a user runs it: synth → quantize --json → model save of the result.
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const tmp = tempDir('nle-quantize-cli-')
afterAll(() => tmp.cleanup())

describe('nle model quantize', () => {
  it('prints its result as JSON, refuses to overwrite without --force (exit 6), and `model save --dtype q4` accepts the output', async () => {
    const src = join(tmp.dir, 'tiny')
    const out = join(tmp.dir, 'tiny-q4')
    expect((await runCli(['model', 'synth', '--out', src, '--json'])).exitCode).toBe(0)
    const r = await runCli(['model', 'quantize', src, '--to', 'q4', '--out', out, '--json'])
    expect(r.exitCode).toBe(0)
    const data = jsonResult(r)
    expect(data).toMatchObject({
      dtype: 'q4',
      onnxFile: 'onnx/model_q4.onnx',
      dataFile: 'onnx/model_q4.onnx_data',
      bits: 4,
      blockSize: 32,
      symmetric: false,
      accuracyLevel: 4,
      quantized: 9,
      kept: [],
      manifestDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    })
    const bytes = data.bytes as {weightsBefore: number; weightsAfter: number}
    expect(bytes.weightsAfter).toBeLessThan(bytes.weightsBefore)
    // The quality drop, measured on three prompts against the fp32 file (the tiny model: 0.984-0.992 measured).
    const quality = data.quality as {cosine: number[]; min: number; sameArgmax: number}
    expect(quality.cosine).toHaveLength(3)
    expect(quality.min).toBeGreaterThan(0.95)
    expect(quality.min).toBeLessThan(1)
    // No progress line when stderr is not a terminal.
    expect(r.stderr).toBe('')

    const again = await runCli(['model', 'quantize', src, '--to', 'q4', '--out', out, '--json'])
    expect(again.exitCode).toBe(6)
    expect(jsonFailure(again)).toMatchObject({code: 'MODEL_OUTPUT_EXISTS'})
    expect((await runCli(['model', 'quantize', src, '--to', 'q4', '--out', out, '--force', '--json'])).exitCode).toBe(0)

    const saved = await runCli(['model', 'save', out, '--dtype', 'q4', '--out', join(tmp.dir, 'saved'), '--json'])
    expect(saved.exitCode).toBe(0)
    expect(jsonResult(saved)).toMatchObject({files: 7})
  }, 120_000)

  it('q8 is symmetric by default and --no-symmetric gives it zero points; q4 takes --symmetric', async () => {
    const src = join(tmp.dir, 'tiny')
    const q8 = jsonResult(await runCli(['model', 'quantize', src, '--to', 'q8', '--out', join(tmp.dir, 'q8-sym'), '--json']))
    const q8z = jsonResult(await runCli(['model', 'quantize', src, '--to', 'q8', '--out', join(tmp.dir, 'q8-zp'), '--no-symmetric', '--json']))
    const q4s = jsonResult(await runCli(['model', 'quantize', src, '--to', 'q4', '--out', join(tmp.dir, 'q4-sym'), '--symmetric', '--no-quality', '--json']))
    expect([q8.symmetric, q8z.symmetric, q4s.symmetric]).toEqual([true, false, true])
    expect(q4s.quality).toBeNull()
    // Zero points cost bytes: one per block at 8 bits.
    const after = (d: Record<string, unknown>): number => (d.bytes as {weightsAfter: number}).weightsAfter
    expect(after(q8z)).toBeGreaterThan(after(q8))
  }, 120_000)

  it('a block size that is not a power of two is refused with its code', async () => {
    const r = await runCli(['model', 'quantize', join(tmp.dir, 'tiny'), '--to', 'q8', '--out', join(tmp.dir, 'x'), '--block-size', '24', '--json'])
    expect(jsonFailure(r)).toMatchObject({code: 'MODEL_UNSUPPORTED'})
  })
})
