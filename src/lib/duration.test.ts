import {describe, expect, it} from 'vitest'

import {codeOf} from '../test-support/rejection.js'
import {formatDuration, parseDuration} from './duration.js'

describe('durations', () => {
  it('reads every unit and a bare number as seconds, and prints the largest whole unit back', () => {
    expect(['1500ms', '90s', '5m', '3h', '1d', '120', '0.5s'].map((t) => parseDuration(t))).toEqual([1500, 90_000, 300_000, 10_800_000, 86_400_000, 120_000, 500])
    expect([1500, 90_000, 300_000, 120_000, 86_400_000].map(formatDuration)).toEqual(['1500ms', '90s', '5m', '2m', '1d'])
    for (const ms of [1, 999, 1000, 61_000, 3_600_000]) expect(parseDuration(formatDuration(ms))).toBe(ms)
  })

  it('refuses anything else as a usage error naming the flag', () => {
    for (const bad of ['', 's', '-5s', '5 minutes', '1e3', '5M']) expect(codeOf(() => parseDuration(bad, '--timeout'))).toBe('USAGE')
  })
})
