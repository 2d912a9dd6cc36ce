/**
 * The enclave server's HTTP/1.1 application (no process concerns: see ./main.ts).
 *
 *   GET  /v1/attestation?nonce=<hex>  a document from the NSM carrying the channel key configuration
 *   POST /v1/chat/completions          sealed OpenAI request → sealed response, or SSE of sealed chunks;
 *                                      the body is an attested-channel request (HPKE to the attested
 *                                      key) or, when KMS mode is on, a KMS-mode request (../channel/kms-request.ts)
 *   GET  /healthz                      status only, no secrets
 *   GET  /metrics                      content-free counters (Prometheus text)
 *
 * Sealed-request failures (malformed, unknown key, replay, altered, KMS refused or rate-limited) are
 * answered in clear with the channel error code only: they carry nothing of the question. Everything
 * after the request opened — including errors — is sealed and leaves as an answer does (status 200,
 * the content type the Accept header asked for, the same padding buckets: `SealedAnswer`), so the host
 * learns neither the answer nor whether, or why, a request failed.
 */
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'

import type {AttestationRequest} from '../attestation/nsm-client.js'
import {CHUNK_PAD_BLOCK, type ResponseKeys, ResponseSealer, type ServerKeyRing, WHOLE_PAD_BLOCK, sealWholeResponse} from '../channel/index.js'
import type {OpenedRequest} from '../channel/request.js'
import {isNleError} from '../errors.js'
import {type ChatCompletion, type ChatCompletionChunk, type SealedErrorBody} from '../protocol/chat.js'
import {ATTESTATION_PATH, CHAT_PATH, EVENT_STREAM_TYPE, HEALTH_PATH, KMS_REQUEST_TYPE, METRICS_PATH, SEALED_REQUEST_TYPE, SEALED_RESPONSE_TYPE} from '../protocol/routes.js'
import {sseEvent} from '../protocol/sse.js'
import {type WireErrorCode} from '../protocol/status.js'
import {type ChatEngine, type ChatResult, type RuntimeDefaults, parseChatRequest, usage} from './chat.js'
import {type Logger, silentLogger} from '../net/log.js'
import {KvBudget} from './kv-budget.js'
import {Semaphore} from '../net/semaphore.js'
import {readBody} from '../net/body.js'
import {accessRecord, type AccessRecord, toLogger} from '../net/access.js'
import {jsonError, sendJson} from '../net/json.js'
import {HttpService} from '../net/service.js'

/** Largest nonce accepted on the attestation endpoint (bytes). */
export const MAX_NONCE_BYTES = 512

export interface EnclaveServerOptions {
  chat: ChatEngine
  /** The NSM (device in an enclave, simulator in dev): only `attestation` is used. */
  nsm: {attestation(request?: AttestationRequest): Promise<Uint8Array>}
  keyRing: ServerKeyRing
  /** KMS mode (absent: KMS-mode requests are refused with CHANNEL_KMS_DISABLED). */
  kms?: {open(message: Uint8Array): Promise<OpenedRequest>; readonly replayCacheSize: number}
  defaults: RuntimeDefaults
  logger?: Logger
  /**
   * Generations decoded at once (the engine's batch limit), how many more may wait (default 1 and
   * 64; past that 429 + Retry-After), and the KV-cache budget in bytes (absent: unbudgeted) that a
   * sequence's cache (prompt + max_tokens, ChatEngine.kvBytes) is reserved from before it starts.
   */
  generation?: {concurrency?: number; queue?: number; kvBudgetBytes?: number}
  /** Largest sealed request body (default 4 MiB). */
  maxBodyBytes?: number
  /** Smallest padding bucket of a stream's chunks (default 512). */
  padBlock?: number
  /** Smallest padding bucket of a whole answer (default 1 KiB). */
  wholePadBlock?: number
}

const json = (value: unknown): string => JSON.stringify(value)

