// A fake vhost-user front-end for tests of the back-end process without QEMU: it does what QEMU
// does on the control socket — with real file descriptors (a memfd for guest memory, eventfds for
// kick and call) sent as SCM_RIGHTS through koffi — so the back-end's recvmsg, mmap and eventfd
// paths run for real. Blocking calls; each message is small.
import {createRequire} from 'node:module'

import {mapShared} from '../lib/vsock/libc.js'
import {FLAG_NEED_REPLY, FLAG_VERSION, HEADER_BYTES} from '../lib/vsock/vhost-user.js'

type Koffi = typeof import('koffi')
const koffi = createRequire(import.meta.url)('koffi') as Koffi
const lib = koffi.load('libc.so.6')
const c = {
  socket: lib.func('int socket(int, int, int)') as (a: number, b: number, c: number) => number,
  connect: lib.func('int connect(int, void *, uint32_t)') as (fd: number, addr: Buffer, len: number) => number,
  sendmsg: lib.func('intptr_t sendmsg(int, void *, int)') as (fd: number, msg: unknown, flags: number) => number,
  recv: lib.func('intptr_t recv(int, _Out_ uint8_t *buf, size_t, int)') as (fd: number, buf: Buffer, len: number, flags: number) => number,
  close: lib.func('int close(int)') as (fd: number) => number,
  memfdCreate: lib.func('int memfd_create(const char *, unsigned int)') as (name: string, flags: number) => number,
  ftruncate: lib.func('int ftruncate(int, int64_t)') as (fd: number, len: number) => number,
  eventfd: lib.func('int eventfd(unsigned int, int)') as (init: number, flags: number) => number,
  write: lib.func('intptr_t write(int, const uint8_t *buf, size_t)') as (fd: number, buf: Buffer, len: number) => number,
}
const MSG_WAITALL = 0x100

export function memfd(size: number): {fd: number; bytes: Uint8Array; unmap: () => void} {
  const fd = c.memfdCreate('nle-test-guest', 0)
  if (fd < 0 || c.ftruncate(fd, size) !== 0) throw new Error(`memfd failed (errno ${koffi.errno()})`)
  const m = mapShared(fd, size, 0)
  return {fd, bytes: m.bytes, unmap: m.unmap}
}

export function eventFd(): number {
  const fd = c.eventfd(0, 0o2000000 | 0o4000)
  if (fd < 0) throw new Error('eventfd failed')
  return fd
}

export function kick(fd: number): void {
  const one = Buffer.alloc(8)
  one.writeBigUInt64LE(1n)
  c.write(fd, one, 8)
}

export function closeFd(fd: number): void {
  c.close(fd)
}

export class FakeFrontend {
  readonly fd: number
  private readonly msg = koffi.alloc('uint8_t', 56)
  private readonly iov = koffi.alloc('uint8_t', 16)
  private readonly control = koffi.alloc('uint8_t', 64)

  constructor(path: string) {
    this.fd = c.socket(1, 1 | 0o2000000, 0)
    const addr = Buffer.alloc(110)
    addr.writeUInt16LE(1, 0)
    addr.write(path, 2)
    if (c.connect(this.fd, addr, 2 + Buffer.byteLength(path) + 1) !== 0) throw new Error(`connect ${path} failed (errno ${koffi.errno()})`)
  }

  /** Send one message with `fds` attached (SCM_RIGHTS). */
  send(request: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], needReply = false): void {
    const data = koffi.alloc('uint8_t', HEADER_BYTES + payload.length)
    const bytes = new Uint8Array(koffi.view(data, HEADER_BYTES + payload.length))
    const v = new DataView(bytes.buffer)
    v.setUint32(0, request, true)
    v.setUint32(4, FLAG_VERSION | (needReply ? FLAG_NEED_REPLY : 0), true)
    v.setUint32(8, payload.length, true)
    bytes.set(payload, HEADER_BYTES)
    const iov = new DataView(koffi.view(this.iov, 16))
    iov.setBigUint64(0, koffi.address(data), true)
    iov.setBigUint64(8, BigInt(bytes.length), true)
    const m = new DataView(koffi.view(this.msg, 56))
    m.setBigUint64(0, 0n, true)
    m.setUint32(8, 0, true)
    m.setBigUint64(16, koffi.address(this.iov), true)
    m.setBigUint64(24, 1n, true)
    const cm = new DataView(koffi.view(this.control, 64))
    if (fds.length > 0) {
      const len = 16 + 4 * fds.length
      cm.setBigUint64(0, BigInt(len), true)
      cm.setInt32(8, 1, true) // SOL_SOCKET
      cm.setInt32(12, 1, true) // SCM_RIGHTS
      fds.forEach((fd, i) => cm.setInt32(16 + 4 * i, fd, true))
      m.setBigUint64(32, koffi.address(this.control), true)
      m.setBigUint64(40, BigInt((len + 7) & ~7), true)
    } else {
      m.setBigUint64(32, 0n, true)
      m.setBigUint64(40, 0n, true)
    }
    m.setInt32(48, 0, true)
    const n = Number(c.sendmsg(this.fd, this.msg, 0x4000))
    if (n !== bytes.length) throw new Error(`sendmsg sent ${n} of ${bytes.length} (errno ${koffi.errno()})`)
  }

  /** The next reply's payload (blocking). */
  reply(): Buffer {
    const header = this.exactly(HEADER_BYTES)
    return this.exactly(header.readUInt32LE(8))
  }

  private exactly(len: number): Buffer {
    const out = Buffer.alloc(len)
    if (len === 0) return out
    const n = Number(c.recv(this.fd, out, len, MSG_WAITALL))
    if (n !== len) throw new Error(`recv got ${n} of ${len} (errno ${koffi.errno()})`)
    return out
  }

  close(): void {
    c.close(this.fd)
  }
}
