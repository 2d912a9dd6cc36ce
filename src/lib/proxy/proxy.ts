/**
 * The parent proxy: the host-side relay between clients (HTTPS, or plain HTTP on loopback) and
 * the enclave server's Unix socket(s). It sees only sealed bytes and never logs a body.
 *
 * - routes: GET /v1/attestation, POST /v1/chat/completions, GET /healthz — nothing else (404);
 * - the only listener facing the network, so every resource a client can hold is capped before it
 *   is spent: connections (maxConnections; beyond it the socket is closed on accept), connections
 *   per client address (maxConnectionsPerClient; IPv6 per /64), header size (8 KiB), the time to
 *   send the TLS handshake and the headers (headersTimeoutMs) and the whole request
 *   (requestTimeoutMs) — 408 and closed after it —, and the bytes of request bodies held at once
 *   (maxBufferedBytes): a body is admitted (its declared length, or bodyLimitBytes when chunked,
 *   reserved) before it is read, else 429 + Retry-After without buffering it;
 * - request bodies are read whole up to bodyLimitBytes (413 beyond), then relayed; responses
 *   stream through unbuffered (SSE chunk by chunk);
 * - at most `concurrency` requests in flight, `queue` more wait; beyond that 429 + Retry-After;
 * - no response headers within upstreamTimeoutMs → 504; the stream idle that long → cut;
 * - upstreams are tried round-robin; a socket that refuses the connection is skipped; none → 502;
 * - drain: stop accepting, let in-flight streams finish (up to a timeout), then cut them;
 * - access log per request: method, path (no query), status, bytes in/out, latency, upstream.
 */
import {Agent, type IncomingMessage, type Server, type ServerOptions, type ServerResponse, createServer as createHttpServer, request as httpRequest} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import {type Socket, isIPv6} from 'node:net'

import {type Logger, silentLogger} from '../net/log.js'
import {Semaphore} from '../net/semaphore.js'
import {proxyError} from './errors.js'
import {type AccessRecord, OTHER, accessRecord, toLogger} from '../net/access.js'
import {readBody} from '../net/body.js'
import {jsonError} from '../net/json.js'
import {HttpService} from '../net/service.js'
import {PROXIED_ROUTES} from '../protocol/routes.js'
import type {WireErrorCode} from '../protocol/status.js'

const REQUEST_HEADERS = ['content-type', 'accept'] as const
const RESPONSE_HEADERS = ['content-type', 'content-length', 'cache-control', 'retry-after', 'x-accel-buffering'] as const

export interface ProxyOptions {
  /** Enclave server socket paths (round-robin). */
  upstreams: string[]
  bodyLimitBytes: number
  concurrency: number
  /** Requests that may wait for a slot (default 16). */
  queue?: number
  upstreamTimeoutMs: number
  /** Open client connections at once, all listeners (default 512). */
  maxConnections?: number
  /** Open connections from one client address (IPv6: one /64) (default 128; NleClient opens up to 64). */
  maxConnectionsPerClient?: number
  /** Request-body bytes held at once, all requests (default 32 MiB). */
  maxBufferedBytes?: number
  /** Time a client has for the TLS handshake and the request headers (default 10 s). */
  headersTimeoutMs?: number
  /** Time a client has to send the whole request, body included (default 30 s). */
  requestTimeoutMs?: number
  logger?: Logger
}

export const PROXY_LIMIT_DEFAULTS = {
  maxConnections: 512,
  maxConnectionsPerClient: 128,
  maxBufferedBytes: 32 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
} as const

/** Largest request head (request line + headers) the proxy reads; the enclave API needs < 1 KiB. */
export const MAX_HEADER_BYTES = 8 * 1024

/** The address a per-client limit counts by: IPv4 (also IPv4-mapped) as is, IPv6 by its /64. */
export function clientKey(address: string | undefined): string {
  if (!address) return '?'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]!
  if (!isIPv6(address)) return address
  const [head = '', tail = ''] = address.toLowerCase().split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

export interface ListenOptions {
  https?: {host: string; port: number; cert: string | Buffer; key: string | Buffer}
  /** Plain HTTP, bound to 127.0.0.1 only. Port 0 picks a free port. */
  http?: {port: number}
}

export interface ProxyStats {
  inFlight: number
  queued: number
  served: number
  /** Open client connections, and request-body bytes admitted (reserved) now. */
  connections: number
  bufferedBytes: number
  /** Connections closed on accept (over maxConnections or maxConnectionsPerClient), bodies refused for maxBufferedBytes. */
  refusedConnections: number
  refusedBodies: number
}

/** Whether the client left before its answer was complete, and what to stop when it does. */
interface ClientState {
  gone: boolean
  onGone: (() => void) | null
}

