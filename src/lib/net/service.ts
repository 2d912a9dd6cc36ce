/**
 * The one lifecycle of an HTTP listener: listen on a Unix socket or a host and port (a port or
 * socket in use is ADDRESS_IN_USE, any other failure the listener's own code), count the requests
 * in flight, drain (stop accepting, let those finish up to a timeout, then cut what is left) and
 * close (stop now), and write the one access line per request (./access.ts). It wraps a node
 * http or https `Server` built by its owner, whose options, limits and handler stay the owner's.
 */
import {chmod, rm} from 'node:fs/promises'
import type {Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {type ErrorCode, type NleError, type NleErrorOptions, listenError} from '../errors.js'
import {type AccessLogOptions, requestIds, watchAccess} from './access.js'

export type ListenTarget = {socketPath: string} | {host: string; port: number}

export interface ListenFailure {
  /** The listener's code for a failure other than an address in use. */
  code: ErrorCode
  /** The hint of an address in use (e.g. the flag that picks another port). */
  inUseHint?: string
  details?: NleErrorOptions['details']
  /** How the error names the address (default: the socket path, or host:port). */
  where?: string
}

/** Where a target listens, as an error or a log line names it. */
export function targetName(target: ListenTarget): string {
  return 'socketPath' in target ? target.socketPath : `${target.host}:${target.port}`
}

export class HttpService {
  private active = 0
  private idle: (() => void) | null = null
  private stopping = false

  /**
   * `access`: write the access line of every request (the owner notes bytes, code and extras in
   * `accessRecord(res)` while handling it).
   */
  constructor(
    readonly server: Server,
    options: {access?: AccessLogOptions} = {},
  ) {
    const access = options.access
    const nextId = requestIds()
    // Before the owner's handler: its request's record exists when the handler starts.
    server.prependListener('request', (req, res) => {
      if (access) watchAccess(req, res, access, nextId)
      this.active++
      res.once('close', () => {
        this.active--
        if (this.active === 0) this.idle?.()
      })
    })
  }

  /** Requests being handled now (from their arrival until their response closed). */
  get inFlight(): number {
    return this.active
  }

  /** Whether drain or close began. */
  get draining(): boolean {
    return this.stopping
  }

  /**
   * Listen on the target. The socket is bound synchronously within this call (before its first
   * await), so a umask set around the call applies to a Unix socket file.
   */
  async listen(target: ListenTarget, failure: ListenFailure): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (cause: NodeJS.ErrnoException): void => reject(this.failed(target, failure, cause))
      this.server.once('error', onError)
      const listening = (): void => {
        this.server.off('error', onError)
        resolve()
      }
      if ('socketPath' in target) this.server.listen(target.socketPath, listening)
      else this.server.listen(target.port, target.host, listening)
    })
  }

  /**
   * Listen on a Unix socket only this user may use: a stale socket file goes first, the umask makes
   * the new one 0600 from the start (listen binds before its first await), chmod makes sure.
   */
  async listenPrivate(socketPath: string, failure: ListenFailure): Promise<void> {
    await rm(socketPath, {force: true})
    const umask = process.umask(0o177)
    let listening: Promise<void>
    try {
      listening = this.listen({socketPath}, failure)
    } finally {
      process.umask(umask)
    }
    await listening
    await chmod(socketPath, 0o600)
  }

  /** The bound TCP address (undefined on a Unix socket or before listen). */
  address(): AddressInfo | undefined {
    const a = this.server.address()
    return typeof a === 'object' && a !== null ? a : undefined
  }

  /** Stop accepting, let in-flight requests finish (up to timeoutMs), then cut the connections left. */
  async drain(timeoutMs: number): Promise<{forced: boolean}> {
    this.stopping = true
    const closed = this.closed()
    this.server.closeIdleConnections()
    let forced = false
    if (this.active > 0) {
      let timer: NodeJS.Timeout | undefined
      const idle = new Promise<'idle'>((resolve) => (this.idle = () => resolve('idle')))
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))
      forced = (await Promise.race([idle, timeout])) === 'timeout'
      clearTimeout(timer)
      this.idle = null
    }
    this.server.closeAllConnections()
    await closed
    return {forced}
  }

  /** Stop now: no longer accept, end idle connections, cut active ones. */
  async close(): Promise<void> {
    this.stopping = true
    const closed = this.closed()
    this.server.closeIdleConnections()
    this.server.closeAllConnections()
    await closed
  }

  private closed(): Promise<void> {
    // close() on a server that is not listening (any more) calls back with ERR_SERVER_NOT_RUNNING: closed all the same.
    return new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private failed(target: ListenTarget, failure: ListenFailure, cause: unknown): NleError {
    return listenError(failure.code, failure.where ?? targetName(target), cause, {...(failure.details ? {details: failure.details} : {}), ...(failure.inUseHint ? {inUseHint: failure.inUseHint} : {})})
  }
}
