/**
 * The back-end side of the vhost-user protocol (QEMU docs/interop/vhost-user.rst) for a vsock
 * device: the control messages the front-end (QEMU) sends on the Unix socket, with the file
 * descriptors they carry (SCM_RIGHTS), applied to the memory table, the two vrings (0 rx, 1 tx;
 * the event queue stays in QEMU) and the VsockDevice.
 *
 * Message: le32 request, le32 flags (bits 0–1 version = 1, bit 2 reply, bit 3 need-reply),
 * le32 size, then `size` payload bytes. The transport (./backend.ts) reads messages and sends the
 * replies `handle` returns; this module does no I/O except through `SessionIo` (mmap, eventfds).
 *
 * Offered: VIRTIO_F_VERSION_1 and VHOST_USER_F_PROTOCOL_FEATURES; protocol features REPLY_ACK and
 * CONFIG (GET_CONFIG answers struct virtio_vsock_config {le64 guest_cid}). With protocol features
 * negotiated a ring starts disabled and runs once it has its memory, size, addresses, kick fd and
 * SET_VRING_ENABLE(1); GET_VRING_BASE stops it and returns where to resume. A message the back-end
 * cannot accept (FrontendError) ends the session.
 */
import {GuestFault, GuestMemory, type MemoryRegion, viewChunks} from './memory.js'
import type {Logger, VsockDevice} from './device.js'
import {MAX_QUEUE_SIZE, VirtQueue} from './virtqueue.js'
import {MAX_RX_CHAIN, MAX_TX_CHAIN} from './device.js'

export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_MAX_MEM_SLOTS: 36,
} as const

const REQ_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Req).map(([k, v]) => [v, k]))
export function requestName(request: number): string {
  return REQ_NAMES[request] ?? `request ${request}`
}

export const HEADER_BYTES = 12
export const FLAG_VERSION = 0x1
export const FLAG_REPLY = 0x4
export const FLAG_NEED_REPLY = 0x8
/** The largest payload accepted (SET_MEM_TABLE with 8 regions is 264 bytes; GET_CONFIG ≤ 268). */
export const MAX_PAYLOAD_BYTES = 4096
/** The most memory regions (and so fds) in one SET_MEM_TABLE. */
export const MAX_REGIONS = 8

export const VIRTIO_F_VERSION_1 = 1n << 32n
export const VHOST_USER_F_PROTOCOL_FEATURES = 1n << 30n
export const PROTOCOL_F_REPLY_ACK = 1n << 3n
export const PROTOCOL_F_CONFIG = 1n << 9n
export const OFFERED_FEATURES = VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES
export const OFFERED_PROTOCOL_FEATURES = PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG
/** Bit 8 of a SET_VRING_KICK/CALL/ERR payload: no file descriptor comes with it. */
const VRING_NOFD = 0x100n

export const QUEUE_RX = 0
export const QUEUE_TX = 1

export interface VhostMessage {
  request: number
  flags: number
  payload: Uint8Array
  fds: number[]
}

/** The front-end broke the protocol: the session ends (VSOCK_FRONTEND_PROTOCOL). */
export class FrontendError extends Error {
  constructor(
    readonly request: number,
    reason: string,
  ) {
    super(`${requestName(request)}: ${reason}`)
    this.name = 'FrontendError'
  }
}

export interface MappedRegion {
  bytes: Uint8Array
  unmap(): void
}

/** What the session needs from the operating system. */
export interface SessionIo {
  /** mmap `length` bytes of `fd` from file offset `offset`, shared and writable (length ≤ 4 GiB). */
  map(fd: number, length: number, offset: number): MappedRegion
  close(fd: number): void
  /** The kick eventfd of a queue (undefined: none any more); the transport owns it from here (closes the one it replaces) and polls it. */
  watchKick(queue: number, fd: number | undefined): void
  /** The call eventfd of a queue (undefined: none); owned as the kick fd is. */
  setCall(queue: number, fd: number | undefined): void
}

interface Vring {
  num: number
  desc?: number
  used?: number
  avail?: number
  base: number
  kick?: number
  enabled: boolean
  queue?: VirtQueue
}