class UpstreamFailure extends Error {
  constructor(
    readonly code: 'PROXY_UPSTREAM_UNAVAILABLE' | 'PROXY_UPSTREAM_TIMEOUT',
    message: string,
  ) {
    super(message)
  }
}

export class ParentProxy {
  private readonly logger: Logger
  private readonly slots: Semaphore
  /** The listeners (https, http), each with its own lifecycle; drained together. */
  private readonly services: HttpService[] = []
  /** One keep-alive pool per upstream socket (idle sockets close before the server's 5 s keep-alive). */
  private readonly agents: Agent[]
  private next = 0
  private served = 0
  private draining = false
  private readonly limits: Required<Pick<ProxyOptions, keyof typeof PROXY_LIMIT_DEFAULTS>>
  private readonly perClient = new Map<string, number>()
  private connections = 0
  private buffered = 0
  private refusedConnections = 0
  private refusedBodies = 0

  constructor(private readonly options: ProxyOptions) {
    if (options.upstreams.length === 0) throw proxyError('PROXY_NO_UPSTREAM', 'No enclave socket to forward to.', {hint: 'Pass --upstream unix:/run/nle/<name>.sock (or set proxy.upstreams).'})
    this.logger = options.logger ?? silentLogger
    this.slots = new Semaphore(options.concurrency, options.queue ?? 16)
    this.agents = options.upstreams.map(() => new Agent({keepAlive: true, maxSockets: options.concurrency, maxFreeSockets: options.concurrency, timeout: 4000}))
    const given = Object.fromEntries(Object.entries(options).filter(([k, v]) => k in PROXY_LIMIT_DEFAULTS && v !== undefined))
    this.limits = {...PROXY_LIMIT_DEFAULTS, ...given}
    // Node refuses a headers timeout longer than the request timeout; the request one bounds both.
    this.limits.headersTimeoutMs = Math.min(this.limits.headersTimeoutMs, this.limits.requestTimeoutMs)
  }

  stats(): ProxyStats {
    return {inFlight: this.slots.inFlight, queued: this.slots.queued, served: this.served, connections: this.connections, bufferedBytes: this.buffered, refusedConnections: this.refusedConnections, refusedBodies: this.refusedBodies}
  }