/** What a request's access line carries (net/access.ts): sizes, codes, and for a generation its token count and timings (no content). */
type RequestLog = AccessRecord

class Metrics {
  readonly counters = new Map<string, number>()
  inc(name: string, labels: Record<string, string | number> = {}, by = 1): void {
    const key = `${name}${Object.keys(labels).length ? `{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}` : ''}`
    this.counters.set(key, (this.counters.get(key) ?? 0) + by)
  }
}

export class EnclaveServer {
  readonly server: Server
  private readonly service: HttpService
  private readonly logger: Logger
  private readonly slots: Semaphore
  private readonly kv: KvBudget | undefined
  private readonly metrics = new Metrics()
  private readonly maxBody: number
  private readonly padBlock: number
  private readonly wholePadBlock: number
  private readonly started = Date.now()

  constructor(private readonly options: EnclaveServerOptions) {
    this.logger = options.logger ?? silentLogger
    this.slots = new Semaphore(options.generation?.concurrency ?? 1, options.generation?.queue ?? 64)
    const budget = options.generation?.kvBudgetBytes
    this.kv = budget === undefined || options.chat.kvBytes === undefined ? undefined : new KvBudget(budget)
    this.maxBody = options.maxBodyBytes ?? 4 * 1024 * 1024
    this.padBlock = options.padBlock ?? CHUNK_PAD_BLOCK
    this.wholePadBlock = options.wholePadBlock ?? WHOLE_PAD_BLOCK
    this.server = createServer({keepAliveTimeout: 5000}, (req, res) => void this.handle(req, res))
    this.service = new HttpService(this.server, {access: {route: knownRoute, write: toLogger(this.logger)}})
  }

  /** Requests being handled now. */
  get inFlight(): number {
    return this.service.inFlight
  }

  /** Listen on the Unix socket (SERVER_LISTEN_FAILED, or ADDRESS_IN_USE). */
  async listen(socketPath: string): Promise<void> {
    await this.service.listen({socketPath}, {code: 'SERVER_LISTEN_FAILED', details: {socket: socketPath}})
  }

  /** Stop accepting, let in-flight requests finish (up to timeoutMs), then cut the rest. */
  async drain(timeoutMs: number): Promise<{forced: boolean}> {
    return this.service.drain(timeoutMs)
  }

  private get draining(): boolean {
    return this.service.draining
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://enclave')
    const route = url.pathname
    // The access line (HttpService writes it) takes its sizes, code, request id and generation figures from here.
    const log = accessRecord(res)
    res.on('close', () => this.metrics.inc('nle_server_requests_total', {route: knownRoute(route), status: res.statusCode}))
    try {
      if (route === HEALTH_PATH && req.method === 'GET') return this.health(res)
      if (route === METRICS_PATH && req.method === 'GET') return await this.sendMetrics(res)
      if (route === ATTESTATION_PATH && req.method === 'GET') return await this.attestation(url, res, log)
      if (route === CHAT_PATH && req.method === 'POST') return await this.chat(req, res, log)
      return plain(res, route === CHAT_PATH || route === ATTESTATION_PATH ? 'SERVER_METHOD_NOT_ALLOWED' : 'SERVER_NOT_FOUND', 'No such endpoint.', log)
    } catch (error) {
      // Unexpected: report the code only. Never echo anything of the request.
      const code = isNleError(error) ? error.code : 'SERVER_INTERNAL'
      this.logger.log('error', 'handler_failed', {code, message: isNleError(error) ? error.message : (error as Error)?.name})
      if (!res.headersSent) plain(res, 'SERVER_INTERNAL', 'The enclave server failed to handle the request.', log)
      else res.destroy()
    }
  }

  private health(res: ServerResponse): void {
    const body = {status: this.draining ? 'draining' : 'ok', model: this.options.chat.model, uptimeS: Math.round((Date.now() - this.started) / 1000), inFlight: this.slots.inFlight, queued: this.slots.queued}
    sendJson(res, this.draining ? 503 : 200, body)
  }

