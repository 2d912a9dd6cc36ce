/**
 * One split virtqueue (virtio spec 1.2, §2.7), device side, over guest memory:
 *
 *   descriptor table  num × {le64 addr, le32 len, le16 flags, le16 next}        (16-byte aligned)
 *   available ring    le16 flags, le16 idx, le16 ring[num], le16 used_event     (2-byte aligned)
 *   used ring         le16 flags, le16 idx, {le32 id, le32 len}[num], le16 avail_event (4-byte aligned)
 *
 * The driver (the guest) writes the table and the available ring while the device reads them, so
 * every value is read once, then checked, then used: a head or `next` index ≥ num, a chain longer
 * than the table (a loop), an indirect descriptor (not negotiated), a readable descriptor after a
 * writable one, a buffer outside guest memory, an available index more than `num` ahead, or a
 * chain above `maxChainBytes` raise GuestFault, and the caller cuts the guest off.
 *
 * Chains are consumed synchronously (popped, copied, returned to the used ring), so the device
 * never holds a reference into guest memory across events.
 */
import {GuestFault, type GuestMemory} from './memory.js'

export const VIRTQ_DESC_F_NEXT = 1
export const VIRTQ_DESC_F_WRITE = 2
export const VIRTQ_DESC_F_INDIRECT = 4
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1
/** The largest queue the spec allows (and QEMU offers 128 or 256 for vsock). */
export const MAX_QUEUE_SIZE = 32768

export interface RingAddresses {
  /** Guest-physical addresses of the three parts. */
  desc: number
  avail: number
  used: number
}

export interface Segment {
  addr: number
  len: number
}

export interface Chain {
  head: number
  readable: Segment[]
  writable: Segment[]
  readLen: number
  writeLen: number
}

export function ringSizes(num: number): {desc: number; avail: number; used: number} {
  return {desc: 16 * num, avail: 6 + 2 * num, used: 6 + 8 * num}
}

export class VirtQueue {
  private readonly desc: DataView
  private readonly availIdx: Uint16Array
  private readonly availRing: Uint16Array
  private readonly usedIdx: Uint16Array
  private readonly usedRing: Uint32Array
  /** The next available-ring slot to consume (free-running u16). */
  private lastAvail: number
  /** The next used-ring slot to fill (free-running u16). */
  private nextUsed: number

  constructor(
    private readonly memory: GuestMemory,
    readonly num: number,
    addrs: RingAddresses,
    base: number,
    private readonly maxChainBytes: number,
  ) {
    if (!Number.isInteger(num) || num < 1 || num > MAX_QUEUE_SIZE || (num & (num - 1)) !== 0) throw new GuestFault(`queue size ${num} is not a power of two ≤ ${MAX_QUEUE_SIZE}`)
    if (addrs.desc % 16 !== 0 || addrs.avail % 2 !== 0 || addrs.used % 4 !== 0) throw new GuestFault('a ring is misaligned')
    const sizes = ringSizes(num)
    const d = memory.view(addrs.desc, sizes.desc, 'descriptor table')
    const a = memory.view(addrs.avail, sizes.avail, 'available ring')
    const u = memory.view(addrs.used, sizes.used, 'used ring')
    if (d.byteOffset % 8 !== 0 || a.byteOffset % 2 !== 0 || u.byteOffset % 4 !== 0) throw new GuestFault('a ring is misaligned in the mapping')
    this.desc = new DataView(d.buffer, d.byteOffset, d.byteLength)
    this.availIdx = new Uint16Array(a.buffer, a.byteOffset, 2)
    this.availRing = new Uint16Array(a.buffer, a.byteOffset + 4, num)
    this.usedIdx = new Uint16Array(u.buffer, u.byteOffset, 2)
    this.usedRing = new Uint32Array(u.buffer, u.byteOffset + 4, 2 * num)
    this.lastAvail = base & 0xffff
    this.nextUsed = Atomics.load(this.usedIdx, 1)
  }

  /** The available-ring index to resume from (GET_VRING_BASE). */
  get base(): number {
    return this.lastAvail
  }

