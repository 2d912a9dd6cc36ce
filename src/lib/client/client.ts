/**
 * The nle client: attest → verify → seal → send → open.
 *
 * 1. GET /v1/attestation?nonce=<32 random bytes> and verify the document against the expected
 *    PCRs (from the lockfile) with the nonce that was sent; refuse to send anything otherwise.
 * 2. The document's `public_key` is the enclave's channel key configuration; the verified result is
 *    cached for the session (re-fetched after `attestationTtlMs`, or when the enclave says the key
 *    is gone).
 * 3. Each request is sealed to that key (fresh HPKE context: no two requests share keys), POSTed,
 *    and the answer — whole or an SSE stream of sealed chunks — is opened with keys exported from
 *    the request's context. A missing final chunk, an altered chunk or a broken connection is an error,
 *    never a silently shorter answer.
 *    Each time it attests or re-attests, the outcome — the verified attestation, or the failure and
 *    its code — goes to the `onAttestation` listeners (the gateway follows its state from them).
 * 4. KMS mode seals to the same attested key and, in addition, under a data key wrapped by KMS
 *    (../channel/kms-request.ts): there is no KMS-mode request without a verified attestation.
 *
 * Every answer is read under limits (./limits.ts): an idle timeout per sealed chunk, an overall
 * deadline, the largest SSE event and whole body.
 */
import {randomBytes} from 'node:crypto'
import type {IncomingMessage} from 'node:http'

import {type ExpectedPcrs, type VerifiedAttestation, verifyAttestation} from '../attestation/verify.js'
import type {TrustedRoot} from '../attestation/roots.js'
import {
  type KeyConfig,
  type ResponseKeys,
  RESPONSE_NONCE_BYTES,
  ResponseOpener,
  type PreparedSeal,
  decodeKeyConfig,
  openWholeResponse,
  prepareSeal,
} from '../channel/index.js'
import {type WrapDataKey, sealKmsRequest} from '../channel/kms-request.js'
import {type NleError, isNleError} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import type {ChatCompletion, ChatCompletionChunk, ChatCompletionRequest} from '../protocol/chat.js'
import {clientError} from './errors.js'
import {DEFAULT_LIMITS, type ResponseLimits, RequestWatch} from './limits.js'
import {type TlsOptions, Transport, readAll} from './transport.js'
import {ATTESTATION_PATH, CHAT_PATH, EVENT_STREAM_TYPE, KMS_REQUEST_TYPE, NONCE_BYTES, SEALED_REQUEST_TYPE, SEALED_RESPONSE_TYPE} from '../protocol/routes.js'
import {SseReader, SseTooLarge} from '../protocol/sse-reader.js'
import {wireMeaning} from '../protocol/status.js'


export interface NleClientOptions {
  /** unix:/path/to.sock, an absolute socket path, or the proxy's http(s) URL. */
  target: string
  /**
   * What the enclave must measure as (the lockfile's measurements). Without it nothing is sent, in
   * either mode (CLIENT_NO_MEASUREMENTS).
   */
  expectedPcrs?: ExpectedPcrs
  /**
   * KMS mode: wrap each request's data key with KMS Encrypt under the caller's own identity
   * (../kms/aws.ts `kmsEncrypt`); the request is sealed to the verified enclave's key as well, so
   * only that enclave can open it, and only if the key policy lets KMS unwrap the data key for it.
   */
  kms?: {wrap: WrapDataKey}
  /** Trust this root instead of AWS's (the NSM simulator's, in dev and tests). */
  insecureDevRoot?: TrustedRoot
  /** Accept a debug-mode enclave (development only). */
  allowDebug?: boolean
  /** Largest accepted document age (default 5 min). */
  maxAgeMs?: number
  /** How long a verified attestation is reused (default 10 min). */
  attestationTtlMs?: number
  /** Time to response headers (default 60 s). */
  timeoutMs?: number
  /**
   * Longest wait for the next sealed chunk of a stream, or for a whole body once its headers came
   * (default 120 s: a big model on CPU can take tens of seconds to its first token).
   */
  idleTimeoutMs?: number
  /** Longest time one request may take, from the call to the last chunk (default 30 min). */
  deadlineMs?: number
  /** Largest SSE event accepted (default 64 KiB; a sealed chunk is well under 2 KiB). */
  maxEventBytes?: number
  /** Largest whole answer accepted (default 16 MiB). */
  maxResponseBytes?: number
  tls?: TlsOptions
  /** Padding bucket of sealed requests. */
  padBlock?: number
}

