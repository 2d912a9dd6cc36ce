// Mutation fuzzing of the reader: thousands of damaged images, each of which must end in a
// measured result or an EIF_* NleError — never another exception, never a hang, and never a read
// (the only place the reader allocates from file-declared sizes) beyond what the file holds.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {assembleEif, fixCrc, makeSigner, randomSpec, rng} from '../../test-support/eif.js'
import {isNleError} from '../errors.js'
import {describeEif} from './describe.js'
import {EIF_HEADER_SIZE, EIF_MAX_SECTIONS, EIF_SECTION_HEADER_SIZE} from './format.js'
import {assertTrusted, inspectEif} from './reader.js'
import {type ByteSource, bufferSource} from './source.js'
import {encodeSignatureSection} from './signature.js'
import {buildEif} from './writer.js'

// Defaults keep the suite fast; NLE_FUZZ_ITERATIONS / NLE_FUZZ_SEED run longer campaigns locally.
const ITERATIONS = Number(process.env.NLE_FUZZ_ITERATIONS ?? 2400)
const SEED = Number(process.env.NLE_FUZZ_SEED ?? 0x5eed)

/** A source that records every read, to check the reader's I/O and allocation bounds. */
function countingSource(buf: Buffer): ByteSource & {reads: {position: number; length: number}[]; bytesRequested: number} {
  const inner = bufferSource(buf)
  const self = {
    size: inner.size,
    reads: [] as {position: number; length: number}[],
    bytesRequested: 0,
    async readInto(into: Buffer, position: number, length: number) {
      self.reads.push({position, length})
      self.bytesRequested += length
      if (length > into.length) throw new Error(`read of ${length} into a ${into.length}-byte buffer`)
      return inner.readInto(into, position, length)
    },
    close: inner.close,
  }
  return self
}

let bases: Buffer[] = []
beforeAll(async () => {
  const [p256, p384] = await Promise.all([makeSigner('P-256'), makeSigner('P-384')])
  const specs = [randomSpec(11), randomSpec(12, p256), randomSpec(13, p384), randomSpec(14), randomSpec(15, p256), randomSpec(16)]
  bases = await Promise.all(specs.map(async (s) => (await buildEif(s)).bytes))
  // A hand-made image whose COSE signature is short, to reach the verifier's odd paths.
  bases.push(
    assembleEif([
      {type: 1, data: Buffer.from('k')},
      {type: 2, data: Buffer.from('c')},
      {type: 5, data: Buffer.from('{"ImageName":"a","ImageVersion":"b","BuildMetadata":{"BuildTime":"","BuildTool":"","BuildToolVersion":"","OperatingSystem":"","KernelVersion":""}}')},
      {type: 3, data: Buffer.from('r')},
      {type: 4, data: encodeSignatureSection({certificatePem: Buffer.from(p256.certificatePem), coseSign1: Buffer.from('8443a10126a04100420102', 'hex')})},
    ]),
  )
})
afterAll(() => {
  bases = []
})

const INTERESTING_U64 = [0n, 1n, 11n, 12n, 548n, 560n, 0x7fffffffn, 0xffffffffn, 1n << 53n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n]

