/**
 * The vhost-user-vsock back-end process: listens on the Unix socket QEMU's vhost-user chardev
 * connects to, serves that one front-end, and bridges the guest's vsock to host Unix sockets
 * (./device.ts). One event loop: the control socket and the kick eventfds are watched by an
 * asynchronous poll() (koffi, on libuv's thread pool); host sockets are Node's own `net`.
 *
 * It ends when the front-end disconnects, or when `stop()` is called (SIGTERM/SIGINT, the parent
 * gone: ./main.ts). A fault of the front-end (FrontendError) ends the session with the error
 * logged; a fault of the guest cuts its device off (logged) and the session goes on.
 */
import {rmSync} from 'node:fs'
import net from 'node:net'

import {type Logger, VsockDevice} from './device.js'
import {vsockError} from './errors.js'
import {MessageReader, POLLERR, POLLHUP, POLLIN, POLLNVAL, PollSet, acceptOne, closeFd, drainEventFd, listenUnix, mapShared, newEventFd, sendAll, signalEventFd} from './libc.js'
import {FrontendError, HEADER_BYTES, MAX_PAYLOAD_BYTES, MAX_REGIONS, QUEUE_RX, VhostUserSession, requestName} from './vhost-user.js'

export interface BackendOptions {
  /** The vhost-user socket (QEMU: -chardev socket,path=…). */
  socketPath: string
  guestCid: number
  /** Guest connections to host port P go to this Unix socket. */
  guestToHost: ReadonlyMap<number, string>
  /** Connections to this Unix socket become guest connections to port Q (the key). */
  hostToGuest: ReadonlyMap<number, string>
  hostCids?: readonly number[]
  bufAlloc?: number
  maxConnections?: number
  log: Logger
  /** Called once QEMU may connect. */
  onListening?: (path: string) => void
}

export interface BackendResult {
  reason: 'front-end disconnected' | 'stopped' | 'front-end protocol error'
  stats: VsockDevice['stats']
}

export class VsockBackend {
  private readonly wake = newEventFd()
  private stopping = false
  private readonly servers: net.Server[] = []

  constructor(private readonly o: BackendOptions) {}

  stop(): void {
    this.stopping = true
    signalEventFd(this.wake)
  }