export type ChatRequest = Omit<ChatCompletionRequest, 'stream'>

/**
 * Why the client attested: `initial` (no session held: the first time, or after a failure),
 * `requested` (`attest({fresh: true})`), `expired` (older than `attestationTtlMs`), `rotated`
 * (the enclave answered 421: it no longer holds the key it attested to).
 */
export type AttestationCause = 'initial' | 'requested' | 'expired' | 'rotated'

/** One attestation's outcome, as `onAttestation` listeners get it. */
export type AttestationEvent =
  | {ok: true; cause: AttestationCause; attestation: VerifiedAttestation}
  | {ok: false; cause: AttestationCause; code: string; error: unknown}

export type AttestationListener = (event: AttestationEvent) => void

interface Session {
  config: KeyConfig
  attestation: VerifiedAttestation
  at: number
  /** One sender context made ahead of the next request (sealing then costs one AEAD pass). */
  spare: Promise<PreparedSeal> | null
}

interface ErrorBody {
  error?: {code?: unknown; message?: unknown; context?: unknown; promptTokens?: unknown}
}

export class NleClient {
  private readonly transport: Transport
  private session: Session | null = null
  private attesting: Promise<Session> | null = null
  private readonly limits: ResponseLimits
  private readonly listeners = new Set<{listener: AttestationListener}>()

  constructor(private readonly options: NleClientOptions) {
    this.transport = new Transport(options.target, options.tls)
    this.limits = {
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_LIMITS.idleTimeoutMs,
      deadlineMs: options.deadlineMs ?? DEFAULT_LIMITS.deadlineMs,
      maxEventBytes: options.maxEventBytes ?? DEFAULT_LIMITS.maxEventBytes,
      maxResponseBytes: options.maxResponseBytes ?? DEFAULT_LIMITS.maxResponseBytes,
    }
  }

  /** A client expecting the measurements of a lockfile. */
  static async fromLockfile(lockfile: string, options: Omit<NleClientOptions, 'expectedPcrs'>): Promise<NleClient> {
    const lock = await readLockfile(lockfile)
    return new NleClient({...options, expectedPcrs: lock.measurements})
  }

  /** The verified attestation of the current session (fetched when needed). */
  async attest(options: {fresh?: boolean; signal?: AbortSignal} = {}): Promise<VerifiedAttestation> {
    return (await this.currentSession(options.fresh ? 'requested' : null, options.signal)).attestation
  }

  /**
   * Call `listener` with the outcome each time the client attests or re-attests: the verified
   * attestation, or the failure with its code (none when the caller cancelled). It is called before
   * the call that caused the attestation settles. Returns the function that unsubscribes it. A
   * listener that throws changes nothing of the outcome.
   */
  onAttestation(listener: AttestationListener): () => void {
    const entry = {listener}
    this.listeners.add(entry)
    return () => {
      this.listeners.delete(entry)
    }
  }

  /** `refresh`: attest afresh now, for that cause; null: reuse the session while it is younger than the TTL. */
  private async currentSession(refresh: 'requested' | 'rotated' | null, signal?: AbortSignal): Promise<Session> {
    const ttl = this.options.attestationTtlMs ?? 600_000
    if (refresh === null && this.session && Date.now() - this.session.at < ttl) return this.session
    const cause: AttestationCause = refresh ?? (this.session ? 'expired' : 'initial')
    this.attesting ??= this.fetchSession(signal).then(
      (session) => {
        this.emit({ok: true, cause, attestation: session.attestation})
        return session
      },
      (error: unknown) => {
        if (!signal?.aborted) this.emit({ok: false, cause, code: isNleError(error) ? error.code : 'UNKNOWN', error})
        throw error
      },
    ).finally(() => {
      this.attesting = null
    })
    return this.attesting
  }

  private emit(event: AttestationEvent): void {
    for (const {listener} of [...this.listeners]) {
      try {
        listener(event)
      } catch {
        // The listener's own fault: the attestation's outcome stands.
      }
    }
  }

