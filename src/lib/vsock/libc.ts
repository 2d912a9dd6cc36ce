/**
 * The C library calls the vhost-user back-end needs and Node does not offer, bound with koffi
 * (as ../attestation/nsm-device.ts binds ioctl): a Unix socket it can recvmsg() on (the front-end
 * passes memory and eventfd file descriptors as SCM_RIGHTS), mmap of the guest's memory, eventfd
 * reads and writes, and poll() — called asynchronously, on libuv's thread pool, so the event loop
 * (host sockets, signals, the parent watch) keeps running while it waits.
 *
 * Bound once, on first use; Linux x86_64/arm64 struct layouts (LP64).
 */
import {createRequire} from 'node:module'

import {vsockError} from './errors.js'

type Koffi = typeof import('koffi')
type Pointer = unknown

interface Bindings {
  koffi: Koffi
  socket: (domain: number, type: number, protocol: number) => number
  bind: (fd: number, addr: Buffer, len: number) => number
  listen: (fd: number, backlog: number) => number
  accept4: (fd: number, addr: null, len: null, flags: number) => number
  close: (fd: number) => number
  recvmsg: (fd: number, msg: Pointer, flags: number) => number
  recv: (fd: number, buf: Buffer, len: number, flags: number) => number
  send: (fd: number, buf: Uint8Array, len: number, flags: number) => number
  read: (fd: number, buf: Buffer, len: number) => number
  write: (fd: number, buf: Buffer, len: number) => number
  eventfd: (initval: number, flags: number) => number
  mmap: (addr: null, len: number, prot: number, flags: number, fd: number, offset: number) => Pointer
  munmap: (addr: Pointer, len: number) => number
  poll: ((fds: Pointer, n: number, timeout: number) => number) & {async: (fds: Pointer, n: number, timeout: number, cb: (error: unknown, result: number) => void) => void}
}

const AF_UNIX = 1
const SOCK_STREAM = 1
const SOCK_CLOEXEC = 0o2000000
const SOL_SOCKET = 1
const SCM_RIGHTS = 1
const MSG_CTRUNC = 0x8
const MSG_NOSIGNAL = 0x4000
const MSG_WAITALL = 0x100
const EINTR = 4
const EAGAIN = 11
const EFD_CLOEXEC = 0o2000000
const EFD_NONBLOCK = 0o4000
const PROT_READ_WRITE = 3
const MAP_SHARED = 1
export const POLLIN = 1
export const POLLERR = 8
export const POLLHUP = 16
export const POLLNVAL = 32

let bound: Bindings | undefined

export function libc(): Bindings {
  if (bound) return bound
  if (process.platform !== 'linux') throw vsockError('VSOCK_UNAVAILABLE', `The vsock back-end runs on Linux only; this is ${process.platform}.`)
  let koffi: Koffi
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi
  } catch (error) {
    throw vsockError('VSOCK_UNAVAILABLE', `koffi could not be loaded: ${(error as Error).message}`, {cause: error})
  }
  const lib = koffi.load('libc.so.6')
  bound = {
    koffi,
    socket: lib.func('int socket(int, int, int)') as Bindings['socket'],
    bind: lib.func('int bind(int, void *, uint32_t)') as Bindings['bind'],
    listen: lib.func('int listen(int, int)') as Bindings['listen'],
    accept4: lib.func('int accept4(int, void *, void *, int)') as Bindings['accept4'],
    close: lib.func('int close(int)') as Bindings['close'],
    recvmsg: lib.func('intptr_t recvmsg(int, void *, int)') as Bindings['recvmsg'],
    recv: lib.func('intptr_t recv(int, _Out_ uint8_t *buf, size_t, int)') as Bindings['recv'],
    send: lib.func('intptr_t send(int, const uint8_t *buf, size_t, int)') as Bindings['send'],
    read: lib.func('intptr_t read(int, _Out_ uint8_t *buf, size_t)') as Bindings['read'],
    write: lib.func('intptr_t write(int, const uint8_t *buf, size_t)') as Bindings['write'],
    eventfd: lib.func('int eventfd(unsigned int, int)') as Bindings['eventfd'],
    mmap: lib.func('void *mmap(void *, size_t, int, int, int, int64_t)') as Bindings['mmap'],
    munmap: lib.func('int munmap(void *, size_t)') as Bindings['munmap'],
    poll: lib.func('int poll(void *, uint64_t, int)') as Bindings['poll'],
  }
  return bound
}

