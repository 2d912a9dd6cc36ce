/**
 * The virtio-vsock device (virtio spec 1.2, §5.10) behind the vhost-user back-end: stream
 * connections between the guest and host Unix sockets.
 *
 *   guest → host  The guest connects to a host CID (2, or 3: Nitro's parent) on port P; the device
 *                 connects to the Unix socket `connectHost(P)` names, answers RESPONSE when that
 *                 connect succeeds and RST when it fails or P is not mapped.
 *   host → guest  `acceptHost(socket, Q)` (a connection to a host-side socket of the caller's)
 *                 becomes a REQUEST to the guest's port Q; RESPONSE opens it, RST closes the socket.
 *
 * Credit both ways. To the guest the device advertises `bufAlloc` bytes per connection and the
 * bytes it has handed to the host socket (fwd_cnt); a guest that sends beyond that credit is
 * reset (VSOCK_GUEST_PROTOCOL). From the guest it honours buf_alloc/fwd_cnt: it never has more
 * than the guest's credit in flight, reads from the host socket only while its queue towards the
 * guest is below `bufAlloc` (so both directions are bounded), and asks for credit (CREDIT_REQUEST)
 * when it runs out. Shutdown: SHUTDOWN(SEND) from the guest ends the host socket's write side;
 * end-of-file from the host becomes SHUTDOWN(SEND) after the queued bytes; a host socket that
 * closes becomes SHUTDOWN(RCV|SEND), answered by the guest's RST (or RST after closeTimeoutMs).
 *
 * A fault in the rings (GuestFault, see ./virtqueue.ts) cuts the whole device off: every
 * connection is closed, the rings are no longer read, and the fault is logged (VSOCK_GUEST_FAULT).
 */
import type {Socket} from 'node:net'

import {
  CID_HOST,
  CID_NITRO_PARENT,
  HEADER_SIZE,
  MAX_PAYLOAD,
  Op,
  type PacketHeader,
  SHUTDOWN_RCV,
  SHUTDOWN_SEND,
  VSOCK_TYPE_STREAM,
  decodeHeader,
  describeHeader,
  encodeHeader,
  peerCredit,
  u32Diff,
} from './packet.js'
import {GuestFault} from './memory.js'
import type {Chain, VirtQueue} from './virtqueue.js'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type Logger = (level: LogLevel, event: string, fields?: Record<string, unknown>) => void

export interface VsockDeviceOptions {
  guestCid: number
  /** Host CIDs the guest may connect to (default 2 and 3). */
  hostCids?: readonly number[]
  /** The CID host-initiated connections come from (default 3, Nitro's parent). */
  hostSourceCid?: number
  /** The Unix socket for a guest connection to host port P: a connecting Socket, or undefined when P is not mapped. */
  connectHost: (port: number) => Socket | undefined
  /** Receive buffer advertised per connection, and the bound of the queue towards the guest (bytes). */
  bufAlloc?: number
  maxConnections?: number
  /** How long a REQUEST to the guest, or a SHUTDOWN(RCV|SEND), waits for its answer. */
  closeTimeoutMs?: number
  /** Signal the driver that `queue` has used buffers (the call eventfd). */
  notify: (queue: 'rx' | 'tx') => void
  log: Logger
}

type State = 'connecting-host' | 'connecting-guest' | 'open' | 'closing'

interface Conn {
  key: string
  localCid: number
  localPort: number
  guestPort: number
  socket: Socket
  state: State
  /** Guest → host: bytes received from the guest, bytes flushed to the host socket, fwd_cnt last told. */
  rxCnt: number
  fwdCnt: number
  announcedFwd: number
  guestShutdown: number
  /** Host → guest. */
  toGuest: Buffer[]
  toGuestBytes: number
  txCnt: number
  peerBufAlloc: number
  peerFwdCnt: number
  creditRequested: boolean
  /** Armed while the guest's credit is 0: if no credit comes by itself, ask for it (CREDIT_REQUEST). */
  creditTimer?: NodeJS.Timeout
  hostEof: boolean
  hostGone: boolean
  sentShutdown: number
  paused: boolean
  timer?: NodeJS.Timeout
}

interface Control {
  conn?: Conn
  header: PacketHeader
}