  /** 'kms' when requests are wrapped through KMS, else 'attested'. */
  get mode(): 'attested' | 'kms' {
    return this.options.kms ? 'kms' : 'attested'
  }

  /**
   * GET /v1/attestation with a fresh random nonce (or the given one) and return the document as
   * it came, unverified (`nle attest verify` verifies it itself; `attest()` does here). The
   * endpoint answers raw COSE_Sign1 bytes, or JSON {"document": "<base64>"}.
   */
  async fetchAttestation(options: {signal?: AbortSignal; nonce?: Uint8Array; timeoutMs?: number} = {}): Promise<{document: Uint8Array; nonce: Uint8Array; url: string}> {
    const nonce = options.nonce ?? new Uint8Array(randomBytes(NONCE_BYTES))
    const path = `${ATTESTATION_PATH}?nonce=${Buffer.from(nonce).toString('hex')}`
    const signal = options.signal
    const res = await this.transport.send({
      method: 'GET',
      path,
      headers: {accept: 'application/cbor, application/json;q=0.5'},
      timeoutMs: options.timeoutMs ?? this.options.timeoutMs ?? 60_000,
      ...(signal ? {signal} : {}),
    })
    if (res.statusCode !== 200) throw await httpFailure(res, 'attestation', this.limits, signal)
    const watch = new RequestWatch(this.limits, signal)
    watch.attach(res)
    let body: Uint8Array
    try {
      body = await readAll(res, MAX_ATTESTATION_BYTES)
    } catch (error) {
      throw watch.expired ?? error
    } finally {
      watch.done()
    }
    let document = body
    if ((res.headers['content-type'] ?? '').includes('json')) {
      let b64: unknown
      try {
        b64 = (JSON.parse(Buffer.from(body).toString('utf8')) as {document?: unknown})?.document
      } catch {
        b64 = undefined
      }
      if (typeof b64 !== 'string') throw clientError('CLIENT_PROTOCOL', 'The attestation endpoint answered JSON without a "document" string.')
      document = new Uint8Array(Buffer.from(b64, 'base64'))
    }
    const t = this.transport.target
    return {document, nonce, url: `${t.url ? t.url.origin + t.url.pathname.replace(/\/+$/, '') : t.display}${path}`}
  }

  private async fetchSession(signal?: AbortSignal): Promise<Session> {
    this.session = null
    if (!this.options.expectedPcrs) {
      throw clientError('CLIENT_NO_MEASUREMENTS', 'No expected measurements: nothing to verify the attestation against.', {hint: 'Pass the lockfile (nle.lock.json) of the enclave image.'})
    }
    const {document, nonce} = await this.fetchAttestation({...(signal ? {signal} : {})})
    // Throws ATTEST_* (PCR mismatch, bad signature, wrong nonce, too old…): nothing is sent then.
    const attestation = await verifyAttestation(document, {
      expectedPcrs: this.options.expectedPcrs,
      expectedNonce: nonce,
      maxAgeMs: this.options.maxAgeMs ?? 300_000,
      ...(this.options.insecureDevRoot ? {insecureDevRoot: this.options.insecureDevRoot} : {}),
      ...(this.options.allowDebug ? {allowDebug: true} : {}),
    })
    const config = decodeKeyConfig(attestation.publicKey)
    const session: Session = {config, attestation, at: Date.now(), spare: null}
    if (!this.options.kms) this.prepareSpare(session)
    this.session = session
    return session
  }

  private prepareSpare(session: Session): void {
    const spare = prepareSeal(session.config)
    spare.catch(() => undefined) // surfaced when used
    session.spare = spare
  }

  private async takeSeal(session: Session): Promise<PreparedSeal> {
    const spare = session.spare
    session.spare = null
    return spare ?? prepareSeal(session.config)
  }

  /**
   * Make the next request's context once this one is answered, while the caller reads the answer
   * (setImmediate: after the response's own callbacks), rather than in front of this request or
   * while it is in flight: it is ~0.3 ms of this thread's time.
   */
  private refillSpare(session: Session): void {
    setImmediate(() => {
      if (session.spare === null && this.session === session) this.prepareSpare(session)
    })
  }

