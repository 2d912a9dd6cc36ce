// `nle model synth` as a user runs it: --arch and --preset, the JSON it prints, and a wrong combination.
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {json, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const tmp = tempDir()
afterAll(() => tmp.cleanup())

describe('nle model synth', () => {
  it('--arch llama --preset tiny writes a Llama folder with its manifest; --preset tiny alone is still GPT-2', async () => {
    const r = await runCli(['model', 'synth', '--arch', 'llama', '--preset', 'tiny', '--out', join(tmp.dir, 'llama'), '--json'])
    expect(r.exitCode).toBe(0)
    const out = json<{preset: string; arch: string; files: string[]; dataBytes: number; manifestDigest: string}>(r)
    expect(out).toMatchObject({preset: 'llama-tiny', arch: 'llama', dataBytes: 0})
    expect(out.files).toContain('onnx/model.onnx')
    const manifest = JSON.parse(readFileSync(join(tmp.dir, 'llama', 'nle-model.json'), 'utf8')) as {source: unknown; modelType: string; onnx: {numKvHeads: number}}
    expect(manifest).toMatchObject({source: {kind: 'synth', preset: 'llama-tiny', seed: 42}, modelType: 'llama', onnx: {numKvHeads: 2}})

    const g = await runCli(['model', 'synth', '--preset', 'tiny', '--out', join(tmp.dir, 'gpt2'), '--external-data', '--json'])
    expect(g.exitCode).toBe(0)
    expect(json<{preset: string; arch: string; files: string[]}>(g)).toMatchObject({preset: 'tiny', arch: 'gpt2', files: expect.arrayContaining(['onnx/model.onnx_data'])})
    // --json: the stages, timed; the terminal's stage lines are not written to a piped stderr.
    expect(json<{stages: {stage: string; ms: number}[]}>(g).stages.map((t) => t.stage)).toEqual(['weights', 'write', 'manifest'])
    expect(g.stderr).not.toContain('Generating the weights')
  })

  it('a preset the architecture has not is MODEL_PRESET_UNKNOWN, a usage error', async () => {
    const r = await runCli(['model', 'synth', '--arch', 'gpt2', '--preset', '0.5b', '--out', join(tmp.dir, 'nope'), '--json'])
    expect(r.exitCode).toBe(2)
    expect(json<{error: {code: string}}>(r).error.code).toBe('MODEL_PRESET_UNKNOWN')
  })
})