function mutate(base: Buffer, rand: () => number): Buffer {
  const int = (n: number): number => Math.floor(rand() * n)
  let b = Buffer.from(base)
  const ops = 1 + int(3)
  for (let o = 0; o < ops; o++) {
    const numSections = b.length >= EIF_HEADER_SIZE ? Math.min(b.readUInt16BE(26), EIF_MAX_SECTIONS) : 0
    switch (int(9)) {
      case 0: {
        // flip bits in the header
        const i = int(Math.min(b.length, EIF_HEADER_SIZE))
        b[i]! ^= 1 << int(8)
        break
      }
      case 1: {
        // flip bits anywhere
        if (b.length) b[int(b.length)]! ^= 1 << int(8)
        break
      }
      case 2: {
        // an interesting or random value in the offset or size table
        if (b.length < EIF_HEADER_SIZE) break
        const table = int(2) === 0 ? 28 : 28 + 8 * EIF_MAX_SECTIONS
        const v = rand() < 0.7 ? INTERESTING_U64[int(INTERESTING_U64.length)]! : BigInt(int(b.length + 100))
        const delta = rand() < 0.3 ? BigInt(int(25) - 12) : 0n
        const val = v + delta < 0n ? 0n : (v + delta) & ((1n << 64n) - 1n)
        b.writeBigUInt64BE(val, table + 8 * int(Math.max(1, numSections + 1)))
        break
      }
      case 3: {
        if (b.length >= EIF_HEADER_SIZE) b.writeUInt16BE([0, 1, 2, 31, 32, 33, 100, 0xffff][int(8)]!, 26)
        break
      }
      case 4:
        b = b.subarray(0, int(b.length + 1))
        break
      case 5:
        b = Buffer.concat([b, Buffer.alloc(1 + int(64), int(256))])
        break
      case 6: {
        // damage a section header (type, flags or size)
        if (b.length < EIF_HEADER_SIZE || numSections === 0) break
        const off = Number(b.readBigUInt64BE(28 + 8 * int(numSections)))
        if (off + EIF_SECTION_HEADER_SIZE > b.length) break
        const f = int(3)
        if (f === 0) b.writeUInt16BE(int(8), off)
        else if (f === 1) b.writeUInt16BE(int(2), off + 2)
        else b.writeBigUInt64BE(INTERESTING_U64[int(INTERESTING_U64.length)]!, off + 4)
        break
      }
      case 7: {
        // damage the tail (where the signature section lives), bytes at a time
        const n = 1 + int(8)
        for (let k = 0; k < n && b.length; k++) b[Math.max(0, b.length - 1 - int(Math.min(b.length, 400)))] = int(256)
        break
      }
      default: {
        // swap two sections' table entries
        if (b.length < EIF_HEADER_SIZE || numSections < 2) break
        const i = int(numSections)
        const j = int(numSections)
        const oi = b.readBigUInt64BE(28 + 8 * i)
        b.writeBigUInt64BE(b.readBigUInt64BE(28 + 8 * j), 28 + 8 * i)
        b.writeBigUInt64BE(oi, 28 + 8 * j)
      }
    }
  }
  // Half the time repair the CRC, so the damage is judged by the parsers, not only the checksum.
  return rand() < 0.5 ? fixCrc(b) : b
}

describe('reader mutation fuzz', () => {
  it(`${ITERATIONS} mutated EIFs: only EIF_* NleErrors, reads bounded by the file, one pass`, async () => {
    const rand = rng(SEED)
    const outcomes = new Map<string, number>()
    for (let n = 0; n < ITERATIONS; n++) {
      const eif = mutate(bases[n % bases.length]!, rand)
      const src = countingSource(eif)
      let outcome: string
      try {
        const info = await inspectEif(src, {fileDigest: n % 4 === 0})
        await describeEif(info)
        outcome = 'parsed'
        try {
          assertTrusted(info)
        } catch (error) {
          if (!isNleError(error) || !error.code.startsWith('EIF_')) throw error
        }
        for (const v of [info.measurements.PCR0, info.measurements.PCR1, info.measurements.PCR2]) expect(v).toMatch(/^[0-9a-f]{96}$/)
      } catch (error) {
        if (!isNleError(error) || !error.code.startsWith('EIF_')) {
          throw new Error(`iteration ${n}: non-NleError ${String(error)}\n${(error as Error).stack ?? ''}`, {cause: error})
        }
        outcome = error.code
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      // Never a read past the end, never a read longer than the file: the reader checks declared
      // sizes against the real size before it reads (or allocates) anything from them.
      for (const r of src.reads) {
        expect(r.position + r.length).toBeLessThanOrEqual(eif.length)
        expect(r.length).toBeLessThanOrEqual(Math.max(eif.length, 1))
      }
      // One pass: the whole file at most once, plus the header and section headers read twice.
      expect(src.bytesRequested).toBeLessThanOrEqual(eif.length + EIF_HEADER_SIZE + EIF_MAX_SECTIONS * EIF_SECTION_HEADER_SIZE)
    }
    // The mutations really reach many distinct checks (and some images still parse).
    if (process.env.NLE_FUZZ_REPORT) console.log(Object.fromEntries([...outcomes].sort((a, b) => b[1] - a[1])))
    expect(outcomes.size).toBeGreaterThanOrEqual(15)
    expect(outcomes.get('parsed') ?? 0).toBeGreaterThan(0)
  })

  it('a tiny file declaring exabyte sections is rejected after reading only its header and one section header', async () => {
    const b = Buffer.from((await buildEif(randomSpec(3))).bytes.subarray(0, 600))
    b.writeBigUInt64BE((1n << 62n), 28 + 256)
    const src = countingSource(b)
    await expect(inspectEif(src)).rejects.toMatchObject({code: 'EIF_SECTION_SIZE_MISMATCH'})
    expect(src.bytesRequested).toBeLessThanOrEqual(EIF_HEADER_SIZE + EIF_SECTION_HEADER_SIZE)
  })
})
