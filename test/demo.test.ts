// The README's main job: `nle demo` end to end, as CI runs it, leaving nothing behind.
import {readdirSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {jsonResult, runCli} from '../src/test-support/cli.js'
import {processesMentioning} from '../src/test-support/processes.js'

describe('nle demo', () => {
  it('runs every step of the flow, exits 0, and leaves no process or folder behind', async () => {
    const r = await runCli(['demo', '--json'], {timeout: 180_000})
    expect(r.exitCode, r.stderr).toBe(0)
    const out = jsonResult<{ok: boolean; workdir: string; steps: {name: string; ok: boolean}[]; pcr0: {first: string; second: string}}>(r)
    expect(out.steps.map((s) => s.name)).toEqual([
      'init',
      'doctor --for dev',
      'model + native EIF + lockfile',
      'dev stack + key policy',
      'chat (attested channel)',
      'chat (KMS mode)',
      'policy check',
      'change model + rebuild',
      'policy check (drift)',
      'stop',
    ])
    expect(out.steps.every((s) => s.ok)).toBe(true)
    expect(out.pcr0.first).toMatch(/^[0-9a-f]{96}$/)
    expect(out.pcr0.second).not.toBe(out.pcr0.first)
    expect(processesMentioning(out.workdir)).toEqual([])
    expect(() => readdirSync(out.workdir)).toThrow()
  }, 240_000)
})
