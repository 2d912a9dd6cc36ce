import {describe, expect, it} from 'vitest'

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