/** How long the guest's credit may stay 0 with bytes waiting before the device asks for credit. */
const CREDIT_REQUEST_DELAY_MS = 50
/** Replies waiting for rx buffers; at the high mark the device stops reading the tx queue. */
const CONTROL_HIGH = 512
const CONTROL_LOW = 128
/** The largest tx chain accepted: a header and the largest payload, with room for padding. */
export const MAX_TX_CHAIN = HEADER_SIZE + MAX_PAYLOAD + 4096
/** The largest rx chain used (bigger ones are filled only this far). */
export const MAX_RX_CHAIN = 1 << 20

export class VsockDevice {
  private rx?: VirtQueue
  private tx?: VirtQueue
  private readonly conns = new Map<string, Conn>()
  private readonly control: Control[] = []
  /** Connections with bytes for the guest, in round-robin order. */
  private readonly ready = new Set<Conn>()
  private readonly creditDue = new Set<Conn>()
  private readonly hostCids: readonly number[]
  private readonly hostSourceCid: number
  private readonly bufAlloc: number
  private readonly maxConnections: number
  private readonly closeTimeoutMs: number
  private nextLocalPort = 49152
  private scheduled = false
  private txThrottled = false
  /** Why the device was cut off, once it was. */
  broken?: string
  /** Counters, logged when the back-end stops: what limited the flow towards the guest, among others. */
  readonly stats = {droppedWrongCid: 0, resets: 0, guestToHostBytes: 0, hostToGuestBytes: 0, packetsToGuest: 0, creditRequests: 0, rxRingEmpty: 0}

  constructor(private readonly o: VsockDeviceOptions) {
    this.hostCids = o.hostCids ?? [CID_HOST, CID_NITRO_PARENT]
    this.hostSourceCid = o.hostSourceCid ?? CID_NITRO_PARENT
    this.bufAlloc = o.bufAlloc ?? 256 * 1024
    this.maxConnections = o.maxConnections ?? 256
    this.closeTimeoutMs = o.closeTimeoutMs ?? 10_000
  }

  get connectionCount(): number {
    return this.conns.size
  }

  /**
   * The rings to use (undefined: stopped). Stopping either ends every connection (the driver was
   * reset); once both are stopped a device that was cut off may run again on the rings that come next.
   */
  setQueues(rx: VirtQueue | undefined, tx: VirtQueue | undefined): void {
    const stopping = (this.rx && !rx) || (this.tx && !tx)
    if (!rx && !tx && this.broken) {
      this.o.log('info', 'vsock_restart', {after: this.broken})
      this.broken = undefined
    }
    if (this.broken) return
    this.rx = rx
    this.tx = tx
    if (stopping) this.reset('queues stopped')
    // A kick that came before the ring ran is gone: look at both rings once now.
    if (rx && tx) setImmediate(() => this.pumpTx())
  }

  /** The driver kicked a queue: new buffers (rx) or packets (tx). */
  kick(queue: 'rx' | 'tx'): void {
    if (queue === 'tx') this.pumpTx()
    else this.pumpRx()
  }

  /** Close every connection and forget queued replies (device reset or stop). */
  reset(why: string): void {
    for (const c of this.conns.values()) this.drop(c)
    this.control.length = 0
    this.ready.clear()
    this.creditDue.clear()
    this.txThrottled = false
    if (why) this.o.log('debug', 'vsock_reset', {why})
  }

  /** Cut the guest off after a ring fault: close everything, read the rings no more. */
  private fault(error: GuestFault): void {
    if (this.broken) return
    this.broken = error.reason
    this.o.log('error', 'guest_fault', {code: 'VSOCK_GUEST_FAULT', reason: error.reason})
    this.reset('')
    this.rx = undefined
    this.tx = undefined
  }

  /** A host connection (to the caller's socket for guest port `guestPort`) into the guest. */
  acceptHost(socket: Socket, guestPort: number): void {
    if (this.broken || !this.rx || !this.tx || this.conns.size >= this.maxConnections) {
      this.o.log('warn', 'host_connection_refused', {guestPort, why: this.broken ? 'device cut off' : !this.rx || !this.tx ? 'guest vsock not running' : 'too many connections'})
      socket.destroy()
      return
    }
    let localPort = 0
    for (let tries = 0; tries < 16384; tries++) {
      const p = this.nextLocalPort
      this.nextLocalPort = p >= 65535 ? 49152 : p + 1
      if (!this.conns.has(connKey(this.hostSourceCid, p, guestPort))) {
        localPort = p
        break
      }
    }
    if (localPort === 0) {
      socket.destroy()
      return
    }
    const conn = this.newConn(socket, this.hostSourceCid, localPort, guestPort, 'connecting-guest')
    socket.pause()
    conn.paused = true
    conn.timer = setTimeout(() => {
      this.o.log('warn', 'guest_no_response', {guestPort})
      this.resetConn(conn)
    }, this.closeTimeoutMs).unref()
    this.queueControl(conn, Op.REQUEST)
    this.schedule()
  }