  /** POST one sealed request body to the chat endpoint. */
  private send(message: Uint8Array, contentType: string, stream: boolean | undefined, signal?: AbortSignal): Promise<IncomingMessage> {
    return this.transport.send({
      method: 'POST',
      path: CHAT_PATH,
      headers: {'content-type': contentType, accept: stream ? EVENT_STREAM_TYPE : SEALED_RESPONSE_TYPE},
      body: message,
      timeoutMs: this.options.timeoutMs ?? 60_000,
      ...(signal ? {signal} : {}),
    })
  }

  /**
   * Seal to the verified session's key (none: attest first; attestation failing, nothing is sent)
   * and POST; re-attests once if the enclave no longer holds the key.
   */
  private async post(body: ChatCompletionRequest, signal?: AbortSignal): Promise<{res: IncomingMessage; keys: ResponseKeys; requestId: string}> {
    const plaintext = new TextEncoder().encode(JSON.stringify(body))
    const padding = this.options.padBlock ? {padBlock: this.options.padBlock} : {}
    const kms = this.options.kms
    for (let attempt = 0; ; attempt++) {
      const session = await this.currentSession(attempt > 0 ? 'rotated' : null, signal)
      const sealed = kms ? await sealKmsRequest(session.config, plaintext, kms.wrap, padding) : await (await this.takeSeal(session)).seal(plaintext, padding)
      const sent = this.send(sealed.message, kms ? KMS_REQUEST_TYPE : SEALED_REQUEST_TYPE, body.stream, signal)
      const res = await (kms ? sent : sent.finally(() => this.refillSpare(session)))
      if (res.statusCode === 421 && attempt === 0) {
        await readBounded(res, this.limits, signal).catch(() => undefined)
        continue // the key rotated away or the enclave restarted: the request never opened
      }
      if (res.statusCode !== 200) throw await httpFailure(res, 'chat', this.limits, signal)
      return {res, keys: sealed.responseKeys, requestId: sealed.requestId}
    }
  }

  /** A whole answer. */
  async chat(request: ChatRequest, options: {signal?: AbortSignal} = {}): Promise<ChatCompletion> {
    const watch = new RequestWatch(this.limits, options.signal)
    try {
      const {res, keys} = await this.post({...request, stream: false}, watch.signal)
      watch.attach(res)
      if (!(res.headers['content-type'] ?? '').startsWith(SEALED_RESPONSE_TYPE)) {
        res.destroy()
        throw clientError('CLIENT_PROTOCOL', `Expected ${SEALED_RESPONSE_TYPE}, got ${res.headers['content-type'] ?? 'nothing'}.`)
      }
      const body = await readAll(res, this.limits.maxResponseBytes)
      return parseAnswer<ChatCompletion>(openWholeResponse(keys, body))
    } catch (error) {
      throw failure(error, watch, options.signal)
    } finally {
      watch.done()
    }
  }

