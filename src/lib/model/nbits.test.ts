import {describe, expect, it} from 'vitest'

import {Rng} from '../engine/rng.js'
import {type NBitsOptions, dequantizeColumns, quantizeColumns, quantizedBytes, transposeKN} from './nbits.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('MatMulNBits packing', () => {
  it('4-bit asymmetric: one block of known weights gives known bytes, scale and zero point', () => {
    // w_k = (k mod 16 − 4) · 0.5: range [−2, 5.5] → scale 7.5 / 15 = 0.5, zero point 2 / 0.5 = 4,
    // q_k = k mod 16; two values per byte, the first in the low nibble.
    const w = Float32Array.from({length: 32}, (_, k) => ((k % 16) - 4) * 0.5)
    const q = quantizeColumns(w, 32, 1, {bits: 4, blockSize: 32, symmetric: false})
    expect(hex(q.data)).toBe('1032547698badcfe'.repeat(2))
    expect([...q.scales]).toEqual([0.5])
    // One block per column: the zero point's high nibble is padding, set to the default 8.
    expect(hex(q.zeroPoints!)).toBe('84')
  })

  it('4-bit symmetric: the largest magnitude maps to level 0, the opposite extreme clamps, K pads the last block, a zero block has scale 0', () => {
    // Column 0: −8 … 7, then 8, 0, 1, 2 (K = 20 < 32). m = −8 → scale 1; q = w + 8, 8 → 16 clamps to 15.
    const col0 = [...Array.from({length: 16}, (_, k) => k - 8), 8, 0, 1, 2]
    const w = Float32Array.from([...col0, ...new Array<number>(20).fill(0)])
    const q = quantizeColumns(w, 20, 2, {bits: 4, blockSize: 32, symmetric: true})
    expect(q.kBlocks).toBe(1)
    expect(q.zeroPoints).toBeUndefined()
    // Padding (k = 20 … 31) holds the zero point 8.
    expect(hex(q.data.subarray(0, 16))).toBe('1032547698badcfe' + '8fa9' + '88'.repeat(6))
    expect(hex(q.data.subarray(16))).toBe('88'.repeat(16))
    expect([...q.scales]).toEqual([1, 0])
    const back = dequantizeColumns(q, {bits: 4, blockSize: 32, symmetric: true})
    expect([...back.subarray(0, 20)]).toEqual([...col0.slice(0, 16), 7, 0, 1, 2])
    expect([...back.subarray(20)]).toEqual(new Array<number>(20).fill(0))
  })

  it('8-bit symmetric: one byte per weight around 128', () => {
    const w = new Float32Array(16)
    w.set([1.28, -0.64, 0, 0.01])
    const q = quantizeColumns(w, 16, 1, {bits: 8, blockSize: 16, symmetric: true})
    expect([...q.data.subarray(0, 4)]).toEqual([0, 192, 128, 127])
    expect([...q.data.subarray(4)]).toEqual(new Array<number>(12).fill(128))
    expect(q.scales[0]).toBe(Math.fround(-0.01))
  })

  it('8-bit asymmetric zero points are one byte per block; 4-bit ones two per byte', () => {
    const w = Float32Array.from({length: 3 * 16}, (_, i) => (i % 16) - 3 + Math.floor(i / 16))
    const q8 = quantizeColumns(w, 48, 1, {bits: 8, blockSize: 16, symmetric: false})
    expect(q8.zeroPoints!.length).toBe(3)
    const q4 = quantizeColumns(w, 48, 1, {bits: 4, blockSize: 16, symmetric: false})
    expect(q4.zeroPoints!.length).toBe(2)
    // Blocks 0 and 1 share the first byte (low, high); block 2 is in the low nibble of the second, padding 8 above.
    const zp = (b: number): number => (b % 2 === 0 ? q4.zeroPoints![b >> 1]! & 0xf : q4.zeroPoints![b >> 1]! >> 4)
    expect(q4.zeroPoints![1]! >> 4).toBe(8)
    for (let b = 0; b < 3; b++) {
      const lo = Math.min(0, -3 + b)
      expect(zp(b)).toBe(Math.round(-lo / q4.scales[b]!))
    }
  })

  it('dequantize(quantize(w)) is within one step of w, and within half a step on average', () => {
    const rng = new Rng(20261203)
    const K = 100
    const N = 7
    let checked = 0
    for (const o of [
      {bits: 4, blockSize: 32, symmetric: false},
      {bits: 4, blockSize: 32, symmetric: true},
      {bits: 4, blockSize: 16, symmetric: false},
      {bits: 8, blockSize: 32, symmetric: true},
      {bits: 8, blockSize: 64, symmetric: false},
    ] satisfies NBitsOptions[]) {
      const rows = Float32Array.from({length: K * N}, () => rng.normal() * 0.3)
      const columns = transposeKN(rows, K, N)
      const q = quantizeColumns(columns, K, N, o)
      expect(q.data.length + q.scales.length * 4 + (q.zeroPoints?.length ?? 0)).toBe(quantizedBytes(K, N, o))
      const back = dequantizeColumns(q, o)
      let sumRatio = 0
      let worst = 0
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const step = Math.abs(q.scales[n * q.kBlocks + Math.floor(k / o.blockSize)]!)
          const err = Math.abs(back[n * K + k]! - columns[n * K + k]!)
          worst = Math.max(worst, err / step)
          sumRatio += err / step
          checked++
        }
      }
      console.log(`round trip ${o.bits}-bit block ${o.blockSize} ${o.symmetric ? 'sym' : 'asym'}: worst ${worst.toFixed(3)} steps, mean ${(sumRatio / (K * N)).toFixed(3)} steps`)
      expect(worst).toBeLessThanOrEqual(1 + 1e-6)
      expect(sumRatio / (K * N)).toBeLessThan(0.3)
    }
    console.log(`round trip: ${checked} weights checked (seed 20261203)`)
  })
})