export function errno(): number {
  return libc().koffi.errno()
}

/** A listening AF_UNIX stream socket at `path` (which must not exist). */
export function listenUnix(path: string): number {
  const c = libc()
  const encoded = Buffer.from(path, 'utf8')
  if (encoded.length > 107) throw vsockError('VSOCK_USAGE', `The socket path ${path} is longer than 107 bytes.`)
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)
  if (fd < 0) throw vsockError('VSOCK_LISTEN_FAILED', `socket(AF_UNIX) failed (errno ${errno()}).`)
  const addr = Buffer.alloc(110)
  addr.writeUInt16LE(AF_UNIX, 0)
  encoded.copy(addr, 2)
  if (c.bind(fd, addr, 2 + encoded.length + 1) !== 0 || c.listen(fd, 1) !== 0) {
    const e = errno()
    c.close(fd)
    throw vsockError('VSOCK_LISTEN_FAILED', `Cannot listen on ${path} (errno ${e}${e === 98 ? ': in use' : ''}).`, {details: {path, errno: e}})
  }
  return fd
}

export function acceptOne(fd: number): number {
  const c = libc()
  for (;;) {
    const conn = c.accept4(fd, null, null, SOCK_CLOEXEC)
    if (conn >= 0 || errno() !== EINTR) return conn
  }
}

/** Receives vhost-user messages: a 12-byte header with any SCM_RIGHTS fds, then its payload. */
export class MessageReader {
  private readonly msg: Pointer
  private readonly iov: Pointer
  private readonly data: Pointer
  private readonly control: Pointer
  private readonly msgView: DataView
  private readonly controlView: DataView
  private readonly dataView: Uint8Array
  private static readonly CONTROL_BYTES = 16 + 4 * 8 // CMSG_SPACE(8 fds)

  constructor(private readonly fd: number) {
    const {koffi} = libc()
    this.msg = koffi.alloc('uint8_t', 56)
    this.iov = koffi.alloc('uint8_t', 16)
    this.data = koffi.alloc('uint8_t', 16)
    this.control = koffi.alloc('uint8_t', 64)
    this.msgView = new DataView(koffi.view(this.msg, 56))
    this.controlView = new DataView(koffi.view(this.control, 64))
    this.dataView = new Uint8Array(koffi.view(this.data, 16))
    const iovView = new DataView(koffi.view(this.iov, 16))
    iovView.setBigUint64(0, koffi.address(this.data), true)
    iovView.setBigUint64(8, 12n, true)
  }

  /**
   * The next header (12 bytes) and its fds; null when the peer closed the socket. Throws on a
   * short or truncated read (the session ends).
   */
  header(): {bytes: Uint8Array; fds: number[]} | null {
    const c = libc()
    const {koffi} = c
    const v = this.msgView
    v.setBigUint64(0, 0n, true) // msg_name
    v.setUint32(8, 0, true) // msg_namelen
    v.setBigUint64(16, koffi.address(this.iov), true)
    v.setBigUint64(24, 1n, true)
    v.setBigUint64(32, koffi.address(this.control), true)
    v.setBigUint64(40, BigInt(MessageReader.CONTROL_BYTES), true)
    v.setInt32(48, 0, true)
    let n: number
    for (;;) {
      n = Number(c.recvmsg(this.fd, this.msg, MSG_WAITALL))
      if (n >= 0 || errno() !== EINTR) break
    }
    if (n === 0) return null
    if (n < 0) throw new Error(`recvmsg failed (errno ${errno()})`)
    const fds: number[] = []
    const controlLen = Number(v.getBigUint64(40, true))
    let at = 0
    while (at + 16 <= controlLen) {
      const len = Number(this.controlView.getBigUint64(at, true))
      const level = this.controlView.getInt32(at + 8, true)
      const type = this.controlView.getInt32(at + 12, true)
      if (len < 16 || at + len > 64) break
      if (level === SOL_SOCKET && type === SCM_RIGHTS) for (let o = 16; o + 4 <= len; o += 4) fds.push(this.controlView.getInt32(at + o, true))
      at += (len + 7) & ~7
    }
    const flags = v.getInt32(48, true)
    const bytes = this.dataView.slice(0, n)
    if (flags & MSG_CTRUNC) {
      for (const fd of fds) c.close(fd)
      throw new Error('more file descriptors than a vhost-user message may carry (MSG_CTRUNC)')
    }
    if (n < 12) {
      const rest = this.exactly(12 - n)
      if (!rest) {
        for (const fd of fds) c.close(fd)
        return null
      }
      const all = new Uint8Array(12)
      all.set(bytes)
      all.set(rest, n)
      return {bytes: all, fds}
    }
    return {bytes, fds}
  }

