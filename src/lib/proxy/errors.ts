/** Error codes of the parent proxy (answered as JSON bodies, and thrown at start-up). */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {USAGE, NETWORK, CONFIG, IO, INTERNAL} = ExitCode

export const PROXY_ERRORS = defineErrors({
  PROXY_NOT_FOUND: {exit: USAGE, summary: 'HTTP 404: no route of the enclave API at this path.', hint: 'The proxy serves /v1/attestation, /v1/chat/completions and /healthz; check the client\'s URL'},
  PROXY_METHOD_NOT_ALLOWED: {exit: USAGE, summary: 'HTTP 405: that route takes another method (GET /v1/attestation and /healthz, POST /v1/chat/completions).', hint: 'Use the route\'s method; nle\'s client does'},
  PROXY_BODY_TOO_LARGE: {exit: USAGE, summary: 'HTTP 413: the request body is larger than proxy.bodyLimitBytes.', hint: 'Shorten the request, or raise proxy.bodyLimitBytes'},
  PROXY_BUSY: {exit: NETWORK, summary: 'HTTP 429: proxy.concurrency requests are in flight and the wait queue is full.', hint: 'Retry after the Retry-After delay, or raise proxy.concurrency / proxy.queue'},
  PROXY_UPSTREAM_UNAVAILABLE: {exit: NETWORK, summary: 'HTTP 502: no enclave socket accepted the connection.', hint: 'Check the enclave and its vsock bridge (`nle status`)'},
  PROXY_UPSTREAM_TIMEOUT: {exit: NETWORK, summary: 'HTTP 504: the enclave did not answer within proxy.upstreamTimeoutMs.', hint: 'Raise proxy.upstreamTimeoutMs for a large model, or lower the answer\'s max tokens'},
  PROXY_DRAINING: {exit: NETWORK, summary: 'HTTP 503: the proxy is shutting down.', hint: 'Retry once the proxy has restarted'},
  PROXY_NO_UPSTREAM: {exit: CONFIG, summary: 'No upstream socket was configured.', hint: 'Pass --upstream unix:/path.sock or set proxy.upstreams in nle.yaml'},
  PROXY_TLS_INVALID: {exit: CONFIG, summary: 'The TLS certificate or key could not be read.', hint: 'Check proxy.tls.cert and proxy.tls.key (PEM files), or use --self-signed for a test'},
  PROXY_LISTEN_FAILED: {exit: IO, summary: 'The proxy\'s listening address or socket could not be bound.', hint: 'Check --host/--port (proxy.host, proxy.port) and the socket\'s folder; for a port in use see ADDRESS_IN_USE'},
  PROXY_CREDENTIALS_UNAVAILABLE: {exit: NETWORK, summary: 'HTTP 503 on the credentials endpoint: the credential source (env, IMDS) gave nothing usable.', hint: 'Give the host AWS credentials: an instance role (imds) or AWS_* variables (env)'},
  PROXY_USAGE: {exit: USAGE, summary: 'A flag or setting of the proxy is invalid.', hint: 'Run `nle proxy --help` for usage'},
  PROXY_INTERNAL: {exit: INTERNAL, summary: 'The proxy failed unexpectedly (at start, or HTTP 500 on a request).', hint: 'This is a bug in nle: re-run with --verbose and report the output'},
})

export type ProxyErrorCode = keyof typeof PROXY_ERRORS

export function proxyError(code: ProxyErrorCode, message: string, options: NleErrorOptions = {}): NleError<ProxyErrorCode> {
  return new NleError(code, message, options)
}
