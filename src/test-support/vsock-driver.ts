// A fake virtio-vsock driver for unit tests of src/lib/vsock: guest memory in a plain buffer, the
// rx and tx split rings laid out in it the way a driver would, and helpers to post rx buffers,
// send packets, read what the device wrote, and corrupt any of it.
import {GuestMemory} from '../lib/vsock/memory.js'
import {HEADER_SIZE, type PacketHeader, VSOCK_TYPE_STREAM, decodeHeader, encodeHeader} from '../lib/vsock/packet.js'
import {VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VirtQueue, ringSizes} from '../lib/vsock/virtqueue.js'

export const GUEST_BASE = 0x10000
/** The front-end's (QEMU's) virtual address of GUEST_BASE, as a fake memory table gives it. */
export const USER_BASE = 0x7f0000000000

export class FakeRing {
  readonly desc: number
  readonly avail: number
  readonly used: number
  private freeHead = 0
  private availIdx = 0
  private usedSeen = 0

  constructor(
    readonly driver: FakeDriver,
    readonly num: number,
  ) {
    const s = ringSizes(num)
    this.desc = driver.alloc(s.desc, 16)
    this.avail = driver.alloc(s.avail, 2)
    this.used = driver.alloc(s.used, 4)
  }

  queue(maxChainBytes = 1 << 20): VirtQueue {
    return new VirtQueue(this.driver.memory, this.num, {desc: this.desc, avail: this.avail, used: this.used}, 0, maxChainBytes)
  }

  /** Write descriptor i. */
  setDesc(i: number, addr: number, len: number, flags: number, next = 0): void {
    const v = this.driver.view
    const at = this.desc - GUEST_BASE + 16 * i
    v.setBigUint64(at, BigInt(addr), true)
    v.setUint32(at + 8, len >>> 0, true)
    v.setUint16(at + 12, flags, true)
    v.setUint16(at + 14, next, true)
  }

  /** Make the chain starting at `head` available. */
  publish(head: number): void {
    const v = this.driver.view
    v.setUint16(this.avail - GUEST_BASE + 4 + 2 * (this.availIdx % this.num), head, true)
    this.availIdx = (this.availIdx + 1) & 0xffff
    v.setUint16(this.avail - GUEST_BASE + 2, this.availIdx, true)
  }

  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff
    this.driver.view.setUint16(this.avail - GUEST_BASE + 2, this.availIdx, true)
  }

  setAvailFlags(flags: number): void {
    this.driver.view.setUint16(this.avail - GUEST_BASE, flags, true)
  }

  /** Add a chain of buffers (each [addr, len, writable]) and publish it; returns its head. */
  addChain(buffers: readonly {addr: number; len: number; write: boolean}[]): number {
    const head = this.freeHead
    buffers.forEach((b, k) => {
      const i = (head + k) % this.num
      const last = k === buffers.length - 1
      this.setDesc(i, b.addr, b.len, (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), (i + 1) % this.num)
    })
    this.freeHead = (head + buffers.length) % this.num
    this.publish(head)
    return head
  }

  /** Used entries the device returned since the last call: [head, written]. */
  takeUsed(): [number, number][] {
    const v = this.driver.view
    const idx = v.getUint16(this.used - GUEST_BASE + 2, true)
    const out: [number, number][] = []
    while (this.usedSeen !== idx) {
      const at = this.used - GUEST_BASE + 4 + 8 * (this.usedSeen % this.num)
      out.push([v.getUint32(at, true), v.getUint32(at + 4, true)])
      this.usedSeen = (this.usedSeen + 1) & 0xffff
    }
    return out
  }
}

export interface ReceivedPacket {
  header: PacketHeader
  payload: Buffer
}

export class FakeDriver {
  readonly bytes: Uint8Array
  readonly view: DataView
  readonly memory: GuestMemory
  private next = GUEST_BASE
  readonly rx: FakeRing
  readonly tx: FakeRing
  /** rx buffers posted (address by head), to read back what the device wrote. */
  private readonly rxBuffers = new Map<number, number>()

  constructor(
    readonly guestCid: number,
    size = 4 * 1024 * 1024,
    num = 64,
    /** The memory to lay the rings in (a shared mapping, for a front-end test), instead of a fresh buffer. */
    bytes?: Uint8Array,
  ) {
    this.bytes = bytes ?? new Uint8Array(size)
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength)
    this.memory = new GuestMemory([{guestAddr: GUEST_BASE, size: this.bytes.length, userAddr: USER_BASE, bytes: this.bytes}])
    this.rx = new FakeRing(this, num)
    this.tx = new FakeRing(this, num)
  }

  /** Bump allocation of guest memory (never freed: tests are short). */
  alloc(len: number, align = 8): number {
    this.next = Math.ceil(this.next / align) * align
    const at = this.next
    this.next += len
    if (this.next > GUEST_BASE + this.bytes.length) throw new Error('fake guest memory exhausted')
    return at
  }

  write(addr: number, data: Uint8Array): void {
    this.bytes.set(data, addr - GUEST_BASE)
  }

  read(addr: number, len: number): Buffer {
    return Buffer.from(this.bytes.subarray(addr - GUEST_BASE, addr - GUEST_BASE + len))
  }

  /** Post `count` rx buffers of `size` bytes (one descriptor each, as Linux does). */
  postRx(count: number, size = 4096 + HEADER_SIZE): void {
    for (let i = 0; i < count; i++) {
      const addr = this.alloc(size)
      const head = this.rx.addChain([{addr, len: size, write: true}])
      this.rxBuffers.set(head, addr)
    }
  }

  /** Packets the device put in the rx ring since the last call. */
  received(): ReceivedPacket[] {
    return this.rx.takeUsed().map(([head, len]) => {
      const addr = this.rxBuffers.get(head)!
      const raw = this.read(addr, len)
      const header = decodeHeader(raw)
      return {header, payload: raw.subarray(HEADER_SIZE, HEADER_SIZE + header.len)}
    })
  }

  /** Queue a packet on tx: header and payload in separate descriptors (as Linux does). */
  send(h: Partial<PacketHeader> & {op: number}, payload: Uint8Array = new Uint8Array(0)): number {
    const header: PacketHeader = {
      srcCid: BigInt(this.guestCid),
      dstCid: 3n,
      srcPort: 1024,
      dstPort: 0,
      len: payload.length,
      type: VSOCK_TYPE_STREAM,
      flags: 0,
      bufAlloc: 256 * 1024,
      fwdCnt: 0,
      ...h,
    }
    const hAddr = this.alloc(HEADER_SIZE)
    this.write(hAddr, encodeHeader(header))
    const buffers = [{addr: hAddr, len: HEADER_SIZE, write: false}]
    if (payload.length > 0) {
      const pAddr = this.alloc(payload.length)
      this.write(pAddr, payload)
      buffers.push({addr: pAddr, len: payload.length, write: false})
    }
    return this.tx.addChain(buffers)
  }
}

/** Little-endian 32- and 64-bit words back to back (vhost-user message payloads). */
export function words(...parts: [number | bigint, 4 | 8][]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, [, w]) => n + w, 0))
  const v = new DataView(out.buffer)
  let at = 0
  for (const [x, w] of parts) {
    if (w === 4) v.setUint32(at, Number(x), true)
    else v.setBigUint64(at, BigInt(x), true)
    at += w
  }
  return out
}
