import {describe, expect, it} from 'vitest'

import {untilStopSignal} from './signals.js'

describe('untilStopSignal', () => {
  it('resolves with the first stop signal and removes its listeners, so the next one is not swallowed', async () => {
    const before = {SIGINT: process.listenerCount('SIGINT'), SIGTERM: process.listenerCount('SIGTERM')}
    const stopped = untilStopSignal()
    expect(process.listenerCount('SIGTERM')).toBe(before.SIGTERM + 1)
    process.emit('SIGTERM')
    expect(await stopped).toBe('SIGTERM')
    expect({SIGINT: process.listenerCount('SIGINT'), SIGTERM: process.listenerCount('SIGTERM')}).toEqual(before)
  })
})