export function u64(payload: Uint8Array, request: number): bigint {
  if (payload.length < 8) throw new FrontendError(request, `payload of ${payload.length} bytes, expected 8`)
  return new DataView(payload.buffer, payload.byteOffset, payload.length).getBigUint64(0, true)
}

function safe(n: bigint, request: number, what: string): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrontendError(request, `${what} 0x${n.toString(16)} is out of range`)
  return Number(n)
}

export function encodeMessage(request: number, flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length)
  const v = new DataView(out.buffer)
  v.setUint32(0, request, true)
  v.setUint32(4, flags, true)
  v.setUint32(8, payload.length, true)
  out.set(payload, HEADER_BYTES)
  return out
}

function le64(n: bigint): Uint8Array {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, n, true)
  return b
}

function vringState(index: number, num: number): Uint8Array {
  const b = new Uint8Array(8)
  const v = new DataView(b.buffer)
  v.setUint32(0, index, true)
  v.setUint32(4, num, true)
  return b
}

export class VhostUserSession {
  private features = 0n
  private protocolFeatures = 0n
  private memory?: GuestMemory
  private mapped: MappedRegion[] = []
  private readonly vrings: Vring[] = [0, 1].map(() => ({num: 0, base: 0, enabled: false}))

  constructor(
    private readonly device: VsockDevice,
    private readonly io: SessionIo,
    private readonly guestCid: number,
    private readonly log: Logger,
  ) {}

  /** Apply one message; returns the reply to send (header included), if any. Throws FrontendError. */
  handle(m: VhostMessage): Uint8Array | undefined {
    const keep = new Set<number>()
    try {
      const reply = this.apply(m, keep)
      if (reply) return encodeMessage(m.request, FLAG_VERSION | FLAG_REPLY, reply)
      if (m.flags & FLAG_NEED_REPLY && this.protocolFeatures & PROTOCOL_F_REPLY_ACK) return encodeMessage(m.request, FLAG_VERSION | FLAG_REPLY, le64(0n))
      return undefined
    } finally {
      for (const fd of m.fds) if (!keep.has(fd)) this.io.close(fd)
    }
  }