  private async sendMetrics(res: ServerResponse): Promise<void> {
    const ring = this.options.keyRing.stats()
    // The engine's batch (counts only), asked of its worker between two steps; absent if it cannot
    // answer within STATS_WAIT_MS (a long prefill step, or a worker that died).
    const batch = await withinMs(this.options.chat.stats?.(), STATS_WAIT_MS)
    const lines = [...this.metrics.counters].map(([k, v]) => `${k} ${v}`)
    lines.push(`nle_server_generation_inflight ${this.slots.inFlight}`, `nle_server_generation_queued ${this.slots.queued}`, `nle_server_generation_slots ${this.slots.limit}`)
    if (this.kv !== undefined) lines.push(`nle_server_kv_budget_bytes ${this.kv.budgetBytes}`, `nle_server_kv_reserved_bytes ${this.kv.reservedBytes}`)
    if (batch !== undefined) {
      lines.push(
        `nle_server_batch_active ${batch.active}`,
        `nle_server_batch_prefilling ${batch.prefilling}`,
        `nle_server_batch_waiting ${batch.waiting}`,
        `nle_server_batch_limit ${batch.maxBatch}`,
        // Occupancy now (rows in the decode batch ÷ its limit) and on average (rows ÷ decode steps).
        `nle_server_batch_occupancy ${round3(batch.active / Math.max(1, batch.maxBatch))}`,
        `nle_server_batch_decode_steps_total ${batch.decodeSteps}`,
        `nle_server_batch_decode_rows_total ${batch.decodeRows}`,
        `nle_server_batch_prefill_steps_total ${batch.prefillSteps}`,
      )
    }
    lines.push(`nle_server_channel_keys ${ring.keys}`, `nle_server_replay_cache_entries ${ring.replayCacheSize + (this.options.kms?.replayCacheSize ?? 0)}`)
    lines.push(`nle_server_uptime_seconds ${Math.round((Date.now() - this.started) / 1000)}`)
    res.writeHead(200, {'content-type': 'text/plain; version=0.0.4'}).end(lines.sort().join('\n') + '\n')
  }

  private async attestation(url: URL, res: ServerResponse, log: {bytesOut: number; code?: string}): Promise<void> {
    const hex = url.searchParams.get('nonce')
    if (hex !== null && (!/^([0-9a-fA-F]{2})*$/.test(hex) || hex.length / 2 > MAX_NONCE_BYTES)) {
      return plain(res, 'SERVER_BAD_NONCE', `The nonce must be hex, at most ${MAX_NONCE_BYTES} bytes.`, log)
    }
    const nonce = hex === null || hex.length === 0 ? null : new Uint8Array(Buffer.from(hex, 'hex'))
    const publicKey = await this.options.keyRing.keyConfig()
    let document: Uint8Array
    try {
      document = await this.options.nsm.attestation({nonce, publicKey})
    } catch (error) {
      this.logger.log('error', 'nsm_failed', {code: isNleError(error) ? error.code : 'NSM_ERROR'})
      return plain(res, 'SERVER_NSM_FAILED', 'The NSM could not produce an attestation document.', log)
    }
    this.metrics.inc('nle_server_attestations_total')
    log.bytesOut = document.length
    res.writeHead(200, {'content-type': 'application/cbor', 'content-length': document.length, 'cache-control': 'no-store'}).end(document)
  }