  // ---------------------------------------------------------------------------------------------
  // tx: packets from the guest.

  private pumpTx(): void {
    const tx = this.tx
    if (!tx || this.broken) return
    let used = 0
    try {
      while (this.tx === tx) {
        if (this.control.length >= CONTROL_HIGH) {
          this.txThrottled = true
          break
        }
        const chain = tx.pop()
        if (!chain) break
        if (chain.writable.length > 0) throw new GuestFault(`tx chain ${chain.head} has device-writable buffers`)
        if (chain.readLen < HEADER_SIZE) throw new GuestFault(`tx chain ${chain.head} holds ${chain.readLen} bytes, less than a header`)
        const header = decodeHeader(tx.read(chain, 0, HEADER_SIZE))
        const payload = this.payloadOf(tx, chain, header)
        tx.push(chain.head, 0)
        used++
        if (payload !== null) this.onPacket(header, payload)
      }
    } catch (error) {
      return this.fault(asFault(error))
    }
    if (used > 0 && tx.wantsInterrupt()) this.o.notify('tx')
    this.pumpRx()
  }

  /** The payload an RW packet carries, or null when its length does not fit its chain (the connection is reset). */
  private payloadOf(tx: VirtQueue, chain: Chain, h: PacketHeader): Uint8Array | null {
    if (h.op !== Op.RW || h.len === 0) return EMPTY
    if (h.len > MAX_PAYLOAD || h.len > chain.readLen - HEADER_SIZE) {
      this.protocolError(h, `RW of ${h.len} bytes in a chain of ${chain.readLen - HEADER_SIZE} payload bytes (at most ${MAX_PAYLOAD})`)
      return null
    }
    return tx.read(chain, HEADER_SIZE, h.len)
  }

  private protocolError(h: PacketHeader, reason: string): void {
    this.o.log('warn', 'guest_protocol_error', {code: 'VSOCK_GUEST_PROTOCOL', reason, packet: describeHeader(h)})
    const conn = this.conns.get(connKey(Number(h.dstCid), h.dstPort, h.srcPort))
    if (conn) this.resetConn(conn)
    else this.replyRst(h)
  }