  async run(): Promise<BackendResult> {
    const o = this.o
    rmSync(o.socketPath, {force: true})
    let listenFd = listenUnix(o.socketPath)
    let connFd = -1
    const kicks: (number | undefined)[] = [undefined, undefined]
    const calls: (number | undefined)[] = [undefined, undefined]
    let session: VhostUserSession | undefined
    const device = new VsockDevice({
      guestCid: o.guestCid,
      ...(o.hostCids ? {hostCids: o.hostCids} : {}),
      ...(o.bufAlloc ? {bufAlloc: o.bufAlloc} : {}),
      ...(o.maxConnections ? {maxConnections: o.maxConnections} : {}),
      log: o.log,
      connectHost: (port) => {
        const path = o.guestToHost.get(port)
        if (!path) {
          o.log('info', 'guest_connect_unmapped', {port})
          return undefined
        }
        return net.createConnection({path, allowHalfOpen: true})
      },
      notify: (queue) => {
        const fd = calls[queue === 'rx' ? 0 : 1]
        if (fd !== undefined) signalEventFd(fd)
      },
    })
    try {
      await this.listenHostSockets(device)
      o.onListening?.(o.socketPath)
      const poll = new PollSet(4)
      // Wait for QEMU (or a stop).
      while (!this.stopping) {
        const [ready] = await poll.wait([listenFd, this.wake], -1)
        if (this.stopping) break
        if (ready! & POLLIN) {
          connFd = acceptOne(listenFd)
          if (connFd >= 0) break
        }
      }
      closeFd(listenFd)
      listenFd = -1
      rmSync(o.socketPath, {force: true})
      if (this.stopping || connFd < 0) return {reason: 'stopped', stats: device.stats}
      o.log('info', 'frontend_connected', {socket: o.socketPath})

      session = new VhostUserSession(
        device,
        {
          map: (fd, size, offset) => mapShared(fd, size, offset),
          close: (fd) => closeFd(fd),
          watchKick: (queue, fd) => {
            const old = kicks[queue]
            if (old !== undefined && old !== fd) closeFd(old)
            kicks[queue] = fd
          },
          setCall: (queue, fd) => {
            const old = calls[queue]
            if (old !== undefined && old !== fd) closeFd(old)
            calls[queue] = fd
          },
        },
        o.guestCid,
        o.log,
      )
      const reader = new MessageReader(connFd)
      while (!this.stopping) {
        const fds = [connFd, this.wake, ...kicks.filter((k): k is number => k !== undefined)]
        const queues = [-1, -1, ...kicks.flatMap((k, i) => (k === undefined ? [] : [i]))]
        const revents = await poll.wait(fds, -1)
        if (this.stopping) break
        // Kicks first: a message below may replace the kick fds.
        for (let i = 2; i < fds.length; i++) {
          if (revents[i]! & POLLIN && kicks[queues[i]!] === fds[i]) {
            drainEventFd(fds[i]!)
            device.kick(queues[i] === QUEUE_RX ? 'rx' : 'tx')
          }
        }
        if (revents[0]! & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
          const header = reader.header()
          if (!header) return {reason: 'front-end disconnected', stats: device.stats}
          const view = new DataView(header.bytes.buffer, header.bytes.byteOffset, HEADER_BYTES)
          const request = view.getUint32(0, true)
          const flags = view.getUint32(4, true)
          const size = view.getUint32(8, true)
          try {
            if (size > MAX_PAYLOAD_BYTES) throw new FrontendError(request, `payload of ${size} bytes (at most ${MAX_PAYLOAD_BYTES})`)
            if (header.fds.length > MAX_REGIONS) throw new FrontendError(request, `${header.fds.length} file descriptors`)
            const payload = size > 0 ? reader.exactly(size) : new Uint8Array(0)
            if (!payload) return {reason: 'front-end disconnected', stats: device.stats}
            o.log('debug', 'vhost_user_message', {request: requestName(request), size, fds: header.fds.length})
            const reply = session.handle({request, flags, payload, fds: header.fds})
            if (reply) sendAll(connFd, reply)
          } catch (error) {
            if (!(error instanceof FrontendError)) throw error
            for (const fd of header.fds) closeFd(fd)
            o.log('error', 'frontend_protocol_error', {code: 'VSOCK_FRONTEND_PROTOCOL', request: requestName(error.request), reason: error.message})
            return {reason: 'front-end protocol error', stats: device.stats}
          }
        }
      }
      return {reason: 'stopped', stats: device.stats}
    } finally {
      if (listenFd >= 0) {
        closeFd(listenFd)
        rmSync(o.socketPath, {force: true})
      }
      session?.close()
      device.reset('')
      for (const fd of [...kicks, ...calls]) if (fd !== undefined) closeFd(fd)
      if (connFd >= 0) closeFd(connFd)
      closeFd(this.wake)
      await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))))
      for (const path of o.hostToGuest.values()) rmSync(path, {force: true})
    }
  }

  private async listenHostSockets(device: VsockDevice): Promise<void> {
    for (const [port, path] of this.o.hostToGuest) {
      rmSync(path, {force: true})
      const server = net.createServer({allowHalfOpen: true, pauseOnConnect: true}, (socket) => device.acceptHost(socket, port))
      this.servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error) => reject(vsockError('VSOCK_LISTEN_FAILED', `Cannot listen on ${path} for guest port ${port}: ${(error as NodeJS.ErrnoException).code ?? error.message}.`, {cause: error, details: {path, port}})))
        server.listen(path, () => resolve())
      })
      server.on('error', (error) => this.o.log('warn', 'host_listener_error', {path, error: error.message}))
    }
  }
}
