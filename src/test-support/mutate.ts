// Seeded byte mutations for parser fuzz tests: the same seed gives the same inputs on every run.

import {rng} from './rng.js'

/** The PRNG the fuzz tests draw from (src/test-support/rng.ts). */
export const prng = rng


/** Bytes that make length and type fields interesting (CBOR and BER headers, extremes). */
const SPECIAL = [0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x3f, 0x5f, 0x7f, 0x80, 0x81, 0x82, 0x84, 0x88, 0x9f, 0xa0, 0xbf, 0xc0, 0xd2, 0xf6, 0xf7, 0xff, 0x30, 0x31, 0x04, 0x06, 0x02, 0xa0, 0x83, 0x8f]

/**
 * One mutation of `input`: a bit flip, a byte set to a special value, a truncation, an insertion,
 * a deletion, a duplicated or moved range, or a multi-byte length overwrite — 1 to 3 of them.
 */
export function mutate(input: Uint8Array, rand: () => number): Uint8Array {
  let b = Buffer.from(input)
  const pick = (n: number): number => Math.floor(rand() * n)
  const rounds = 1 + pick(3)
  for (let r = 0; r < rounds; r++) {
    const at = pick(Math.max(b.length, 1))
    switch (pick(8)) {
      case 0:
        if (b.length > 0) b[at] = b[at]! ^ (1 << pick(8))
        break
      case 1:
        if (b.length > 0) b[at] = SPECIAL[pick(SPECIAL.length)]!
        break
      case 2:
        b = b.subarray(0, at)
        break
      case 3:
        b = Buffer.concat([b.subarray(0, at), Buffer.from([SPECIAL[pick(SPECIAL.length)]!, pick(256)]), b.subarray(at)])
        break
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + pick(8))])
        break
      case 5: {
        const len = 1 + pick(64)
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)])
        break
      }
      case 6: {
        const len = 1 + pick(32)
        const to = pick(Math.max(b.length, 1))
        const part = Buffer.from(b.subarray(at, at + len))
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)])
        b = Buffer.concat([b.subarray(0, to), part, b.subarray(to)])
        break
      }
      default:
        for (let i = 0; i < 1 + pick(4) && at + i < b.length; i++) b[at + i] = pick(2) === 0 ? 0xff : pick(256)
    }
  }
  return new Uint8Array(b)
}
