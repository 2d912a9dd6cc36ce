/** Error codes of the parent proxy (answered as JSON bodies, and thrown at start-up). */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type ProxyErrorCode =
  /** No route of the enclave API at this path. */
  | 'PROXY_NOT_FOUND'
  /** 413: the request body is larger than proxy.bodyLimitBytes. */
  | 'PROXY_BODY_TOO_LARGE'
  /** 429: proxy.concurrency requests are in flight and the wait queue is full. */
  | 'PROXY_BUSY'
  /** 502: no enclave socket accepted the connection. */
  | 'PROXY_UPSTREAM_UNAVAILABLE'
  /** 504: the enclave did not answer within proxy.upstreamTimeoutMs. */
  | 'PROXY_UPSTREAM_TIMEOUT'
  /** 503: the proxy is shutting down. */
  | 'PROXY_DRAINING'
  /** No upstream socket was configured. */
  | 'PROXY_NO_UPSTREAM'
  /** The TLS certificate or key could not be read. */
  | 'PROXY_TLS_INVALID'
  /** The listening address could not be bound. */
  | 'PROXY_LISTEN_FAILED'
  /** 503 on the credentials endpoint: the credential source (env, IMDS) gave nothing usable. */
  | 'PROXY_CREDENTIALS_UNAVAILABLE'

const EXIT: Record<ProxyErrorCode, ExitCode> = {
  PROXY_NOT_FOUND: ExitCode.USAGE,
  PROXY_BODY_TOO_LARGE: ExitCode.USAGE,
  PROXY_BUSY: ExitCode.NETWORK,
  PROXY_UPSTREAM_UNAVAILABLE: ExitCode.NETWORK,
  PROXY_UPSTREAM_TIMEOUT: ExitCode.NETWORK,
  PROXY_DRAINING: ExitCode.NETWORK,
  PROXY_NO_UPSTREAM: ExitCode.CONFIG,
  PROXY_TLS_INVALID: ExitCode.CONFIG,
  PROXY_LISTEN_FAILED: ExitCode.IO,
  PROXY_CREDENTIALS_UNAVAILABLE: ExitCode.NETWORK,
}

export function proxyError(code: ProxyErrorCode, message: string, options: NleErrorOptions = {}): NleError<ProxyErrorCode> {
  return new NleError(code, message, {exitCode: EXIT[code], ...options})
}
