import {describe, expect, it} from 'vitest'

import {halfToFloat} from './half.js'

describe('halfToFloat', () => {
  it('decodes normal, subnormal, zero, infinite and NaN halves', () => {
    const bits = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x03ff, 0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00])
    const f = halfToFloat(bits)
    expect([...f.subarray(0, 6)]).toEqual([1, -2, 0.333251953125, 65504, 2 ** -24, 1023 * 2 ** -24])
    expect(Object.is(f[6], 0)).toBe(true)
    expect(Object.is(f[7], -0)).toBe(true)
    expect(f[8]).toBe(Infinity)
    expect(f[9]).toBe(-Infinity)
    expect(Number.isNaN(f[10])).toBe(true)
  })

  it('orders every positive finite half strictly and mirrors the negatives', () => {
    const f = halfToFloat(new Uint16Array(65536).map((_, i) => i))
    for (let h = 1; h <= 0x7bff; h++) expect(f[h] as number).toBeGreaterThan(f[h - 1] as number)
    for (let h = 0; h <= 0x7bff; h++) expect(f[h | 0x8000]).toBe(-(f[h] as number))
  })
})