  /**
   * A streamed answer: each OpenAI chat.completion.chunk, opened, in order. Only a chunk that opens
   * is progress for the idle timeout; an event larger than `maxEventBytes` or one without data ends
   * the stream.
   */
  async *chatStream(request: ChatRequest, options: {signal?: AbortSignal} = {}): AsyncGenerator<ChatCompletionChunk, void, void> {
    const watch = new RequestWatch(this.limits, options.signal)
    let res: IncomingMessage | undefined
    try {
      const posted = await this.post({...request, stream: true}, watch.signal)
      res = posted.res
      watch.attach(res)
      if (!(res.headers['content-type'] ?? '').startsWith(EVENT_STREAM_TYPE)) {
        throw clientError('CLIENT_PROTOCOL', `Expected ${EVENT_STREAM_TYPE}, got ${res.headers['content-type'] ?? 'nothing'}.`)
      }
      let opener: ResponseOpener | null = null
      const reader = new SseReader(this.limits.maxEventBytes)
      let held: ChatCompletionChunk | null = null
      let started = false
      for await (const part of res as AsyncIterable<Buffer>) {
        let events
        try {
          events = reader.push(part.toString('latin1'))
        } catch (error) {
          throw error instanceof SseTooLarge ? eventTooLarge(error.limit) : error
        }
        for (const {event: name = 'message', data} of events) {
          if (data === '') throw clientError('CLIENT_PROTOCOL', 'The stream carried an event without data.')
          const bytes = new Uint8Array(Buffer.from(data, 'base64'))
          if (opener === null) {
            if (name !== 'nonce' || bytes.length !== RESPONSE_NONCE_BYTES) throw clientError('CLIENT_PROTOCOL', 'The stream did not start with the response nonce.')
            opener = new ResponseOpener(posted.keys, bytes)
            continue
          }
          const chunk = opener.open(bytes)
          const answer = parseAnswer<ChatCompletionChunk>(chunk.plaintext) // a sealed {error} throws here
          watch.progress()
          if (held === null && !chunk.final && !started) {
            // The first chunk (the role) is held until the next one opens: an error the enclave
            // answers before generating (it follows the role chunk, so that it looks like an answer
            // on the wire) then reaches the caller before any chunk, as a whole answer's would.
            held = answer
            started = true
            continue
          }
          watch.pause() // the caller holds the chunk: its time is not the enclave's
          if (held !== null) {
            const first = held
            held = null
            yield first
          }
          yield answer
          watch.progress()
        }
      }
      if (opener === null) throw clientError('CLIENT_PROTOCOL', 'The stream ended before the response nonce.')
      opener.finish() // CHANNEL_TRUNCATED unless the final chunk arrived
    } catch (error) {
      res?.destroy()
      throw failure(error, watch, options.signal)
    } finally {
      watch.done()
    }
  }

  close(): void {
    this.transport.close()
  }
}

function eventTooLarge(limit: number): NleError {
  return clientError('CLIENT_RESPONSE_TOO_LARGE', `An event of the stream is larger than ${limit} bytes.`, {details: {limit, what: 'event'}})
}

/** What a failed request reports: a limit that was hit, the caller's cancel, a typed error, or a broken connection. */
function failure(error: unknown, watch: RequestWatch, caller?: AbortSignal): unknown {
  if (watch.expired) return watch.expired
  if (caller?.aborted) return isNleError(error) && error.code === 'CLIENT_ABORTED' ? error : clientError('CLIENT_ABORTED', 'The request was cancelled.', {cause: error})
  if (isNleError(error)) return error
  return interrupted(error)
}

/** The opened JSON; a sealed `{error}` becomes CLIENT_SERVER_ERROR. */
function parseAnswer<T>(plaintext: Uint8Array): T {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(plaintext).toString('utf8'))
  } catch {
    throw clientError('CLIENT_PROTOCOL', 'The opened answer is not JSON.')
  }
  const err = (value as ErrorBody).error
  if (err && typeof err === 'object') {
    const serverCode = typeof err.code === 'string' ? err.code : 'UNKNOWN'
    if (serverCode === 'ENGINE_PROMPT_TOO_LONG') throw contextTooLong(err)
    throw clientError('CLIENT_SERVER_ERROR', `The enclave answered with an error: ${typeof err.message === 'string' ? err.message : serverCode}`, {details: {serverCode}})
  }
  return value as T
}

/** ENGINE_PROMPT_TOO_LONG, said as what it means for the user (the enclave's numbers when it gave them). */
function contextTooLong(err: NonNullable<ErrorBody['error']>): NleError {
  const count = (v: unknown): number | undefined => (Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : undefined)
  const context = count(err.context)
  const promptTokens = count(err.promptTokens)
  const size = context === undefined ? "the model's context" : `the model's context of ${context} tokens`
  return clientError('CLIENT_CONTEXT_TOO_LONG', `The conversation exceeds ${size}${promptTokens === undefined ? '' : ` (it is ${promptTokens} tokens, with room needed for the answer)`}.`, {
    hint: 'Send a shorter question, or start a new conversation (in `nle chat`, /clear; the chat also drops its oldest turns by itself).',
    details: {serverCode: 'ENGINE_PROMPT_TOO_LONG', ...(context === undefined ? {} : {context}), ...(promptTokens === undefined ? {} : {promptTokens})},
  })
}

function interrupted(cause: unknown): NleError {
  return clientError('CLIENT_STREAM_INTERRUPTED', `The connection broke while the answer was arriving (${(cause as NodeJS.ErrnoException)?.code ?? (cause as Error)?.message ?? 'closed'}).`, {
    cause,
    hint: 'The enclave server stopped or the proxy cut the stream. Retry the request.',
  })
}

