/**
 * The gateway's HTTP server: plain OpenAI HTTP on loopback in front of nle's attested, sealed
 * channel — who may ask, the routes, and each request answered through the client.
 *
 *   OpenAI client ──HTTP (loopback)──▶ gateway ──sealed (HPKE), attested──▶ proxy ──▶ enclave
 *
 * Attestation policy (./attestation.ts): verified at start and reused while it is younger than
 * `attestationTtlMs`; verified afresh after the upstream connection failed (unreachable,
 * 502/503/504, a stream cut), and — inside the client, followed through its attestation events —
 * after a 421 (the enclave no longer holds the key it attested to). While verification fails, every
 * request is answered 503 (OpenAI error shape) and nothing is sent. Streams: ./stream.ts.
 *
 * Who may ask (./access.ts): a bearer token on every request (none only on a Unix socket, mode
 * 0600), no web page unless its origin was allowed by name, and a POST must be application/json.
 *
 * Nothing of a request or an answer is logged: the access log has method, route, status, sizes,
 * latency and an error code.
 */
import {chmod} from 'node:fs/promises'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'

import type {VerifiedAttestation} from '../attestation/verify.js'
import type {ChatCompletion, ChatCompletionChunk, ChatRequest} from '../client/index.js'
import type {NleError} from '../errors.js'
import type {Lockfile} from '../lockfile.js'
import {AccessPolicy, checkJson} from './access.js'
import {type AttestationLogEvent, type AttestationState, AttestationTracker, type AttestingUpstream} from './attestation.js'
import {type HttpFailure, gatewayError, toHttpFailure} from './errors.js'
import {type ListenAddress, listenUrl, parseListen} from './listen.js'
import {type AnswerStamp, type ParsedRequest, type RequestLimits, chatCompletion, parseChatBody, parseCompletionBody, textCompletion} from './openai.js'
import {type ParsedResponsesRequest, parseResponsesBody, wholeResponse} from './responses.js'
import {type AnswerShape, OpenAiEventEncoder, readOpening, relayStream} from './stream.js'
import {type AccessLine, type AccessRecord, accessRecord, knownRoutes} from '../net/access.js'
import {readBody} from '../net/body.js'
import {sendJson} from '../net/json.js'
import {HttpService} from '../net/service.js'

/** What the gateway needs of the upstream (NleClient fits; tests may fake it). */
export interface GatewayUpstream extends AttestingUpstream {
  chat(request: ChatRequest, options?: {signal?: AbortSignal}): Promise<ChatCompletion>
  chatStream(request: ChatRequest, options?: {signal?: AbortSignal}): AsyncGenerator<ChatCompletionChunk, void, void>
  close(): void
}

/** The access line of every nle server (net/access.ts): known routes verbatim, anything else "(other)". */
export type AccessLogEntry = AccessLine

export type GatewayEvent = AccessLogEntry | AttestationLogEvent

export interface GatewayOptions {
  upstream: GatewayUpstream
  /** Shown at /nle/attestation. */
  upstreamDisplay: string
  /** host:port, loopback only (default 127.0.0.1:8787; port 0 = any free port). */
  listen?: string
  /** Listen on this Unix socket (mode 0600) instead of TCP. */
  socketPath?: string
  /**
   * Required. The bearer token every request must carry, or null for none — allowed only with
   * `socketPath` (on TCP any local user could connect).
   */
  token: string | null
  /** Browser origins (scheme://host[:port]) that may call the gateway (CORS); none by default. */
  allowOrigins?: readonly string[]
  /** How requests are protected (the upstream client does it; shown at /nle/attestation). */
  mode?: 'attested' | 'kms'
  /** Re-verify after this long (default 5 min). */
  attestationTtlMs?: number
  /** After a failed verification, answer from that failure for this long before trying again (default 1 s). */
  failureRetryMs?: number
  /** Largest request body (default 4 MiB). */
  bodyLimit?: number
  /** Time a client has to send its headers (default 10 s), and its whole request (default 60 s): 408 after. */
  headersTimeoutMs?: number
  requestTimeoutMs?: number
  /**
   * The one model id the gateway lists at /v1/models and answers with (default `nle-enclave`):
   * stable across restarts, from the lockfile (see modelIdFromLockfile). Any requested model is served by it.
   */
  modelId?: string
  /** Limits of the enclave checked before anything is sent (nle.yaml runtime.maxTokens): a request over them is refused, not cut. */
  limits?: RequestLimits
  log?: (event: GatewayEvent) => void
}

export const ROUTES = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  responses: '/v1/responses',
  models: '/v1/models',
  attestation: '/nle/attestation',
} as const

const KNOWN = new Set<string>(Object.values(ROUTES))

export class Gateway {
  private readonly server: Server
  private readonly service: HttpService
  private readonly options: Required<Omit<GatewayOptions, 'log' | 'socketPath' | 'limits'>> & Pick<GatewayOptions, 'log' | 'socketPath'> & {limits: RequestLimits}
  private readonly access: AccessPolicy
  private readonly address: ListenAddress
  private readonly attestation: AttestationTracker
  private readonly started = Math.floor(Date.now() / 1000)
  private readonly open = new Set<ServerResponse>()

