// `nle model synth` as a user runs it: --arch and --preset, the JSON it prints, and a wrong combination.
import {mkdirSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const tmp = tempDir()
afterAll(() => tmp.cleanup())

describe('nle model synth', () => {
  it('--arch llama --preset tiny writes a Llama folder with its manifest; --preset tiny alone is still GPT-2', async () => {
    const r = await runCli(['model', 'synth', '--arch', 'llama', '--preset', 'tiny', '--out', join(tmp.dir, 'llama'), '--json'])
    expect(r.exitCode).toBe(0)
    const out = jsonResult<{preset: string; arch: string; files: string[]; dataBytes: number; manifestDigest: string}>(r)
    expect(out).toMatchObject({preset: 'llama-tiny', arch: 'llama', dataBytes: 0})
    expect(out.files).toContain('onnx/model.onnx')
    const manifest = JSON.parse(readFileSync(join(tmp.dir, 'llama', 'nle-model.json'), 'utf8')) as {source: unknown; modelType: string; onnx: {numKvHeads: number}}
    expect(manifest).toMatchObject({source: {kind: 'synth', preset: 'llama-tiny', seed: 42}, modelType: 'llama', onnx: {numKvHeads: 2}})

    const g = await runCli(['model', 'synth', '--preset', 'tiny', '--out', join(tmp.dir, 'gpt2'), '--external-data', '--json'])
    expect(g.exitCode).toBe(0)
    expect(jsonResult<{preset: string; arch: string; files: string[]}>(g)).toMatchObject({preset: 'tiny', arch: 'gpt2', files: expect.arrayContaining(['onnx/model.onnx_data'])})
    // --json: the stages, timed; the terminal's stage lines are not written to a piped stderr.
    expect(jsonResult<{stages: {stage: string; ms: number}[]}>(g).stages.map((t) => t.stage)).toEqual(['weights', 'write', 'manifest'])
    expect(g.stderr).not.toContain('Generating the weights')
  })

  it('a preset the architecture has not is MODEL_PRESET_UNKNOWN, a usage error', async () => {
    const r = await runCli(['model', 'synth', '--arch', 'gpt2', '--preset', '0.5b', '--out', join(tmp.dir, 'nope'), '--json'])
    expect(r.exitCode).toBe(2)
    expect(jsonFailure(r).code).toBe('MODEL_PRESET_UNKNOWN')
  })

  it('refuses to overwrite a model folder without --force (nothing written), and replaces it with --force', async () => {
    const dir = join(tmp.dir, 'again')
    expect((await runCli(['model', 'synth', '--out', dir, '--seed', '1', '--json'])).exitCode).toBe(0)
    const before = readFileSync(join(dir, 'onnx', 'model.onnx'))
    const r = await runCli(['model', 'synth', '--out', dir, '--seed', '2', '--json'])
    expect(r.exitCode).toBe(6)
    expect(jsonFailure(r)).toMatchObject({code: 'MODEL_OUTPUT_EXISTS', hint: expect.stringContaining('--force')})
    expect(readFileSync(join(dir, 'onnx', 'model.onnx')).equals(before)).toBe(true)
    const f = await runCli(['model', 'synth', '--out', dir, '--seed', '2', '--force', '--json'])
    expect(f.exitCode).toBe(0)
    expect(readFileSync(join(dir, 'onnx', 'model.onnx')).equals(before)).toBe(false)
  })

  it('refuses a folder holding any one file it would write, and writes into an empty existing folder', async () => {
    const dir = join(tmp.dir, 'partial')
    mkdirSync(dir)
    const r0 = await runCli(['model', 'synth', '--out', dir, '--json'])
    expect(r0.exitCode).toBe(0)
    const other = join(tmp.dir, 'one-file')
    mkdirSync(other)
    writeFileSync(join(other, 'config.json'), '{}\n')
    const r = await runCli(['model', 'synth', '--out', other, '--json'])
    expect(jsonFailure(r).code).toBe('MODEL_OUTPUT_EXISTS')
    expect(readdirSync(other)).toEqual(['config.json'])
  })

  it('without --out writes to nle.yaml\'s model.path with its preset; outside a project it says to pass --out', async () => {
    const project = join(tmp.dir, 'project')
    mkdirSync(project)
    writeFileSync(join(project, 'nle.yaml'), 'version: 1\nname: demo\nmodel:\n  path: weights\n  preset: llama-tiny\n')
    const r = await runCli(['model', 'synth', '--json'], {cwd: project})
    expect(r.exitCode).toBe(0)
    expect(jsonResult<{dir: string; preset: string}>(r)).toMatchObject({dir: join(project, 'weights'), preset: 'llama-tiny'})

    const nowhere = join(tmp.dir, 'nowhere')
    mkdirSync(nowhere)
    const n = await runCli(['model', 'synth', '--json'], {cwd: nowhere})
    expect(n.exitCode).toBe(2)
    expect(jsonFailure(n).code).toBe('MODEL_SYNTH_NO_TARGET')
    expect(readdirSync(nowhere)).toEqual([])
  })
})