  private async chat(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<void> {
    if (this.draining) {
      res.setHeader('connection', 'close')
      return plain(res, 'SERVER_DRAINING', 'The enclave server is shutting down.', log)
    }
    const type = req.headers['content-type'] ?? ''
    const kms = type.startsWith(KMS_REQUEST_TYPE)
    if (!kms && !type.startsWith(SEALED_REQUEST_TYPE)) {
      return plain(res, 'SERVER_UNSUPPORTED_MEDIA_TYPE', `The request body must be ${SEALED_REQUEST_TYPE} or ${KMS_REQUEST_TYPE}.`, log)
    }
    if (kms && !this.options.kms) {
      return plain(res, 'CHANNEL_KMS_DISABLED', 'KMS mode is not enabled on this enclave server.', log)
    }
    const body = await readRequestBody(req, this.maxBody)
    if (body === null) return plain(res, 'SERVER_BODY_TOO_LARGE', `A sealed request is at most ${this.maxBody} bytes.`, log)
    log.bytesIn = body.length
    if (this.slots.inFlight >= this.slots.limit && this.slots.queued >= this.slots.maxQueue) {
      res.setHeader('retry-after', '1')
      return plain(res, 'SERVER_BUSY', 'The generation queue is full.', log)
    }
    let opened
    try {
      opened = kms ? await this.options.kms!.open(body) : await this.options.keyRing.open(body)
    } catch (error) {
      if (!isNleError(error)) throw error
      this.metrics.inc('nle_server_channel_errors_total', {code: error.code})
      if (error.code === 'CHANNEL_KMS_UNAVAILABLE') this.logger.log('warn', 'kms_unavailable', {code: error.code, cause: (error.cause as Error | undefined)?.name})
      if (error.code === 'CHANNEL_LIMIT') res.setHeader('retry-after', '1')
      return plain(res, error.code, error.message, log)
    }
    log.requestId = opened.requestId
    // The framing follows the Accept header (which the host sees anyway), not the sealed body: an
    // error then leaves in the same content type, shape and padded size as an answer.
    const out = new SealedAnswer(res, opened.responseKeys, wantsStream(req), {
      id: `chatcmpl-${opened.requestId}`,
      created: Math.floor(Date.now() / 1000),
      model: this.options.chat.model,
      chunkPad: this.padBlock,
      wholePad: this.wholePadBlock,
      log,
    })
    let parsed
    try {
      parsed = parseChatRequest(opened.plaintext, this.options.defaults)
    } catch (error) {
      if (!isNleError(error)) throw error
      return out.fail(error.code, error.message)
    }
    // The host can rewrite Accept: a whole answer streamed would show it every token's size and
    // time. Only the framing the client sealed into the request is generated.
    if ((parsed.request.stream ?? false) !== wantsStream(req)) {
      return out.fail('SERVER_BAD_REQUEST', 'The request was sealed for another framing than its Accept header asks for.')
    }
    const abort = new AbortController()
    // Only a client that left early: aborting on every close costs a DOMException (~50 µs) per request.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort()
    })
    if (!(await this.slots.acquire(abort.signal))) {
      if (abort.signal.aborted) return
      return out.fail('SERVER_BUSY', 'The generation queue is full.')
    }
    let kvBytes = 0
    try {
      if (this.kv !== undefined) {
        // Reserve the sequence's cache before it starts: one that can never fit is refused, one
        // that fits once others finish waits for them (holding its slot, which the engine does not use).
        kvBytes = this.kvBytesFor(parsed.messages, parsed.options.maxTokens)
        let reserved: boolean
        try {
          reserved = await this.kv.acquire(kvBytes, abort.signal)
        } catch (error) {
          kvBytes = 0
          if (!isNleError(error)) throw error
          this.metrics.inc('nle_server_kv_refused_total')
          return out.fail(error.code, error.message)
        }
        if (!reserved) {
          kvBytes = 0
          return
        }
      }
      const it = this.options.chat.stream(parsed.messages, {...parsed.options, signal: abort.signal})
      out.start()
      let result: ChatResult
      try {
        for (;;) {
          const r = await it.next()
          if (r.done) {
            result = r.value
            break
          }
          if (abort.signal.aborted) {
            await it.return(undefined as never).catch(() => undefined) // the client left: stop generating
            return
          }
          out.delta(r.value.text)
        }
      } catch (error) {
        const code = isNleError(error) ? error.code : 'SERVER_GENERATION_FAILED'
        this.logger.log('warn', 'generation_failed', {requestId: opened.requestId, code})
        if (abort.signal.aborted) res.end()
        else if (isNleError(error) && error.code === 'ENGINE_PROMPT_TOO_LONG') out.fail(code, error.message, contextFacts(error.details))
        else out.fail(code, 'Generation failed.')
        return
      }
      if (abort.signal.aborted) return
      this.metrics.inc('nle_server_tokens_generated_total', {}, result.completionTokens)
      Object.assign(log.extra, {
        tokens: result.completionTokens,
        ...(result.ttftMs === undefined ? {} : {ttftMs: Math.round(result.ttftMs)}),
        ...(result.interTokenMs === undefined ? {} : {interTokenMs: Math.round(result.interTokenMs * 10) / 10}),
      })
      if (result.ttftMs !== undefined) {
        this.metrics.inc('nle_server_ttft_ms_sum', {}, Math.round(result.ttftMs))
        this.metrics.inc('nle_server_ttft_ms_count')
      }
      if (result.interTokenMs !== undefined) {
        this.metrics.inc('nle_server_inter_token_ms_sum', {}, Math.round(result.interTokenMs * 10) / 10)
        this.metrics.inc('nle_server_inter_token_ms_count')
      }
      out.finish(result)
    } finally {
      if (kvBytes > 0) this.kv?.release(kvBytes)
      this.slots.release()
    }
  }

  /** The cache a request may grow to; 0 when the prompt cannot even be tokenized (the engine then reports why). */
  private kvBytesFor(messages: Parameters<NonNullable<ChatEngine['kvBytes']>>[0], maxTokens: number): number {
    try {
      return this.options.chat.kvBytes?.(messages, maxTokens) ?? 0
    } catch {
      return 0
    }
  }
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000