  constructor(options: GatewayOptions) {
    this.options = {
      listen: '127.0.0.1:8787',
      mode: 'attested',
      attestationTtlMs: 300_000,
      failureRetryMs: 1000,
      bodyLimit: 4 * 1024 * 1024,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      modelId: 'nle-enclave',
      allowOrigins: [],
      ...options,
      limits: options.limits ?? {},
    }
    this.address = parseListen(this.options.listen) // throws before anything listens
    this.access = new AccessPolicy({token: options.token, unixSocket: options.socketPath !== undefined, allowOrigins: this.options.allowOrigins})
    // A local program that opens connections and sends nothing (or a body byte by byte) is cut.
    const requestTimeout = this.options.requestTimeoutMs
    const headersTimeout = Math.min(this.options.headersTimeoutMs, requestTimeout)
    this.server = createServer({headersTimeout, requestTimeout, maxHeaderSize: 16 * 1024, connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(headersTimeout / 2)))}, (req, res) => void this.handle(req, res))
    this.server.maxConnections = 256
    this.server.keepAliveTimeout = 5000
    this.service = new HttpService(this.server, {access: {route: knownRoutes(KNOWN), write: (line) => this.options.log?.(line)}})
    const o = this.options
    this.attestation = new AttestationTracker(o.upstream, {mode: o.mode, upstreamDisplay: o.upstreamDisplay, ttlMs: o.attestationTtlMs, failureRetryMs: o.failureRetryMs, log: o.log})
  }

  /** Listen, then verify the attestation once (a failure is kept and answered as 503, not thrown). */
  async start(): Promise<{url: string; attestation: AttestationState}> {
    const socketPath = this.options.socketPath
    await this.service.listen(socketPath === undefined ? {host: this.address.host, port: this.address.port} : {socketPath}, {
      code: 'GATEWAY_LISTEN_FAILED',
      where: socketPath ?? listenUrl(this.address),
      inUseHint: socketPath === undefined ? 'Another process uses that port: stop it, or pick another with --listen 127.0.0.1:PORT' : 'Another process serves that socket: stop it, or pick another --socket PATH',
    })
    // Only this user may connect to the socket.
    if (this.options.socketPath !== undefined) await chmod(this.options.socketPath, 0o600)
    await this.attestation.ensure().catch(() => undefined)
    return {url: this.url, attestation: this.state()}
  }

  get url(): string {
    if (this.options.socketPath !== undefined) return `unix:${this.options.socketPath}`
    return listenUrl({host: this.address.host, port: this.service.address()?.port ?? this.address.port})
  }

  /** Stop accepting, end idle connections, cut streams still open, close the upstream. */
  async stop(): Promise<void> {
    for (const res of this.open) res.destroy()
    await this.service.close()
    this.attestation.close()
    this.options.upstream.close()
  }

  /** The verified state (what GET /nle/attestation shows). */
  state(): AttestationState {
    return this.attestation.state()
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!
    // The access line (HttpService writes it) takes its sizes and code from here.
    const entry = accessRecord(res)
    this.open.add(res)
    res.on('close', () => this.open.delete(res))
    try {
      this.access.checkOrigin(req, res)
      if (req.method === 'OPTIONS') {
        // A CORS preflight from an allowed origin (browsers send no credentials with it).
        res.writeHead(204, {'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600'}).end()
        return
      }
      this.access.checkToken(req)
      if (path === ROUTES.models || path.startsWith(`${ROUTES.models}/`)) {
        if (req.method !== 'GET') throw notAllowed()
        // What is listed is what is attested: while verification fails, 503 like every route.
        const a = await this.attestation.ensure()
        const model = {
          id: this.options.modelId,
          object: 'model',
          created: this.started,
          owned_by: 'nle',
          nle_attestation: {status: 'verified', mode: this.options.mode, pcr0: a.pcrs[0] ?? null, root: a.root, debug: a.debug, verified_at: new Date(this.attestation.verifiedAt).toISOString()},
        }
        if (path === ROUTES.models) return replyJson(res, 200, {object: 'list', data: [model]}, entry)
        const id = decodeURIComponent(path.slice(ROUTES.models.length + 1))
        if (id !== this.options.modelId) throw gatewayError('GATEWAY_NOT_FOUND', `The model '${id.slice(0, 256)}' does not exist: this gateway serves ${this.options.modelId}.`, {details: {model: id.slice(0, 256)}})
        return replyJson(res, 200, model, entry)
      }
      if (path === ROUTES.attestation) {
        if (req.method !== 'GET') throw notAllowed()
        const fresh = new URL(req.url ?? '/', 'http://x').searchParams.get('fresh')
        await this.attestation.ensure(fresh === '1' || fresh === 'true').catch(() => undefined)
        const state = this.state()
        return replyJson(res, state.status === 'verified' ? 200 : 503, state, entry)
      }
      if (path === ROUTES.chat || path === ROUTES.completions || path === ROUTES.responses) {
        if (req.method !== 'POST') throw notAllowed()
        checkJson(req)
        const body = await readRequestBody(req, this.options.bodyLimit)
        entry.bytesIn = body.length
        const limits = this.options.limits
        if (path === ROUTES.responses) return await this.complete(res, parseResponsesBody(body, limits), 'responses', entry)
        return await this.complete(res, path === ROUTES.chat ? parseChatBody(body, limits) : parseCompletionBody(body, limits), path === ROUTES.chat ? 'chat' : 'text', entry)
      }
      throw gatewayError('GATEWAY_NOT_FOUND', `No such endpoint. The gateway serves POST ${ROUTES.chat}, POST ${ROUTES.completions}, POST ${ROUTES.responses}, GET ${ROUTES.models} and GET ${ROUTES.attestation}.`)
    } catch (error) {
      this.fail(res, error, entry, path === ROUTES.responses ? 'input' : 'messages')
    }
  }

  /** The model id and the verified image's fingerprint, stamped on every answer. */
  private stamp(a: VerifiedAttestation): AnswerStamp {
    return {model: this.options.modelId, systemFingerprint: `nle-${(a.pcrs[0] ?? '').slice(0, 16)}`}
  }

  private async complete(res: ServerResponse, parsed: ParsedRequest, shape: AnswerShape, entry: AccessRecord): Promise<void> {
    const abort = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    const signal = abort.signal
    // Attested first: a failure here answers 503 and nothing is sealed or sent.
    await this.attestation.ensure()
    try {
      if (!parsed.stream) {
        const answer = await this.options.upstream.chat(parsed.request, {signal})
        // Stamped with what is verified now: the client may have re-attested for this request.
        const stamp = this.stamp(this.attestation.current())
        const body = shape === 'chat' ? chatCompletion(answer, stamp) : shape === 'text' ? textCompletion(answer, stamp) : wholeResponse(answer, parsed as ParsedResponsesRequest, stamp)
        return replyJson(res, 200, body, entry)
      }
      const it = this.options.upstream.chatStream(parsed.request, {signal})
      const opening = await readOpening(it) // a failure before the first token is still an HTTP error
      const encoder = new OpenAiEventEncoder(shape, parsed, this.stamp(this.attestation.current()))
      await relayStream(res, it, opening, {
        encoder,
        signal,
        wrote: (bytes) => (entry.bytesOut += bytes),
        failure: (error) => this.noteFailure(error, entry, shape === 'responses' ? 'input' : 'messages'),
      })
    } catch (error) {
      if (signal.aborted) {
        entry.code = 'CLIENT_ABORTED'
        return
      }
      throw error
    }
  }

  /** `promptParam`: the field a context overflow is blamed on (messages; input in the Responses API). */
  private noteFailure(error: unknown, entry: AccessRecord, promptParam = 'messages'): HttpFailure {
    const f = toHttpFailure(error)
    if (f.body.error.code === 'context_length_exceeded') f.body.error.param = promptParam
    entry.code = f.body.error.code
    // A refusal met mid-request (the client re-attested after a 421 and that failed) is in the
    // attestation state already: the client reported it.
    if (f.reconnect) this.attestation.markStale()
    return f
  }

  private fail(res: ServerResponse, error: unknown, entry: AccessRecord, promptParam?: string): void {
    const f = this.noteFailure(error, entry, promptParam)
    if (res.headersSent) {
      res.destroy()
      return
    }
    const headers: Record<string, string> = {}
    if (f.retryAfter !== undefined) headers['retry-after'] = f.retryAfter
    if (!f.shouldRetry) headers['x-should-retry'] = 'false'
    replyJson(res, f.status, f.body, entry, headers)
  }
}

