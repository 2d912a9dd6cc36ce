import {existsSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {runDemo} from './demo.js'
import {execProbe} from './doctor.js'

describe('runDemo', () => {
  it('runs the scaffold steps, reports each, and removes its folder', async () => {
    const seen: string[] = []
    const result = await runDemo({only: 'scaffold', onStep: (s) => seen.push(s.name)})
    expect(result.ok).toBe(true)
    expect(seen).toEqual(['init', 'doctor --for dev'])
    expect(result.steps.every((s) => s.ok && s.ms >= 0)).toBe(true)
    expect(existsSync(result.workdir)).toBe(false)
  })

  it('stops at a failing step, still cleans up, and throws the step\'s error', async () => {
    let workdir = ''
    await expect(
      runDemo({
        doctorEnv: (configFile) => {
          workdir = configFile
          return {exec: (f, a) => execProbe(f, a, ''), env: {}, home: '/nonexistent', nitroDevice: '/nonexistent', configFile, nodeVersion: '18.0.0'}
        },
      }),
    ).rejects.toMatchObject({code: 'DEMO_STEP_FAILED'})
    expect(workdir).not.toBe('')
    expect(existsSync(workdir)).toBe(false)
  })
})