  private apply(m: VhostMessage, keep: Set<number>): Uint8Array | undefined {
    const p = m.payload
    const view = new DataView(p.buffer, p.byteOffset, p.length)
    const noFds = (): void => {
      if (m.fds.length > 0) throw new FrontendError(m.request, `${m.fds.length} unexpected file descriptors`)
    }
    switch (m.request) {
      case Req.GET_FEATURES:
        return le64(OFFERED_FEATURES)
      case Req.SET_FEATURES:
        this.features = u64(p, m.request) & OFFERED_FEATURES
        return undefined
      case Req.GET_PROTOCOL_FEATURES:
        return le64(OFFERED_PROTOCOL_FEATURES)
      case Req.SET_PROTOCOL_FEATURES:
        this.protocolFeatures = u64(p, m.request) & OFFERED_PROTOCOL_FEATURES
        return undefined
      case Req.SET_OWNER:
        return undefined
      case Req.RESET_OWNER:
        this.stopAll('RESET_OWNER')
        return undefined
      case Req.GET_QUEUE_NUM:
        return le64(2n)
      case Req.GET_MAX_MEM_SLOTS:
        return le64(BigInt(MAX_REGIONS))
      case Req.SET_MEM_TABLE:
        this.setMemTable(m)
        return undefined
      case Req.SET_VRING_NUM: {
        noFds()
        const [ring, num] = this.state(m, view)
        if (num < 1 || num > MAX_QUEUE_SIZE || (num & (num - 1)) !== 0) throw new FrontendError(m.request, `queue size ${num}`)
        ring.num = num
        return undefined
      }
      case Req.SET_VRING_BASE: {
        noFds()
        const [ring, base] = this.state(m, view)
        if (base > 0xffff) throw new FrontendError(m.request, `base ${base}`)
        ring.base = base
        return undefined
      }
      case Req.SET_VRING_ADDR: {
        noFds()
        if (p.length < 40) throw new FrontendError(m.request, `payload of ${p.length} bytes, expected 40`)
        const ring = this.ring(m, view.getUint32(0, true))
        ring.desc = safe(view.getBigUint64(8, true), m.request, 'descriptor address')
        ring.used = safe(view.getBigUint64(16, true), m.request, 'used ring address')
        ring.avail = safe(view.getBigUint64(24, true), m.request, 'available ring address')
        return undefined
      }
      case Req.GET_VRING_BASE: {
        noFds()
        const index = this.index(m, view)
        const ring = this.vrings[index]!
        const base = ring.queue ? ring.queue.base : ring.base
        ring.base = base
        ring.queue = undefined
        if (ring.kick !== undefined) this.io.watchKick(index, undefined)
        ring.kick = undefined
        this.updateDevice()
        return vringState(index, base)
      }
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        const word = u64(p, m.request)
        const index = Number(word & 0xffn)
        this.ring(m, index)
        const noFd = (word & VRING_NOFD) !== 0n
        if (noFd ? m.fds.length !== 0 : m.fds.length !== 1) throw new FrontendError(m.request, `${m.fds.length} file descriptors with${noFd ? ' the no-fd bit' : 'out the no-fd bit'}`)
        const fd = m.fds[0]
        if (m.request === Req.SET_VRING_ERR) return undefined // never signalled: closed
        if (fd !== undefined) keep.add(fd)
        if (m.request === Req.SET_VRING_CALL) {
          this.io.setCall(index, fd)
          return undefined
        }
        // Polling mode (no kick fd) is not supported: the ring simply does not run.
        const ring = this.vrings[index]!
        ring.kick = fd
        this.io.watchKick(index, fd)
        this.startIfReady(index)
        return undefined
      }
      case Req.SET_VRING_ENABLE: {
        noFds()
        const [ring, enable] = this.state(m, view)
        ring.enabled = enable !== 0
        const index = this.vrings.indexOf(ring)
        if (ring.enabled) this.startIfReady(index)
        else if (ring.queue) {
          ring.base = ring.queue.base
          ring.queue = undefined
          this.updateDevice()
        }
        return undefined
      }
      case Req.GET_CONFIG: {
        noFds()
        if (p.length < 12) throw new FrontendError(m.request, `payload of ${p.length} bytes`)
        const offset = view.getUint32(0, true)
        const size = view.getUint32(4, true)
        if (size > 256 || p.length < 12 + size) throw new FrontendError(m.request, `config read of ${size} bytes at ${offset}`)
        const config = new Uint8Array(8)
        new DataView(config.buffer).setBigUint64(0, BigInt(this.guestCid), true)
        const out = new Uint8Array(12 + size)
        out.set(p.subarray(0, 12))
        for (let i = 0; i < size; i++) out[12 + i] = offset + i < config.length ? config[offset + i]! : 0
        return out
      }
      case Req.SET_CONFIG:
        noFds()
        return undefined // the guest CID is the back-end's; writes are ignored
      default:
        this.log('warn', 'vhost_user_unsupported', {request: requestName(m.request)})
        if (m.flags & FLAG_NEED_REPLY && this.protocolFeatures & PROTOCOL_F_REPLY_ACK) return le64(1n)
        return undefined
    }
  }

  private index(m: VhostMessage, view: DataView): number {
    if (view.byteLength < 8) throw new FrontendError(m.request, `payload of ${view.byteLength} bytes, expected 8`)
    const index = view.getUint32(0, true)
    this.ring(m, index)
    return index
  }

  private ring(m: VhostMessage, index: number): Vring {
    const ring = this.vrings[index]
    if (!ring) throw new FrontendError(m.request, `queue ${index} (the back-end has 2)`)
    return ring
  }

  private state(m: VhostMessage, view: DataView): [Vring, number] {
    const index = this.index(m, view)
    return [this.vrings[index]!, view.getUint32(4, true)]
  }

  private setMemTable(m: VhostMessage): void {
    const p = m.payload
    if (p.length < 8) throw new FrontendError(m.request, `payload of ${p.length} bytes`)
    const view = new DataView(p.buffer, p.byteOffset, p.length)
    const n = view.getUint32(0, true)
    if (n < 1 || n > MAX_REGIONS || p.length < 8 + 32 * n) throw new FrontendError(m.request, `${n} regions in ${p.length} bytes`)
    if (m.fds.length !== n) throw new FrontendError(m.request, `${n} regions with ${m.fds.length} file descriptors`)
    const mapped: MappedRegion[] = []
    const regions: MemoryRegion[] = []
    let memory: GuestMemory
    try {
      for (let i = 0; i < n; i++) {
        const at = 8 + 32 * i
        const guestAddr = safe(view.getBigUint64(at, true), m.request, 'guest address')
        const size = safe(view.getBigUint64(at + 8, true), m.request, 'region size')
        const userAddr = safe(view.getBigUint64(at + 16, true), m.request, 'user address')
        const offset = safe(view.getBigUint64(at + 24, true), m.request, 'mmap offset')
        if (size === 0 || size > 2 ** 40) throw new FrontendError(m.request, `region size ${size}`)
        for (const piece of viewChunks(size)) {
          const region = this.io.map(m.fds[i]!, piece.length, offset + piece.offset)
          mapped.push(region)
          regions.push({guestAddr: guestAddr + piece.offset, size: piece.size, userAddr: userAddr + piece.offset, bytes: region.bytes})
        }
      }
      memory = new GuestMemory(regions)
    } catch (error) {
      for (const r of mapped) r.unmap()
      if (error instanceof FrontendError) throw error
      throw new FrontendError(m.request, (error as Error).message)
    }
    // Running rings re-point at the new mapping before the old one goes.
    const old = this.mapped
    this.memory = memory
    this.mapped = mapped
    for (const [index, ring] of this.vrings.entries()) {
      if (ring.queue) {
        ring.base = ring.queue.base
        ring.queue = undefined
        this.startIfReady(index, false)
      }
    }
    this.updateDevice()
    for (const r of old) r.unmap()
    this.log('debug', 'vhost_user_mem_table', {regions: regions.map((r) => ({guest: `0x${r.guestAddr.toString(16)}`, size: r.size}))})
  }

  private startIfReady(index: number, update = true): void {
    const ring = this.vrings[index]!
    const enabled = ring.enabled || !(this.features & VHOST_USER_F_PROTOCOL_FEATURES)
    if (ring.queue || !enabled || ring.kick === undefined || !this.memory || !ring.num || ring.desc === undefined || ring.avail === undefined || ring.used === undefined) return
    try {
      const mem = this.memory
      const desc = mem.userToGuest(ring.desc, 16 * ring.num, 'descriptor table')
      const avail = mem.userToGuest(ring.avail, 6 + 2 * ring.num, 'available ring')
      const used = mem.userToGuest(ring.used, 6 + 8 * ring.num, 'used ring')
      ring.queue = new VirtQueue(mem, ring.num, {desc, avail, used}, ring.base, index === QUEUE_RX ? MAX_RX_CHAIN * 4 : MAX_TX_CHAIN)
    } catch (error) {
      if (!(error instanceof GuestFault)) throw error
      this.log('error', 'guest_fault', {code: 'VSOCK_GUEST_FAULT', reason: `queue ${index}: ${error.reason}`})
      return
    }
    if (update) this.updateDevice()
  }

  private updateDevice(): void {
    this.device.setQueues(this.vrings[QUEUE_RX]!.queue, this.vrings[QUEUE_TX]!.queue)
  }

  private stopAll(why: string): void {
    for (const [index, ring] of this.vrings.entries()) {
      ring.queue = undefined
      if (ring.kick !== undefined) this.io.watchKick(index, undefined)
      ring.kick = undefined
      ring.enabled = false
      ring.base = 0
      this.io.setCall(index, undefined)
    }
    this.device.setQueues(undefined, undefined)
    this.device.reset(why)
  }

  /** The front-end went away: stop, unmap, close. */
  close(): void {
    this.stopAll('front-end disconnected')
    for (const r of this.mapped) r.unmap()
    this.mapped = []
    this.memory = undefined
  }

  /** The queues' current state (for the transport's kicks and tests). */
  queue(index: number): VirtQueue | undefined {
    return this.vrings[index]?.queue
  }
}