/** The most of an attestation answer the client reads (a document is well under 16 KiB; JSON/base64 adds a third). */
const MAX_ATTESTATION_BYTES = 64 * 1024

/** The most of an error body (or of a 421's) the client reads. */
const MAX_ERROR_BODY_BYTES = 64 * 1024

/**
 * Reads a short body (an error's) within the idle timeout and MAX_ERROR_BODY_BYTES: a host that
 * answers an error and then stalls or floods ends the request instead of hanging it.
 */
async function readBounded(res: IncomingMessage, limits: ResponseLimits, signal?: AbortSignal): Promise<Uint8Array> {
  const watch = new RequestWatch(limits, signal)
  watch.attach(res)
  try {
    return await readAll(res, MAX_ERROR_BODY_BYTES)
  } catch (error) {
    throw watch.expired ?? error
  } finally {
    watch.done()
  }
}

async function httpFailure(res: IncomingMessage, what: string, limits: ResponseLimits, signal?: AbortSignal): Promise<NleError> {
  let body: ErrorBody = {}
  let raw: Uint8Array
  try {
    raw = await readBounded(res, limits, signal)
  } catch (error) {
    if (isNleError(error)) return error
    raw = new Uint8Array(0)
  }
  try {
    body = JSON.parse(Buffer.from(raw).toString('utf8')) as ErrorBody
  } catch {
    // not JSON
  }
  const status = res.statusCode ?? 0
  const serverCode = typeof body.error?.code === 'string' ? body.error.code : undefined
  const details = {status, ...(serverCode ? {serverCode} : {}), what}
  // One table says what each code means (src/lib/protocol/status.ts); the status decides only for a code it does not list.
  switch (wireMeaning(status, serverCode)) {
    case 'kms-denied':
      return clientError('CLIENT_REQUEST_REFUSED', 'KMS refused to release the request key to the enclave: the key policy does not admit its measurements.', {
        hint: 'Run `nle policy check` (and `nle policy apply` after a rebuild).',
        details,
      })
    case 'kms-unavailable':
      return clientError('CLIENT_ENCLAVE_UNAVAILABLE', serverCode === 'CHANNEL_KMS_DISABLED' ? 'The enclave server does not have KMS mode enabled.' : 'The enclave could not reach KMS to unwrap the request.', {
        hint: serverCode === 'CHANNEL_KMS_DISABLED' ? 'Use --mode attested, or enable kms in the enclave runtime config.' : "Check the parent's KMS vsock-proxy and credentials endpoint (`nle status`).",
        details,
      })
    case 'busy':
      return clientError('CLIENT_RATE_LIMITED', `The enclave is busy (HTTP ${status}).`, {hint: `Retry after ${res.headers['retry-after'] ?? 'a moment'} s.`, details: {...details, retryAfter: Number(res.headers['retry-after'] ?? 1)}})
    case 'too-large':
      return clientError('CLIENT_REQUEST_TOO_LARGE', `The request is larger than the ${serverCode?.startsWith('SERVER_') ? 'enclave' : 'proxy'} accepts (HTTP ${status}).`, {details})
    case 'timeout':
      return clientError('CLIENT_UPSTREAM_TIMEOUT', `The enclave did not answer in time (HTTP ${status}).`, {details})
    case 'unavailable':
      return clientError('CLIENT_ENCLAVE_UNAVAILABLE', `The enclave is not available (HTTP ${status}${serverCode ? `, ${serverCode}` : ''}).`, {
        hint: 'Is the enclave running? `nle status` shows it.',
        details,
      })
    case 'refused':
      return clientError('CLIENT_REQUEST_REFUSED', `The enclave refused the sealed request: ${serverCode ?? `HTTP ${status}`}.`, {
        hint: serverCode === 'CHANNEL_REQUEST_AUTH_FAILED' ? 'The request was altered on the way (or sealed to another key).' : undefined,
        details,
      })
    default:
      return clientError('CLIENT_HTTP_ERROR', `Unexpected HTTP ${status} from the ${what} endpoint${serverCode ? ` (${serverCode})` : ''}.`, {details})
  }
}
