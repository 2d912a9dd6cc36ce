import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {expectCode} from '../../test-support/rejection.js'
import {tempDir} from '../../test-support/tmp.js'
import {synthLines, synthProject} from './synth-project.js'

const tmp = tempDir('nle-synth-project-')
afterAll(() => tmp.cleanup())
const base = {configFile: join(tmp.dir, 'nle.yaml'), seed: 7, force: false}

describe('synthProject', () => {
  it('times the weights, the write and the manifest as stages, in order, and reports the weights\' bytes', async () => {
    const started: string[] = []
    const weights: [number, number][] = []
    const r = await synthProject({...base, out: join(tmp.dir, 'm'), onStage: (stage) => started.push(stage), onWeights: (b, t) => weights.push([b, t])})
    expect(started).toEqual(['weights', 'write', 'manifest'])
    expect(r.stages.map((s) => s.stage)).toEqual(started)
    expect(r).toMatchObject({preset: 'tiny', arch: 'gpt2', seed: 7, dataBytes: 0, manifest: join(tmp.dir, 'm', 'nle-model.json')})
    expect(r.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(weights.length).toBeGreaterThan(0)
    expect(weights.at(-1)![0]).toBeGreaterThan(0)
    const lines = synthLines(r)
    expect(lines[0]).toMatch(new RegExp(`^Wrote tiny \\(gpt2, \\d+\\.\\dM parameters, ONNX \\d+\\.\\d MB\\) to ${r.dir}$`))
    expect(lines[1]).toBe(`Manifest: ${r.manifest} (${r.manifestDigest})`)
  })

  it('refuses a folder that holds a model without force, and needs --out outside a project', async () => {
    await expectCode(synthProject({...base, out: join(tmp.dir, 'm')}), 'MODEL_OUTPUT_EXISTS')
    await expectCode(synthProject(base), 'MODEL_SYNTH_NO_TARGET')
  })
})