/** Longest wait of /metrics for the engine's batch counts. */
const STATS_WAIT_MS = 2000

/** The promise's value, or undefined when it fails or takes longer than `ms`. */
async function withinMs<T>(p: Promise<T> | undefined, ms: number): Promise<T | undefined> {
  if (p === undefined) return undefined
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))
  try {
    return await Promise.race([p.catch(() => undefined), late])
  } finally {
    clearTimeout(timer)
  }
}

/** Whether the client asked for a stream (the Accept header the client library sends for one). */
function wantsStream(req: IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes(EVENT_STREAM_TYPE)
}

/**
 * One sealed answer, whole or streamed. Whatever happens after the request opened leaves the same
 * way: status 200, the same content type, chunks padded to the same buckets. A stream always opens
 * with the response nonce and the role chunk, then content chunks, then one final chunk — with
 * `finish_reason` and `usage`, or with `{error}` — so an error looks like an answer of no tokens.
 * A whole answer is one sealed body, the completion or the `{error}`, padded alike.
 */
class SealedAnswer {
  private sealer: ResponseSealer | null = null
  private text = ''

  constructor(
    private readonly res: ServerResponse,
    private readonly keys: ResponseKeys,
    private readonly stream: boolean,
    private readonly meta: {id: string; created: number; model: string; chunkPad: number; wholePad: number; log: {code?: string; bytesOut: number}},
  ) {}

  private chunk(delta: ChatCompletionChunk['choices'][0]['delta'], finish: ChatCompletionChunk['choices'][0]['finish_reason'], extra: Partial<ChatCompletionChunk> = {}): Uint8Array {
    const {id, created, model} = this.meta
    return utf8(json({id, object: 'chat.completion.chunk', created, model, choices: [{index: 0, delta, finish_reason: finish}], ...extra} satisfies ChatCompletionChunk))
  }