function notAllowed(): NleError {
  return gatewayError('GATEWAY_METHOD_NOT_ALLOWED', 'Method not allowed on this endpoint.')
}

/** A JSON answer, its size noted in the access log entry. */
function replyJson(res: ServerResponse, status: number, value: unknown, entry: AccessRecord, headers: Record<string, string> = {}): void {
  entry.bytesOut = sendJson(res, status, value, headers)
}

async function readRequestBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const outcome = await readBody(req, {limit})
  if (outcome.ok) return outcome.body
  if (outcome.reason === 'too-large') throw gatewayError('GATEWAY_REQUEST_TOO_LARGE', `The request body is larger than ${limit} bytes.`)
  throw new Error('The connection closed before the request body was complete.')
}

/**
 * The gateway's model id, stable for one enclave image: `nle-` and the start of the model
 * manifest's digest (the lockfile's modelManifest input), else of PCR0.
 */
export function modelIdFromLockfile(lock: Pick<Lockfile, 'inputs' | 'measurements'>): string {
  const manifest = lock.inputs.modelManifest?.replace(/^sha(256|384):/, '')
  return `nle-${(manifest ?? lock.measurements.PCR0).slice(0, 12)}`
}

/** Create and start a gateway. */
export async function startGateway(options: GatewayOptions): Promise<{gateway: Gateway; url: string; attestation: AttestationState}> {
  const gateway = new Gateway(options)
  const {url, attestation} = await gateway.start()
  return {gateway, url, attestation}
}
