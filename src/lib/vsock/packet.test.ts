import {describe, expect, it} from 'vitest'

import {rng} from '../../test-support/rng.js'
import {GuestFault, GuestMemory, viewChunks} from './memory.js'
import {HEADER_SIZE, type PacketHeader, decodeHeader, encodeHeader, peerCredit, u32Diff} from './packet.js'

describe('vsock packet header', () => {
  it('encodes the spec layout (little-endian, 44 bytes) and decodes it back, for seeded random headers', () => {
    const fixed: PacketHeader = {srcCid: 16n, dstCid: 3n, srcPort: 0x01020304, dstPort: 5000, len: 7, type: 1, op: 5, flags: 2, bufAlloc: 262144, fwdCnt: 0xfffffffe}
    const b = encodeHeader(fixed)
    expect(b.length).toBe(HEADER_SIZE)
    expect(Buffer.from(b).toString('hex')).toBe(
      '1000000000000000' + '0300000000000000' + '04030201' + '88130000' + '07000000' + '0100' + '0500' + '02000000' + '00000400' + 'feffffff',
    )
    const r = rng(7)
    const u32 = (): number => Math.floor(r() * 2 ** 32)
    for (let i = 0; i < 200; i++) {
      const h: PacketHeader = {srcCid: BigInt(u32()) << 32n | BigInt(u32()), dstCid: BigInt(u32()), srcPort: u32(), dstPort: u32(), len: u32(), type: u32() & 0xffff, op: u32() & 0xffff, flags: u32(), bufAlloc: u32(), fwdCnt: u32()}
      expect(decodeHeader(encodeHeader(h))).toEqual(h)
    }
    expect(() => decodeHeader(new Uint8Array(43))).toThrow(RangeError)
  })

  it('credit: buf_alloc - (tx_cnt - fwd_cnt) with u32 wrap-around, never negative', () => {
    expect(peerCredit(1000, 300, 100)).toBe(800)
    expect(peerCredit(1000, 5, 0xfffffff0)).toBe(1000 - 21)
    expect(peerCredit(1000, 2000, 0)).toBe(0)
    expect(peerCredit(0, 0, 0)).toBe(0)
    expect(u32Diff(3, 0xffffffff)).toBe(4)
  })
})

describe('guest memory', () => {
  const a = new Uint8Array(4096)
  const b = new Uint8Array(4096)
  const mem = new GuestMemory([
    {guestAddr: 0x1000, size: 4096, userAddr: 0x7000_0000, bytes: a},
    {guestAddr: 0x2000, size: 4096, userAddr: 0x9000_0000, bytes: b},
  ])

  it('copies in and out across adjacent regions, and translates the front-end\'s addresses', () => {
    mem.copyIn(0x1ffe, Buffer.from('abcd'))
    expect(Buffer.from(a.subarray(4094)).toString()).toBe('ab')
    expect(Buffer.from(b.subarray(0, 2)).toString()).toBe('cd')
    const out = new Uint8Array(4)
    mem.copyOut(0x1ffe, 4, out)
    expect(Buffer.from(out).toString()).toBe('abcd')
    expect(mem.userToGuest(0x9000_0010, 16, 'ring')).toBe(0x2010)
  })

  it('refuses ranges in a hole, past the end, negative, overflowing, or not integers', () => {
    for (const [gpa, len] of [[0, 1], [0xfff, 2], [0x2fff, 2], [0x3000, 1], [-1, 1], [0x1000, -1], [0x1000, 2 ** 53], [0.5, 1], [2 ** 60, 1]] as const) {
      expect(() => mem.check(gpa, len), `${gpa}+${len}`).toThrow(GuestFault)
    }
    expect(() => mem.userToGuest(0x7000_0ff0, 32, 'ring')).toThrow(GuestFault)
    expect(() => mem.userToGuest(0x1234, 1, 'ring')).toThrow(GuestFault)
    expect(() => mem.view(0x1ff0, 32, 'ring')).toThrow(/spans two/)
  })

  it('refuses a table with overlapping regions or a region larger than its mapping', () => {
    expect(() => new GuestMemory([{guestAddr: 0, size: 8192, userAddr: 0, bytes: new Uint8Array(4096)}])).toThrow(RangeError)
    expect(() => new GuestMemory([{guestAddr: 0, size: 4096, userAddr: 0, bytes: a}, {guestAddr: 4095, size: 4096, userAddr: 0x10000, bytes: b}])).toThrow(/overlap/)
  })

  it('views a large region in overlapping pieces, so a ring just before a cut still lies in one view', () => {
    expect(viewChunks(10, 4, 1)).toEqual([
      {offset: 0, size: 4, length: 5},
      {offset: 4, size: 4, length: 5},
      {offset: 8, size: 2, length: 2},
    ])
    const whole = new Uint8Array(8192)
    const cut = new GuestMemory(viewChunks(8192, 4096, 64).map((p) => ({guestAddr: 0x10000 + p.offset, size: p.size, userAddr: 0x5000_0000 + p.offset, bytes: whole.subarray(p.offset, p.offset + p.length)})))
    const v = cut.view(0x10000 + 4096 - 16, 48, 'ring')
    v[20] = 7
    expect(whole[4096 + 4]).toBe(7)
    expect(cut.userToGuest(0x5000_0000 + 4090, 32, 'ring')).toBe(0x10000 + 4090)
    expect(() => cut.view(0x10000 + 4096 - 16, 100, 'ring')).toThrow(/spans two/)
  })
})