  private send(frame: Uint8Array): void {
    const line = sseEvent(Buffer.from(frame).toString('base64'))
    this.meta.log.bytesOut += line.length
    this.res.write(line)
  }

  /** Stream: headers, the nonce and the role chunk (once). */
  start(): void {
    if (!this.stream || this.sealer) return
    this.sealer = new ResponseSealer(this.keys, this.meta.chunkPad)
    this.res.writeHead(200, {'content-type': EVENT_STREAM_TYPE, 'cache-control': 'no-store', 'x-accel-buffering': 'no'})
    const nonceLine = sseEvent(Buffer.from(this.sealer.nonce).toString('base64'), 'nonce')
    this.meta.log.bytesOut += nonceLine.length
    this.res.write(nonceLine)
    this.send(this.sealer.seal(this.chunk({role: 'assistant', content: ''}, null), false))
  }

  delta(text: string): void {
    if (!this.stream) {
      this.text += text
      return
    }
    this.start()
    this.send(this.sealer!.seal(this.chunk({content: text}, null), false))
  }

  finish(result: ChatResult): void {
    if (this.stream) {
      this.start()
      this.send(this.sealer!.seal(this.chunk({}, result.finishReason, {usage: usage(result)}), true))
      this.res.end()
      return
    }
    const {id, created, model} = this.meta
    const completion: ChatCompletion = {id, object: 'chat.completion', created, model, choices: [{index: 0, message: {role: 'assistant', content: this.text}, finish_reason: result.finishReason}], usage: usage(result)}
    this.whole(utf8(json(completion)))
  }

  /** A sealed error (only the client reads it), in the answer's clothes. */
  fail(code: string, message: string, facts: {context?: number; promptTokens?: number} = {}): void {
    this.meta.log.code = code
    const body = utf8(json({error: {code, message: message.slice(0, MAX_SEALED_MESSAGE), ...facts}} satisfies SealedErrorBody))
    if (this.stream) {
      this.start()
      this.send(this.sealer!.seal(body, true))
      this.res.end()
      return
    }
    this.whole(body)
  }

  private whole(plaintext: Uint8Array): void {
    const bytes = sealWholeResponse(this.keys, plaintext, this.meta.wholePad)
    this.meta.log.bytesOut = bytes.length
    this.res.writeHead(200, {'content-type': SEALED_RESPONSE_TYPE, 'content-length': bytes.length, 'cache-control': 'no-store'}).end(bytes)
  }
}

/** The two numbers of an ENGINE_PROMPT_TOO_LONG that the client may read (integers only). */
function contextFacts(details: Record<string, unknown> | undefined): {context?: number; promptTokens?: number} {
  const int = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0
  return {...(int(details?.context) ? {context: details.context} : {}), ...(int(details?.promptTokens) ? {promptTokens: details.promptTokens} : {})}
}

/** A sealed error's message is cut here, so an error always fits the smallest padding bucket. */
const MAX_SEALED_MESSAGE = 200

const ROUTES = new Set([HEALTH_PATH, METRICS_PATH, ATTESTATION_PATH, CHAT_PATH])
/** The path as logged: known routes verbatim, anything else collapsed (a path could carry data). */
function knownRoute(path: string): string {
  return ROUTES.has(path) ? path : '(other)'
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

/** An error in clear, with the status the wire table gives its code. */
function plain(res: ServerResponse, code: WireErrorCode | (string & {}), message: string, log: {code?: string; bytesOut: number}): void {
  jsonError(res, code, message, {log})
}

/** The whole body, or null past `limit` bytes (the rest is drained unread). */
async function readRequestBody(req: IncomingMessage, limit: number): Promise<Uint8Array | null> {
  const outcome = await readBody(req, {limit})
  if (outcome.ok) return new Uint8Array(outcome.body.buffer, outcome.body.byteOffset, outcome.body.length)
  if (outcome.reason === 'too-large') return null
  throw new Error('The connection closed before the request body was complete.')
}
