/**
 * HTTP/1.1 to an nle endpoint over a Unix socket (`unix:/run/nle/app.sock`, or an absolute path)
 * or TCP (`http://…`, `https://…` with an optional pinned CA for the proxy's certificate).
 */
import {Agent as HttpAgent, type IncomingMessage, request as httpRequest} from 'node:http'
import {Agent as HttpsAgent, request as httpsRequest} from 'node:https'

import {tlsCertificateError} from '../errors.js'
import {clientError} from './errors.js'
import {timeoutError} from './limits.js'
import {readBody} from '../net/body.js'

export interface TlsOptions {
  /** PEM CA (or the self-signed certificate) to trust for the proxy. */
  ca?: string
  /** Default true. */
  rejectUnauthorized?: boolean
  servername?: string
}

export interface Target {
  kind: 'unix' | 'http' | 'https'
  socketPath?: string
  url?: URL
  /** For messages. */
  display: string
}

export function parseTarget(target: string): Target {
  if (target.startsWith('unix:')) return {kind: 'unix', socketPath: target.slice(5), display: target}
  if (target.startsWith('/')) return {kind: 'unix', socketPath: target, display: `unix:${target}`}
  let url: URL
  try {
    url = new URL(target)
  } catch {
    throw clientError('CLIENT_BAD_TARGET', `Not a target: ${JSON.stringify(target)}.`, {hint: 'Use unix:/path/to.sock or an http(s):// URL of the proxy.'})
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw clientError('CLIENT_BAD_TARGET', `Unsupported scheme ${url.protocol}.`, {hint: 'Use unix:, http: or https:.'})
  return {kind: url.protocol === 'https:' ? 'https' : 'http', url, display: url.origin}
}

export interface SendOptions {
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string | number>
  body?: Uint8Array
  signal?: AbortSignal
  /** Time to the response headers. */
  timeoutMs: number
}

export class Transport {
  readonly target: Target
  private readonly agent: HttpAgent | HttpsAgent

  constructor(target: string, private readonly tls: TlsOptions = {}) {
    this.target = parseTarget(target)
    const agentOptions = {keepAlive: true, maxSockets: 64}
    this.agent = this.target.kind === 'https' ? new HttpsAgent({...agentOptions, ...(tls.ca ? {ca: tls.ca} : {}), rejectUnauthorized: tls.rejectUnauthorized ?? true}) : new HttpAgent(agentOptions)
  }

  /**
   * Resolves with the response (body not yet read). Network failures are CLIENT_UNREACHABLE; no
   * headers within `timeoutMs` is CLIENT_UPSTREAM_TIMEOUT (phase headers).
   */
  send(options: SendOptions): Promise<IncomingMessage> {
    const t = this.target
    const base = t.url ? t.url.pathname.replace(/\/+$/, '') : ''
    const common = {
      method: options.method,
      path: base + options.path,
      headers: {...options.headers, ...(options.body ? {'content-length': options.body.length} : {})},
      agent: this.agent,
      ...(options.signal ? {signal: options.signal} : {}),
    }
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req =
        t.kind === 'unix'
          ? httpRequest({...common, socketPath: t.socketPath})
          : (t.kind === 'https' ? httpsRequest : httpRequest)({
              ...common,
              hostname: t.url!.hostname.replace(/^\[|\]$/g, ''),
              port: t.url!.port || (t.kind === 'https' ? 443 : 80),
              ...(t.kind === 'https' && this.tls.servername ? {servername: this.tls.servername} : {}),
            })
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        req.destroy(Object.assign(new Error('timed out waiting for the response'), {code: 'ETIMEDOUT'}))
      }, options.timeoutMs)
      req.once('response', (res) => {
        clearTimeout(timer)
        resolve(res)
      })
      req.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        if (options.signal?.aborted) {
          reject(clientError('CLIENT_ABORTED', 'The request was cancelled.', {cause: error}))
          return
        }
        if (timedOut) {
          reject(timeoutError('headers', options.timeoutMs))
          return
        }
        // A refused certificate is a trust problem, not a stopped proxy: said so, with its own code.
        const tlsCode = tlsCertificateError(error)
        if (tlsCode !== undefined) {
          reject(
            clientError('CLIENT_TLS_UNTRUSTED', `${t.display} presented a TLS certificate this client does not trust (${tlsCode}).`, {
              cause: error,
              hint: tlsCode === 'ERR_TLS_CERT_ALTNAME_INVALID' ? 'The certificate is for another host name: use the name it was issued for.' : "Pass the proxy's certificate (or its CA) with --ca PEM; `nle dev` publishes its own in .nle/dev/.",
              details: {target: t.display, tlsCode},
            }),
          )
          return
        }
        reject(
          clientError('CLIENT_UNREACHABLE', `Cannot reach ${t.display}: ${error.code ?? error.message}.`, {
            cause: error,
            details: {target: t.display, errno: error.code},
          }),
        )
      })
      req.end(options.body ? Buffer.from(options.body.buffer, options.body.byteOffset, options.body.byteLength) : undefined)
    })
  }

  close(): void {
    this.agent.destroy()
  }
}

/** The whole response body, at most `limit` bytes (else CLIENT_RESPONSE_TOO_LARGE, and the connection is dropped). */
export async function readAll(res: IncomingMessage, limit = 64 * 1024 * 1024): Promise<Uint8Array> {
  const outcome = await readBody(res, {limit, onRefused: 'destroy'})
  if (outcome.ok) return new Uint8Array(outcome.body.buffer, outcome.body.byteOffset, outcome.body.length)
  if (outcome.reason === 'too-large') throw clientError('CLIENT_RESPONSE_TOO_LARGE', `The response is larger than ${limit} bytes.`, {details: {limit, what: 'body'}})
  // Closed before the end (the connection broke mid-body): as the async iterator reports it.
  throw Object.assign(new Error('Premature close'), {code: 'ERR_STREAM_PREMATURE_CLOSE'})
}