  /** Exactly `len` more bytes, or null at end of stream. */
  exactly(len: number): Uint8Array | null {
    const c = libc()
    const out = Buffer.alloc(len)
    let got = 0
    while (got < len) {
      const chunk = Buffer.alloc(len - got)
      const n = Number(c.recv(this.fd, chunk, len - got, MSG_WAITALL))
      if (n === 0) return null
      if (n < 0) {
        if (errno() === EINTR) continue
        throw new Error(`recv failed (errno ${errno()})`)
      }
      chunk.copy(out, got, 0, n)
      got += n
    }
    return out
  }
}

/** Send all of `bytes` on a blocking socket. */
export function sendAll(fd: number, bytes: Uint8Array): void {
  const c = libc()
  let off = 0
  while (off < bytes.length) {
    const part = bytes.subarray(off)
    const n = Number(c.send(fd, part, part.length, MSG_NOSIGNAL))
    if (n < 0) {
      if (errno() === EINTR) continue
      throw new Error(`send failed (errno ${errno()})`)
    }
    off += n
  }
}

export function closeFd(fd: number): void {
  libc().close(fd)
}

export function newEventFd(): number {
  const fd = libc().eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
  if (fd < 0) throw new Error(`eventfd failed (errno ${errno()})`)
  return fd
}

const ONE = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])

/** Add 1 to an eventfd (signal it). */
export function signalEventFd(fd: number): void {
  libc().write(fd, ONE, 8)
}

/** Read (and so reset) an eventfd's counter; 0 when it was not signalled. */
export function drainEventFd(fd: number): number {
  const b = Buffer.alloc(8)
  const n = Number(libc().read(fd, b, 8))
  if (n !== 8) {
    const e = errno()
    if (e === EAGAIN) return 0
    return -1
  }
  return Number(b.readBigUint64LE(0))
}

export interface Mapping {
  bytes: Uint8Array
  unmap(): void
}

/** mmap `length` bytes of `fd` from file offset `offset` (shared, read-write) and view them. */
export function mapShared(fd: number, length: number, offset: number): Mapping {
  if (length > 2 ** 32) throw new RangeError(`a view of ${length} bytes (at most 4 GiB)`)
  const c = libc()
  const aligned = offset - (offset % 4096)
  const total = length + (offset - aligned)
  const p = c.mmap(null, total, PROT_READ_WRITE, MAP_SHARED, fd, aligned)
  const addr = c.koffi.address(p)
  if (addr === 0xffffffffffffffffn || addr === 0n) throw new Error(`mmap of ${total} bytes failed (errno ${errno()})`)
  let live = true
  return {
    bytes: new Uint8Array(c.koffi.view(p, total), offset - aligned, length),
    unmap() {
      if (!live) return
      live = false
      c.munmap(p, total)
    },
  }
}

/** A reusable pollfd array for up to `capacity` fds (POLLIN each). */
export class PollSet {
  private readonly mem: Pointer
  private readonly view: DataView

  constructor(private readonly capacity: number) {
    const {koffi} = libc()
    this.mem = koffi.alloc('uint8_t', 8 * capacity)
    this.view = new DataView(koffi.view(this.mem, 8 * capacity))
  }

  /** poll() the fds on the thread pool; resolves with each fd's revents. */
  wait(fds: readonly number[], timeoutMs: number): Promise<number[]> {
    if (fds.length > this.capacity) throw new RangeError('too many fds to poll')
    for (const [i, fd] of fds.entries()) {
      this.view.setInt32(8 * i, fd, true)
      this.view.setInt16(8 * i + 4, POLLIN, true)
      this.view.setInt16(8 * i + 6, 0, true)
    }
    return new Promise((resolve, reject) => {
      libc().poll.async(this.mem, fds.length, timeoutMs, (error, result) => {
        if (error) return reject(error instanceof Error ? error : new Error(String(error)))
        if (result < 0) {
          const e = errno()
          if (e === EINTR) return resolve(fds.map(() => 0))
          return reject(new Error(`poll failed (errno ${e})`))
        }
        resolve(fds.map((_, i) => this.view.getInt16(8 * i + 6, true)))
      })
    })
  }
}
