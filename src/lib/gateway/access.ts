/**
 * Who may ask the gateway. Another local user can reach a loopback port, and a web page can make
 * the browser post to one. So every request needs `Authorization: Bearer <token>` (the OpenAI SDKs
 * send the API key so); only a Unix-socket listener (mode 0600) may go without. A request with an
 * Origin is refused unless that origin was allowed by name (`Origin: null` never is); a POST must be
 * application/json (forms and text/plain posts, which a page may send without a preflight, get 415).
 */
import {timingSafeEqual} from 'node:crypto'
import type {IncomingMessage, ServerResponse} from 'node:http'

import {gatewayError} from './errors.js'
import {isLoopbackHost} from './listen.js'

export interface AccessOptions {
  /** The bearer token every request must carry, or null for none (only with `unixSocket`). */
  token: string | null
  /** The gateway listens on a Unix socket (mode 0600) rather than TCP. */
  unixSocket: boolean
  /** Browser origins (scheme://host[:port]) that may call the gateway. */
  allowOrigins: readonly string[]
}

export class AccessPolicy {
  private readonly token: Buffer | null
  private readonly origins: ReadonlySet<string>

  /** Throws GATEWAY_TOKEN_REQUIRED for no token on TCP, or a token shorter than 16 characters. */
  constructor(o: AccessOptions) {
    if (o.token === null && !o.unixSocket) {
      throw gatewayError('GATEWAY_TOKEN_REQUIRED', 'A gateway on a TCP port needs an access token: any local user can connect to a loopback port.', {hint: 'Keep the token (the default), or listen on a Unix socket (--socket PATH) to go without one.'})
    }
    if (o.token !== null && o.token.length < 16) throw gatewayError('GATEWAY_TOKEN_REQUIRED', 'The access token is shorter than 16 characters.')
    this.token = o.token === null ? null : Buffer.from(o.token)
    this.origins = new Set(o.allowOrigins.map((origin) => origin.replace(/\/$/, '').toLowerCase()))
  }

  /**
   * Browsers: a rebound name (Host) must not reach the plaintext endpoint, nor a page (Origin) that
   * was not allowed by name — loopback pages included (any local program can serve one), and
   * `Origin: null` (sandboxed frames, file: pages) always. An allowed origin gets CORS headers.
   */
  checkOrigin(req: IncomingMessage, res: ServerResponse): void {
    const host = req.headers.host
    const hostname = host ? host.replace(/:\d+$/, '') : ''
    if (host !== undefined && !isLoopbackHost(hostname)) throw gatewayError('GATEWAY_FORBIDDEN_ORIGIN', 'The Host header is not a loopback address.')
    const origin = req.headers.origin
    if (origin === undefined) return
    if (origin === 'null' || !this.origins.has(origin.toLowerCase())) {
      throw gatewayError('GATEWAY_FORBIDDEN_ORIGIN', 'Requests from web pages are refused unless their origin is allowed (--allow-origin).')
    }
    res.setHeader('access-control-allow-origin', origin)
    res.setHeader('vary', 'origin')
  }

  /** `Authorization: Bearer <token>`, compared in constant time. */
  checkToken(req: IncomingMessage): void {
    if (this.token === null) return
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
    const given = m ? Buffer.from(m[1]!) : Buffer.alloc(0)
    if (given.length !== this.token.length || !timingSafeEqual(given, this.token)) {
      throw gatewayError('GATEWAY_UNAUTHORIZED', 'Missing or wrong access token: send Authorization: Bearer <token> (the OpenAI API key).')
    }
  }
}

/** application/json (any parameters) only: what a page can post without a CORS preflight is not. */
export function checkJson(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') throw gatewayError('GATEWAY_UNSUPPORTED_MEDIA_TYPE', 'The request body must be application/json.')
}
