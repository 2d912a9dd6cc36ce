import {describe, expect, it} from 'vitest'

import {rng} from '../../test-support/rng.js'
import {FakeDriver, GUEST_BASE} from '../../test-support/vsock-driver.js'
import {GuestFault, GuestMemory} from './memory.js'
import {VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VirtQueue} from './virtqueue.js'

function fault(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    if (error instanceof GuestFault) return error.reason
    throw error
  }
  throw new Error('expected a GuestFault')
}

describe('split virtqueue, device side', () => {
  it('pops a well-formed chain (readable then writable), returns it to the used ring, and reads/writes across its buffers', () => {
    const d = new FakeDriver(16)
    const q = d.tx.queue()
    const a = d.alloc(10)
    const b = d.alloc(6)
    const w = d.alloc(8)
    d.write(a, Buffer.from('0123456789'))
    d.write(b, Buffer.from('abcdef'))
    const head = d.tx.addChain([
      {addr: a, len: 10, write: false},
      {addr: b, len: 6, write: false},
      {addr: w, len: 8, write: true},
    ])
    expect(q.pending()).toBe(1)
    const chain = q.pop()!
    expect(chain).toMatchObject({head, readLen: 16, writeLen: 8})
    expect(Buffer.from(q.read(chain, 8, 5)).toString()).toBe('89abc')
    expect(q.write(chain, [Buffer.from('xyz'), Buffer.from('12345')])).toBe(8)
    expect(d.read(w, 8).toString()).toBe('xyz12345')
    expect(() => q.write(chain, [Buffer.alloc(9)])).toThrow(RangeError)
    q.push(chain.head, 8)
    expect(d.tx.takeUsed()).toEqual([[head, 8]])
    expect(q.pop()).toBeUndefined()
    expect(q.base).toBe(1)
  })

  it('refuses a loop in a chain, a head or next index out of range, an indirect descriptor, readable after writable', () => {
    type Ring = FakeDriver['tx']
    const cases: [string, (ring: Ring, buf: number) => void, RegExp][] = [
      ['loop', (t, buf) => (t.setDesc(0, buf, 8, VIRTQ_DESC_F_NEXT, 1), t.setDesc(1, buf, 8, VIRTQ_DESC_F_NEXT, 0), t.publish(0)), /loop/],
      ['self loop', (t, buf) => (t.setDesc(2, buf, 8, VIRTQ_DESC_F_NEXT, 2), t.publish(2)), /loop/],
      ['head out of range', (t) => t.publish(8), /names descriptor 8/],
      ['next out of range', (t, buf) => (t.setDesc(3, buf, 8, VIRTQ_DESC_F_NEXT, 200), t.publish(3)), /continues at 200/],
      ['indirect', (t, buf) => (t.setDesc(4, buf, 16, VIRTQ_DESC_F_INDIRECT), t.publish(4)), /indirect/],
      ['readable after writable', (t, buf) => (t.setDesc(5, buf, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 6), t.setDesc(6, buf, 8, 0), t.publish(5)), /readable after a writable/],
    ]
    for (const [name, setup, reason] of cases) {
      const d = new FakeDriver(16, 1 << 20, 8)
      const q = d.tx.queue()
      setup(d.tx, d.alloc(64))
      expect(fault(() => q.pop()), name).toMatch(reason)
    }
  })

  it('refuses buffers outside guest memory: past the end, before the start, a length that overflows, high address bits', () => {
    const d = new FakeDriver(16, 1 << 20, 8)
    const size = d.bytes.length
    const cases: [number, number][] = [
      [GUEST_BASE + size - 4, 8],
      [GUEST_BASE - 1, 2],
      [0, 1],
      [GUEST_BASE, 0xffffffff],
      [2 ** 52, 1],
    ]
    let base = 0
    for (const [addr, len] of cases) {
      const q = new VirtQueue(d.memory, 8, {desc: d.tx.desc, avail: d.tx.avail, used: d.tx.used}, base, 1 << 30)
      d.tx.setDesc(0, addr, len, 0)
      d.tx.publish(0)
      expect(fault(() => q.pop())).toMatch(/outside guest memory|out of range/)
      base++
    }
    const q = new VirtQueue(d.memory, 8, {desc: d.tx.desc, avail: d.tx.avail, used: d.tx.used}, base, 1 << 30)
    d.view.setUint32(d.tx.desc - GUEST_BASE + 4, 0xffffffff, true) // address bits 32–63 of descriptor 0
    d.view.setUint32(d.tx.desc - GUEST_BASE + 8, 1, true)
    d.tx.publish(0)
    expect(fault(() => q.pop())).toMatch(/out of range/)
  })

  it('refuses an available index more than the queue size ahead, and chains above the byte limit', () => {
    const d = new FakeDriver(16, 1 << 20, 8)
    const q = d.tx.queue(1000)
    d.tx.setAvailIdx(9)
    expect(fault(() => q.pending())).toMatch(/ahead/)
    d.tx.setAvailIdx(0)
    const buf = d.alloc(2048)
    d.tx.addChain([
      {addr: buf, len: 600, write: false},
      {addr: buf + 600, len: 600, write: false},
    ])
    expect(fault(() => q.pop())).toMatch(/more than 1000 bytes/)
  })

  it('refuses rings that are misaligned, outside memory, across regions, or of a size that is not a power of two', () => {
    const d = new FakeDriver(16, 1 << 20, 8)
    const ok = {desc: d.tx.desc, avail: d.tx.avail, used: d.tx.used}
    expect(fault(() => new VirtQueue(d.memory, 8, {...ok, desc: ok.desc + 8}, 0, 100))).toMatch(/misaligned/)
    expect(fault(() => new VirtQueue(d.memory, 8, {...ok, used: GUEST_BASE + d.bytes.length - 16}, 0, 100))).toMatch(/outside guest memory/)
    expect(fault(() => new VirtQueue(d.memory, 12, ok, 0, 100))).toMatch(/power of two/)
    expect(fault(() => new VirtQueue(d.memory, 65536, ok, 0, 100))).toMatch(/power of two/)
    const two = new GuestMemory([
      {guestAddr: 0, size: 4096, userAddr: 0x1000, bytes: new Uint8Array(4096)},
      {guestAddr: 4096, size: 4096, userAddr: 0x9000, bytes: new Uint8Array(4096)},
    ])
    expect(fault(() => new VirtQueue(two, 256, {desc: 0, avail: 4096 - 16, used: 4096 + 1024}, 0, 100))).toMatch(/spans two memory regions/)
  })

  it('fuzz (seeded): random descriptor tables and rings give checked chains or a GuestFault, never another error or an unchecked buffer', () => {
    let chains = 0
    let faults = 0
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed)
      const num = 1 << Math.floor(r() * 5) // 1…16
      const d = new FakeDriver(16, 64 * 1024, num)
      const q = d.tx.queue(16 * 1024)
      const memEnd = GUEST_BASE + d.bytes.length
      const pick = (): number => {
        const x = r()
        if (x < 0.6) return GUEST_BASE + Math.floor(r() * d.bytes.length)
        if (x < 0.8) return memEnd - Math.floor(r() * 64)
        if (x < 0.9) return Math.floor(r() * GUEST_BASE)
        return Math.floor(r() * 2 ** 53)
      }
      for (let i = 0; i < num; i++) {
        const len = r() < 0.8 ? Math.floor(r() * 4096) : Math.floor(r() * 2 ** 32)
        const flags = Math.floor(r() * 8)
        const next = r() < 0.8 ? Math.floor(r() * num) : Math.floor(r() * 65536)
        d.tx.setDesc(i, Math.min(pick(), 2 ** 53 - 1), len, flags, next)
      }
      const heads = Math.floor(r() * (num + 2))
      for (let i = 0; i < heads; i++) d.tx.publish(r() < 0.9 ? Math.floor(r() * num) : Math.floor(r() * 65536))
      if (r() < 0.1) d.tx.setAvailIdx(Math.floor(r() * 65536))
      try {
        for (let n = 0; n < num + 2; n++) {
          const chain = q.pop()
          if (!chain) break
          expect(chain.readable.length + chain.writable.length).toBeLessThanOrEqual(num)
          expect(chain.readLen + chain.writeLen).toBeLessThanOrEqual(16 * 1024)
          for (const s of [...chain.readable, ...chain.writable]) {
            expect(s.addr).toBeGreaterThanOrEqual(GUEST_BASE)
            expect(s.addr + s.len).toBeLessThanOrEqual(memEnd)
          }
          q.push(chain.head, 0)
          chains++
        }
      } catch (error) {
        if (!(error instanceof GuestFault)) throw new Error(`seed ${seed}: ${(error as Error).stack}`)
        faults++
      }
    }
    // Both outcomes occur: the fuzz reaches the checks and gets past them.
    expect(chains).toBeGreaterThan(20)
    expect(faults).toBeGreaterThan(100)
  })
})