  /** The http(s) server options every listener shares: header size and the slow-client deadlines. */
  private serverOptions(): ServerOptions {
    return {
      keepAliveTimeout: 5000,
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: this.limits.headersTimeoutMs,
      requestTimeout: this.limits.requestTimeoutMs,
      // How often Node looks for connections past those deadlines (its default, 30 s, would let a
      // slow client stay up to 30 s longer than the deadline).
      connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(this.limits.headersTimeoutMs / 2))),
    }
  }

  /** Caps on every listener: connections in all, per client address (counted before TLS starts). */
  private guard(server: Server): Server {
    server.maxConnections = this.limits.maxConnections
    server.on('drop', () => this.refusedConnections++) // Node closed it on accept: maxConnections
    server.on('connection', (socket: Socket) => {
      const key = clientKey(socket.remoteAddress)
      const open = this.perClient.get(key) ?? 0
      if (open >= this.limits.maxConnectionsPerClient) {
        this.refusedConnections++
        socket.destroy()
        return
      }
      this.perClient.set(key, open + 1)
      this.connections++
      socket.once('close', () => {
        this.connections--
        const left = (this.perClient.get(key) ?? 1) - 1
        if (left === 0) this.perClient.delete(key)
        else this.perClient.set(key, left)
      })
    })
    return server
  }

  /** The request handler (usable with any http/https server; drain() waits only for the listeners listen() opened). */
  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    void this.handle(req, res)
  }

  /** Listen; resolves with the bound addresses. */
  async listen(options: ListenOptions): Promise<{https?: {host: string; port: number}; http?: {host: string; port: number}}> {
    const out: {https?: {host: string; port: number}; http?: {host: string; port: number}} = {}
    const bind = async (server: Server, host: string, port: number): Promise<{host: string; port: number}> => {
      const service = new HttpService(server, {access: {route: proxiedRoute, write: toLogger(this.logger)}})
      await service.listen({host, port}, {code: 'PROXY_LISTEN_FAILED', details: {host, port}, inUseHint: 'Another process uses that port: stop it, or pick another with --port / --http-port (proxy.port, proxy.httpPort)'})
      this.services.push(service)
      return {host, port: service.address()?.port ?? port}
    }
    if (options.https) {
      let server: Server
      try {
        server = createHttpsServer({cert: options.https.cert, key: options.https.key, handshakeTimeout: this.limits.headersTimeoutMs, ...this.serverOptions()}, this.handler)
      } catch (cause) {
        throw proxyError('PROXY_TLS_INVALID', 'The TLS certificate or key is not usable.', {cause, hint: 'Check proxy.tls.cert and proxy.tls.key (PEM).'})
      }
      out.https = await bind(this.guard(server), options.https.host, options.https.port)
    }
    if (options.http) out.http = await bind(this.guard(createHttpServer(this.serverOptions(), this.handler)), '127.0.0.1', options.http.port)
    return out
  }

  /** Stop accepting, let in-flight requests finish (up to timeoutMs), then cut the rest. */
  async drain(timeoutMs: number): Promise<{forced: boolean}> {
    this.draining = true
    const drained = await Promise.all(this.services.map((s) => s.drain(timeoutMs)))
    for (const a of this.agents) a.destroy()
    return {forced: drained.some((d) => d.forced)}
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const known = Object.hasOwn(PROXIED_ROUTES, path)
    // The access line (HttpService writes it) takes its sizes, code and upstream from here.
    const entry = accessRecord(res)
    // The client leaving before its answer is complete: stops the wait for a slot or the upstream
    // request. (A plain callback, not an AbortController: one per request costs more than the relay.)
    const client: ClientState = {gone: false, onGone: null}
    let slot = false
    let reserved = 0
    res.on('close', () => {
      if (!res.writableFinished) {
        client.gone = true
        client.onGone?.()
      }
      if (slot) this.slots.release()
      this.buffered -= reserved
      this.served++
    })

    if (!known) return reply(res, 'PROXY_NOT_FOUND', 'No such endpoint.', entry)
    if (PROXIED_ROUTES[path] !== req.method) return reply(res, 'PROXY_METHOD_NOT_ALLOWED', `Use ${PROXIED_ROUTES[path]} for ${path}.`, entry)
    if (this.draining) {
      res.setHeader('connection', 'close')
      return reply(res, 'PROXY_DRAINING', 'The proxy is shutting down.', entry)
    }
    // Admission before the body is read: its bytes are reserved from maxBufferedBytes, or it is
    // refused unread. (An unread body stays in the client's and the kernel's buffers, not here.)
    // A chunked body (no Content-Length) may grow to the limit: that much is reserved. One declared
    // over the limit is refused below (413) without being read.
    const length = req.headers['content-length']
    const declared = length === undefined ? (req.headers['transfer-encoding'] === undefined ? 0 : NaN) : Number(length)
    const want = Number.isSafeInteger(declared) && declared >= 0 ? declared : this.options.bodyLimitBytes
    if (want <= this.options.bodyLimitBytes) {
      if (this.buffered + want > this.limits.maxBufferedBytes) {
        this.refusedBodies++
        res.setHeader('retry-after', '1')
        res.setHeader('connection', 'close')
        req.resume() // discarded as it arrives (bounded by requestTimeoutMs), never held
        return reply(res, 'PROXY_BUSY', 'The proxy holds as many request bodies as it may; retry shortly.', entry)
      }
      reserved = want
      this.buffered += want
    }
    const body = await readLimited(req, this.options.bodyLimitBytes)
    if (body === 'too-large') {
      res.setHeader('connection', 'close')
      return reply(res, 'PROXY_BODY_TOO_LARGE', `Request bodies are limited to ${this.options.bodyLimitBytes} bytes.`, entry)
    }
    if (body === 'aborted') return
    entry.bytesIn = body.length

    slot = this.slots.tryAcquire() || (await this.waitForSlot(client))
    if (!slot) {
      if (client.gone) return
      res.setHeader('retry-after', '1')
      return reply(res, 'PROXY_BUSY', 'Too many requests in flight; retry shortly.', entry)
    }
    try {
      await this.forward(req, res, body, entry, client)
    } catch (error) {
      if (error instanceof UpstreamFailure) {
        if (!res.headersSent) return reply(res, error.code, error.message, entry)
        entry.code = error.code
        res.destroy()
        return
      }
      entry.code = 'PROXY_INTERNAL'
      this.logger.log('error', 'proxy_failed', {message: (error as Error)?.name})
      if (!res.headersSent) reply(res, 'PROXY_INTERNAL', 'The proxy failed.', entry)
      else res.destroy()
    }
  }

  /** No slot free: queue for one at most upstreamTimeoutMs, and not after the client left. */
  private async waitForSlot(client: ClientState): Promise<boolean> {
    if (client.gone) return false
    const wait = new AbortController()
    const waitTimer = setTimeout(() => wait.abort(), this.options.upstreamTimeoutMs)
    client.onGone = () => wait.abort()
    try {
      return await this.slots.acquire(wait.signal)
    } finally {
      clearTimeout(waitTimer)
      client.onGone = null
    }
  }

  private async forward(req: IncomingMessage, res: ServerResponse, body: Buffer, entry: AccessRecord, client: ClientState): Promise<void> {
    const n = this.options.upstreams.length
    const first = this.next
    this.next = (this.next + 1) % n
    let lastError = ''
    for (let i = 0; i < n; i++) {
      const index = (first + i) % n
      entry.extra.upstream = index
      const outcome = await this.attempt(index, req, res, body, entry, client)
      if (outcome === 'done') return
      lastError = outcome
    }
    throw new UpstreamFailure('PROXY_UPSTREAM_UNAVAILABLE', `No enclave accepted the connection (${lastError}).`)
  }

  /** One upstream: 'done' when it answered (or the client left), else why it could not connect. */
  private attempt(index: number, req: IncomingMessage, res: ServerResponse, body: Buffer, entry: {bytesOut: number}, client: ClientState, retried = false): Promise<'done' | string> {
    const headers: Record<string, string | number> = {'content-length': body.length}
    for (const h of REQUEST_HEADERS) {
      const v = req.headers[h]
      if (typeof v === 'string') headers[h] = v
    }
    return new Promise((resolve, reject) => {
      if (client.gone) return resolve('done')
      let answered = false
      const up = httpRequest({socketPath: this.options.upstreams[index], method: req.method, path: req.url, headers, agent: this.agents[index]})
      const headerTimer = setTimeout(() => {
        up.destroy()
        reject(new UpstreamFailure('PROXY_UPSTREAM_TIMEOUT', `The enclave did not answer within ${this.options.upstreamTimeoutMs} ms.`))
      }, this.options.upstreamTimeoutMs)
      client.onGone = () => {
        client.onGone = null
        up.destroy()
        clearTimeout(headerTimer)
        resolve('done')
      }
      up.on('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(headerTimer)
        client.onGone = null
        if (client.gone) return resolve('done')
        if (!answered) {
          // A kept-alive socket the enclave had just closed: send once more on a fresh one. (Safe:
          // a sealed request delivered twice is refused as a replay, never answered twice.)
          if (up.reusedSocket && !retried && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
            return this.attempt(index, req, res, body, entry, client, true).then(resolve, reject)
          }
          // Connection refused / socket missing: try the next upstream. Other failures are a 502.
          if (['ECONNREFUSED', 'ENOENT', 'EACCES'].includes(error.code ?? '')) return resolve(error.code ?? 'error')
          return reject(new UpstreamFailure('PROXY_UPSTREAM_UNAVAILABLE', `The enclave connection failed (${error.code ?? 'error'}).`))
        }
        reject(new UpstreamFailure('PROXY_UPSTREAM_UNAVAILABLE', 'The enclave connection broke mid-response.'))
      })
      up.on('response', (upRes) => {
        answered = true
        clearTimeout(headerTimer)
        const out: Record<string, string> = {}
        for (const h of RESPONSE_HEADERS) {
          const v = upRes.headers[h]
          if (typeof v === 'string') out[h] = v
        }
        res.writeHead(upRes.statusCode ?? 502, out)
        let relayed = false
        let finished = false
        if (out['content-length'] === undefined) {
          res.flushHeaders() // a stream (SSE): the client sees it start at once
        } else {
          // A whole body: the headers leave with its first bytes (one write, one segment), which
          // arrive together with the upstream headers; on their own only if the body does not follow.
          setImmediate(() => {
            if (!relayed && !finished) res.flushHeaders()
          })
        }
        const idleTimer = setTimeout(() => upRes.destroy(new Error('idle')), this.options.upstreamTimeoutMs)
        upRes.on('data', (chunk: Buffer) => {
          relayed = true
          entry.bytesOut += chunk.length
          idleTimer.refresh()
          if (!res.write(chunk)) {
            upRes.pause()
            res.once('drain', () => upRes.resume())
          }
        })
        const finish = (clean: boolean): void => {
          if (finished) return
          finished = true
          clearTimeout(idleTimer)
          client.onGone = null
          if (clean) res.end()
          else res.destroy() // the client must see a broken stream, not a clean (shorter) end
          resolve('done')
        }
        upRes.on('end', () => finish(upRes.complete))
        upRes.on('error', () => finish(false))
        upRes.on('close', () => finish(upRes.complete))
      })
      up.end(body)
    })
  }
}

/** An error of the proxy's own, with the status the wire table gives its code. */
function reply(res: ServerResponse, code: WireErrorCode, message: string, entry: {bytesOut: number; code?: string}): void {
  jsonError(res, code, message, {log: entry})
}

/** The whole request body, or why not. */
async function readLimited(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large' | 'aborted'> {
  const outcome = await readBody(req, {limit})
  return outcome.ok ? outcome.body : outcome.reason === 'too-large' ? 'too-large' : 'aborted'
}

/** The path as logged: a proxied route verbatim, anything else collapsed (a path could carry data). */
function proxiedRoute(path: string): string {
  return Object.hasOwn(PROXIED_ROUTES, path) ? path : OTHER
}