  private onPacket(h: PacketHeader, payload: Uint8Array): void {
    if (h.srcCid !== BigInt(this.o.guestCid)) {
      this.stats.droppedWrongCid++
      if (this.stats.droppedWrongCid <= 10) this.o.log('warn', 'guest_packet_dropped', {why: 'source CID is not the guest\'s', packet: describeHeader(h)})
      return
    }
    if (h.dstCid > 0xffffffffn) return this.replyRst(h)
    if (h.type !== VSOCK_TYPE_STREAM) return this.replyRst(h)
    const localCid = Number(h.dstCid)
    const conn = this.conns.get(connKey(localCid, h.dstPort, h.srcPort))
    if (h.op === Op.REQUEST) return this.onRequest(h, localCid, conn)
    if (!conn) return this.replyRst(h)
    conn.peerBufAlloc = h.bufAlloc
    conn.peerFwdCnt = h.fwdCnt
    // Every packet carries the guest's credit: more may be sendable now.
    if (conn.toGuestBytes > 0 && peerCredit(conn.peerBufAlloc, conn.txCnt, conn.peerFwdCnt) > 0) {
      conn.creditRequested = false
      this.ready.add(conn)
      this.schedule()
    }
    switch (h.op) {
      case Op.RESPONSE:
        if (conn.state !== 'connecting-guest') return this.resetConn(conn)
        clearTimeout(conn.timer)
        conn.state = 'open'
        this.resumeHost(conn)
        return
      case Op.RST:
        this.drop(conn)
        return
      case Op.SHUTDOWN:
        return this.onShutdown(conn, h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND))
      case Op.RW:
        return this.onData(conn, h, payload)
      case Op.CREDIT_UPDATE:
        return
      case Op.CREDIT_REQUEST:
        this.creditDue.add(conn)
        return
      default:
        return this.resetConn(conn)
    }
  }

  private onRequest(h: PacketHeader, localCid: number, existing: Conn | undefined): void {
    if (existing) return this.resetConn(existing)
    if (!this.hostCids.includes(localCid) || this.conns.size >= this.maxConnections) return this.replyRst(h)
    let socket: Socket | undefined
    try {
      socket = this.o.connectHost(h.dstPort)
    } catch (error) {
      this.o.log('warn', 'host_connect_failed', {port: h.dstPort, error: (error as Error).message})
    }
    if (!socket) return this.replyRst(h)
    const conn = this.newConn(socket, localCid, h.dstPort, h.srcPort, 'connecting-host')
    conn.peerBufAlloc = h.bufAlloc
    conn.peerFwdCnt = h.fwdCnt
    socket.once('connect', () => {
      if (conn.state !== 'connecting-host' || this.conns.get(conn.key) !== conn) return
      conn.state = 'open'
      this.queueControl(conn, Op.RESPONSE)
      this.schedule()
    })
  }

  private onShutdown(conn: Conn, flags: number): void {
    conn.guestShutdown |= flags
    if (flags & SHUTDOWN_SEND && !conn.hostGone) conn.socket.end()
    if (conn.guestShutdown & SHUTDOWN_RCV) {
      conn.toGuest = []
      conn.toGuestBytes = 0
      this.ready.delete(conn)
    }
    if (conn.guestShutdown === (SHUTDOWN_RCV | SHUTDOWN_SEND)) {
      // Both directions done: answer RST (what Linux waits for) and let the host socket flush and close.
      this.queueControl(conn, Op.RST)
      this.forget(conn)
      const socket = conn.socket
      if (socket.writableFinished || socket.destroyed) socket.destroy()
      else {
        socket.end()
        const timer = setTimeout(() => socket.destroy(), this.closeTimeoutMs).unref()
        socket.once('finish', () => (clearTimeout(timer), socket.destroy()))
        socket.once('close', () => clearTimeout(timer))
      }
      this.schedule()
    }
  }

  private onData(conn: Conn, h: PacketHeader, payload: Uint8Array): void {
    if (conn.state !== 'open' && conn.state !== 'closing') return this.protocolError(h, `RW in state ${conn.state}`)
    if (conn.guestShutdown & SHUTDOWN_SEND) return this.protocolError(h, 'RW after SHUTDOWN(SEND)')
    const buffered = u32Diff((conn.rxCnt + payload.length) >>> 0, conn.fwdCnt)
    if (buffered > this.bufAlloc) return this.protocolError(h, `credit overrun: ${buffered} bytes unconsumed, buf_alloc ${this.bufAlloc}`)
    conn.rxCnt = (conn.rxCnt + payload.length) >>> 0
    if (payload.length === 0) return
    this.stats.guestToHostBytes += payload.length
    if (conn.hostGone) {
      // Nobody to deliver to (SHUTDOWN went out): consume, so the guest never waits for credit.
      this.forwarded(conn, payload.length)
      return
    }
    const n = payload.length
    conn.socket.write(payload, (error) => {
      if (!error) this.forwarded(conn, n)
    })
  }

  private forwarded(conn: Conn, n: number): void {
    conn.fwdCnt = (conn.fwdCnt + n) >>> 0
    if (this.conns.get(conn.key) === conn && u32Diff(conn.fwdCnt, conn.announcedFwd) >= this.bufAlloc / 4) {
      this.creditDue.add(conn)
      this.schedule()
    }
  }

  // ---------------------------------------------------------------------------------------------
  // rx: packets to the guest.

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.pumpRx()
    })
  }

  private pumpRx(): void {
    const rx = this.rx
    if (!rx || this.broken) return
    let used = 0
    try {
      while (this.rx === rx && rx.pending() > 0) {
        const packet = this.nextPacket()
        if (!packet) break
        const chain = rx.pop()!
        if (chain.readable.length > 0) throw new GuestFault(`rx chain ${chain.head} has device-readable buffers`)
        if (chain.writeLen < HEADER_SIZE) throw new GuestFault(`rx chain ${chain.head} holds ${chain.writeLen} bytes, less than a header`)
        const written = this.fill(rx, chain, packet)
        rx.push(chain.head, written)
        this.stats.packetsToGuest++
        used++
      }
      if (this.rx === rx && rx.pending() === 0 && (this.control.length > 0 || this.ready.size > 0 || this.creditDue.size > 0)) this.stats.rxRingEmpty++
    } catch (error) {
      return this.fault(asFault(error))
    }
    if (used > 0 && rx.wantsInterrupt()) this.o.notify('rx')
    if (this.txThrottled && this.control.length <= CONTROL_LOW) {
      this.txThrottled = false
      this.pumpTx()
    }
  }

  /** What to send next: a reply, a credit update, or data from the next connection in turn. */
  private nextPacket(): {conn?: Conn; header?: PacketHeader; data?: Conn} | undefined {
    const c = this.control.shift()
    if (c) return c
    for (const conn of this.creditDue) {
      this.creditDue.delete(conn)
      if (this.conns.get(conn.key) === conn) return {conn, header: this.header(conn, Op.CREDIT_UPDATE)}
    }
    for (const conn of this.ready) {
      this.ready.delete(conn)
      if (this.conns.get(conn.key) !== conn || conn.state !== 'open' || conn.toGuestBytes === 0) continue
      if (peerCredit(conn.peerBufAlloc, conn.txCnt, conn.peerFwdCnt) === 0) {
        // A reader announces credit as it consumes (Linux does when a quarter of its buffer is
        // left): ask only when none came for a while, not on every stall.
        if (!conn.creditRequested && !conn.creditTimer) {
          conn.creditTimer = setTimeout(() => {
            conn.creditTimer = undefined
            if (this.conns.get(conn.key) !== conn || conn.toGuestBytes === 0 || peerCredit(conn.peerBufAlloc, conn.txCnt, conn.peerFwdCnt) > 0) return
            conn.creditRequested = true
            this.stats.creditRequests++
            this.queueControl(conn, Op.CREDIT_REQUEST)
            this.schedule()
          }, CREDIT_REQUEST_DELAY_MS).unref()
        }
        continue
      }
      return {data: conn}
    }
    return undefined
  }

  private fill(rx: VirtQueue, chain: Chain, p: {conn?: Conn; header?: PacketHeader; data?: Conn}): number {
    if (p.header) {
      if (p.conn) p.conn.announcedFwd = p.header.fwdCnt
      return rx.write(chain, [encodeHeader(p.header)])
    }
    const conn = p.data!
    const room = Math.min(chain.writeLen, MAX_RX_CHAIN) - HEADER_SIZE
    const n = Math.min(room, MAX_PAYLOAD, conn.toGuestBytes, peerCredit(conn.peerBufAlloc, conn.txCnt, conn.peerFwdCnt))
    const parts: Uint8Array[] = []
    let left = n
    while (left > 0) {
      const head = conn.toGuest[0]!
      if (head.length <= left) {
        parts.push(head)
        conn.toGuest.shift()
        left -= head.length
      } else {
        parts.push(head.subarray(0, left))
        conn.toGuest[0] = head.subarray(left)
        left = 0
      }
    }
    conn.toGuestBytes -= n
    conn.txCnt = (conn.txCnt + n) >>> 0
    this.stats.hostToGuestBytes += n
    const header = this.header(conn, Op.RW, n)
    conn.announcedFwd = header.fwdCnt
    this.creditDue.delete(conn)
    const written = rx.write(chain, [encodeHeader(header), ...parts])
    if (conn.toGuestBytes > 0) this.ready.add(conn)
    else this.afterDrain(conn)
    if (conn.paused && conn.toGuestBytes < this.bufAlloc / 2 && conn.state === 'open' && !conn.hostEof) this.resumeHost(conn)
    return written
  }

  /** The host side's end, once every byte it sent is with the guest. */
  private afterDrain(conn: Conn): void {
    if (conn.toGuestBytes > 0 || this.conns.get(conn.key) !== conn || conn.state !== 'open') return
    if (conn.hostGone) {
      conn.state = 'closing'
      conn.sentShutdown = SHUTDOWN_RCV | SHUTDOWN_SEND
      this.queueControl(conn, Op.SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND)
      conn.timer = setTimeout(() => this.resetConn(conn), this.closeTimeoutMs).unref()
    } else if (conn.hostEof && !(conn.sentShutdown & SHUTDOWN_SEND)) {
      conn.sentShutdown |= SHUTDOWN_SEND
      this.queueControl(conn, Op.SHUTDOWN, SHUTDOWN_SEND)
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Connections.

  private newConn(socket: Socket, localCid: number, localPort: number, guestPort: number, state: State): Conn {
    const conn: Conn = {
      key: connKey(localCid, localPort, guestPort),
      localCid,
      localPort,
      guestPort,
      socket,
      state,
      rxCnt: 0,
      fwdCnt: 0,
      announcedFwd: 0,
      guestShutdown: 0,
      toGuest: [],
      toGuestBytes: 0,
      txCnt: 0,
      peerBufAlloc: 0,
      peerFwdCnt: 0,
      creditRequested: false,
      hostEof: false,
      hostGone: false,
      sentShutdown: 0,
      paused: false,
    }
    this.conns.set(conn.key, conn)
    socket.on('data', (chunk: Buffer) => {
      if (this.conns.get(conn.key) !== conn || conn.guestShutdown & SHUTDOWN_RCV) return
      conn.toGuest.push(chunk)
      conn.toGuestBytes += chunk.length
      if (conn.toGuestBytes >= this.bufAlloc && !conn.paused) {
        conn.paused = true
        socket.pause()
      }
      this.ready.add(conn)
      this.schedule()
    })
    socket.on('end', () => {
      conn.hostEof = true
      this.afterDrain(conn)
      this.schedule()
    })
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.o.log('debug', 'host_socket_error', {localPort, guestPort, error: error.code ?? error.message})
    })
    socket.on('close', () => {
      conn.hostGone = true
      if (this.conns.get(conn.key) !== conn) return
      if (conn.state === 'connecting-host' || conn.state === 'connecting-guest') return this.resetConn(conn)
      this.afterDrain(conn)
      this.schedule()
    })
    return conn
  }

  private resumeHost(conn: Conn): void {
    conn.paused = false
    conn.socket.resume()
  }

  private header(conn: Conn, op: Op, len = 0, flags = 0): PacketHeader {
    return {
      srcCid: BigInt(conn.localCid),
      dstCid: BigInt(this.o.guestCid),
      srcPort: conn.localPort,
      dstPort: conn.guestPort,
      len,
      type: VSOCK_TYPE_STREAM,
      op,
      flags,
      bufAlloc: this.bufAlloc,
      fwdCnt: conn.fwdCnt,
    }
  }

  private queueControl(conn: Conn, op: Op, flags = 0): void {
    this.control.push({conn, header: this.header(conn, op, 0, flags)})
  }

  /** RST in answer to a packet of no (or no longer a) connection. Never in answer to an RST. */
  private replyRst(h: PacketHeader): void {
    if (h.op === Op.RST) return
    this.stats.resets++
    this.control.push({
      header: {srcCid: h.dstCid, dstCid: h.srcCid, srcPort: h.dstPort, dstPort: h.srcPort, len: 0, type: VSOCK_TYPE_STREAM, op: Op.RST, flags: 0, bufAlloc: 0, fwdCnt: 0},
    })
    this.schedule()
  }

  /** Tell the guest the connection is gone (RST) and close the host socket. */
  private resetConn(conn: Conn): void {
    if (this.conns.get(conn.key) !== conn) return
    this.stats.resets++
    this.queueControl(conn, Op.RST)
    this.drop(conn)
    this.schedule()
  }

  /** Forget the connection without closing its socket. */
  private forget(conn: Conn): void {
    clearTimeout(conn.timer)
    clearTimeout(conn.creditTimer)
    if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key)
    this.ready.delete(conn)
    this.creditDue.delete(conn)
  }

  private drop(conn: Conn): void {
    this.forget(conn)
    conn.toGuest = []
    conn.toGuestBytes = 0
    conn.socket.destroy()
  }
}

const EMPTY = new Uint8Array(0)

/** A ring fault as such; any other error while serving the rings is a bug, and cuts the guest off all the same (never the process). */
function asFault(error: unknown): GuestFault {
  return error instanceof GuestFault ? error : new GuestFault(`internal error while serving the rings: ${(error as Error)?.stack ?? String(error)}`)
}

function connKey(localCid: number, localPort: number, guestPort: number): string {
  return `${localCid}:${localPort}:${guestPort}`
}