  /** How many chains the driver has made available and the device not consumed. */
  pending(): number {
    const idx = Atomics.load(this.availIdx, 1)
    const n = (idx - this.lastAvail) & 0xffff
    if (n > this.num) throw new GuestFault(`available index ${idx} is ${n} ahead of ${this.lastAvail}, more than the queue size ${this.num}`)
    return n
  }

  /** Take the next available chain, checked, or undefined when there is none. */
  pop(): Chain | undefined {
    if (this.pending() === 0) return undefined
    const head = this.availRing[this.lastAvail % this.num]!
    if (head >= this.num) throw new GuestFault(`available ring names descriptor ${head} of ${this.num}`)
    const chain: Chain = {head, readable: [], writable: [], readLen: 0, writeLen: 0}
    let i = head
    for (let count = 1; ; count++) {
      if (count > this.num) throw new GuestFault(`descriptor chain from ${head} is longer than the table (a loop)`)
      const at = 16 * i
      const lo = this.desc.getUint32(at, true)
      const hi = this.desc.getUint32(at + 4, true)
      const len = this.desc.getUint32(at + 8, true)
      const flags = this.desc.getUint16(at + 12, true)
      const next = this.desc.getUint16(at + 14, true)
      if (hi >= 0x100000) throw new GuestFault(`descriptor ${i} address 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} is out of range`)
      const addr = hi * 0x1_0000_0000 + lo
      if (flags & VIRTQ_DESC_F_INDIRECT) throw new GuestFault(`descriptor ${i} is indirect (not negotiated)`)
      if (len > 0) {
        this.memory.check(addr, len, `descriptor ${i}`)
        if (flags & VIRTQ_DESC_F_WRITE) {
          chain.writable.push({addr, len})
          chain.writeLen += len
        } else {
          if (chain.writable.length > 0) throw new GuestFault(`descriptor ${i} is readable after a writable one`)
          chain.readable.push({addr, len})
          chain.readLen += len
        }
        if (chain.readLen + chain.writeLen > this.maxChainBytes) throw new GuestFault(`descriptor chain from ${head} holds more than ${this.maxChainBytes} bytes`)
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break
      if (next >= this.num) throw new GuestFault(`descriptor ${i} continues at ${next} of ${this.num}`)
      i = next
    }
    this.lastAvail = (this.lastAvail + 1) & 0xffff
    return chain
  }

  /** Return a chain to the driver, saying how many bytes the device wrote into it. */
  push(head: number, written: number): void {
    const slot = this.nextUsed % this.num
    this.usedRing[2 * slot] = head
    this.usedRing[2 * slot + 1] = written >>> 0
    this.nextUsed = (this.nextUsed + 1) & 0xffff
    Atomics.store(this.usedIdx, 1, this.nextUsed)
  }

  /** Whether the driver wants an interrupt for used buffers (it may suppress them). */
  wantsInterrupt(): boolean {
    return (Atomics.load(this.availIdx, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0
  }

  /** Copy a chain's readable bytes [offset, offset+len) out of guest memory. */
  read(chain: Chain, offset: number, len: number): Uint8Array {
    const out = new Uint8Array(len)
    let skip = offset
    let filled = 0
    for (const s of chain.readable) {
      if (filled === len) break
      if (skip >= s.len) {
        skip -= s.len
        continue
      }
      const n = Math.min(s.len - skip, len - filled)
      this.memory.copyOut(s.addr + skip, n, out, filled)
      filled += n
      skip = 0
    }
    if (filled !== len) throw new RangeError(`chain holds ${chain.readLen} readable bytes, asked for ${offset + len}`)
    return out
  }

  /** Write `parts` one after the other into a chain's writable buffers; returns the bytes written. */
  write(chain: Chain, parts: readonly Uint8Array[]): number {
    let seg = 0
    let segOff = 0
    let total = 0
    for (const part of parts) {
      let off = 0
      while (off < part.length) {
        const s = chain.writable[seg]
        if (!s) throw new RangeError('chain too small for the packet')
        const n = Math.min(s.len - segOff, part.length - off)
        this.memory.copyIn(s.addr + segOff, part.subarray(off, off + n))
        off += n
        segOff += n
        total += n
        if (segOff === s.len) {
          seg++
          segOff = 0
        }
      }
    }
    return total
  }
}
