/**
 * Error codes of the gateway, and the one mapping from any failure (client, channel, attestation,
 * gateway) to the HTTP status and OpenAI error body an OpenAI client sees.
 *
 * Messages never carry a question or an answer: they come from nle errors, which never do.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors, isNleError} from '../errors.js'

const {USAGE, IO, CONFIG} = ExitCode

/** HTTP refusals answered to a gateway client: the process does not exit with them. */
const ANSWERED = 'This is answered to the HTTP client (docs/gateway.md lists the statuses); fix the request'

export const GATEWAY_ERRORS = defineErrors({
  GATEWAY_LISTEN_INVALID: {exit: USAGE, summary: '--listen is not host:port or a port.', hint: 'Use --listen 127.0.0.1:8787 (or just 8787)'},
  GATEWAY_LISTEN_NOT_LOOPBACK: {exit: USAGE, summary: '--listen names an address that is not loopback: the gateway serves plaintext, so never off the machine.', hint: 'Listen on 127.0.0.1 or ::1, or serve a Unix socket with --socket PATH'},
  GATEWAY_LISTEN_FAILED: {exit: IO, summary: 'The gateway\'s listen socket could not be opened.', hint: 'Check the address or socket path; for a port in use see ADDRESS_IN_USE'},
  GATEWAY_NO_UPSTREAM: {exit: USAGE, summary: 'No --upstream and no `nle dev` stack running in this folder.', hint: 'Start `nle dev` in this folder, or pass --upstream https://host:port (or unix:/path.sock)'},
  GATEWAY_BAD_REQUEST: {exit: USAGE, summary: 'HTTP 400: the request is not one the gateway accepts (bad JSON, unsupported field).', hint: ANSWERED},
  GATEWAY_UNSUPPORTED_PARAMETER: {exit: USAGE, summary: 'HTTP 400 `unsupported_parameter`: a parameter the gateway cannot honour (response_format json_schema, tools, logprobs, an image part, an unknown parameter), refused rather than ignored.', hint: 'Drop the parameter named in `param`; docs/gateway.md lists what the gateway honours'},
  GATEWAY_CONTEXT_LENGTH_EXCEEDED: {exit: USAGE, summary: 'HTTP 400 `context_length_exceeded`: the prompt is longer than the model\'s context.', hint: 'Shorten the conversation (drop the oldest messages); max_tokens does not help: the answer gets what the prompt leaves of the context'},
  GATEWAY_REQUEST_TOO_LARGE: {exit: USAGE, summary: 'HTTP 413: the request body is larger than the gateway accepts.', hint: ANSWERED},
  GATEWAY_NOT_FOUND: {exit: USAGE, summary: 'HTTP 404: no such endpoint.', hint: 'The gateway serves /v1/chat/completions, /v1/completions, /v1/responses and /v1/models'},
  GATEWAY_METHOD_NOT_ALLOWED: {exit: USAGE, summary: 'HTTP 405: the endpoint does not accept this method.', hint: ANSWERED},
  GATEWAY_FORBIDDEN_ORIGIN: {exit: USAGE, summary: 'HTTP 403: a Host header that is not loopback (DNS rebinding), or an Origin not allowed with --allow-origin.', hint: 'Call the gateway by its loopback address; allow a web page\'s origin with --allow-origin'},
  GATEWAY_UNAUTHORIZED: {exit: USAGE, summary: 'HTTP 401: no `Authorization: Bearer <token>`, or another token.', hint: 'Use the gateway\'s token (printed at start, stored in .nle/gateway.token) as the API key'},
  GATEWAY_UNSUPPORTED_MEDIA_TYPE: {exit: USAGE, summary: 'HTTP 415: a POST whose Content-Type is not application/json.', hint: 'Send JSON with Content-Type: application/json'},
  GATEWAY_TOKEN_REQUIRED: {exit: USAGE, summary: 'A TCP listener without an access token (only a Unix socket may go without).', hint: 'Drop --no-token, or serve a 0600 Unix socket with --socket PATH'},
  GATEWAY_TOKEN_FILE_UNSAFE: {exit: CONFIG, summary: 'The token file is not this user\'s alone (owner, mode 0600, a regular file), or cannot be read/written.', hint: 'Fix it with `chmod 600` (and chown) or delete it; the gateway writes a new one'},
})

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS

export function gatewayError(code: GatewayErrorCode, message: string, options: NleErrorOptions = {}): NleError<GatewayErrorCode> {
  return new NleError(code, message, options)
}

/**
 * OpenAI's error body. `code` is the nle error code (ATTEST_PCR_MISMATCH, CLIENT_RATE_LIMITED, …),
 * except where OpenAI has a code of its own that clients act on: `context_length_exceeded`,
 * `unsupported_parameter`, `model_not_found`. `param` names the request field at fault, or null.
 */
export interface OpenAiErrorBody {
  error: {message: string; type: string; code: string; param: string | null}
}

/** The server code the enclave answers when the prompt does not fit the model's context. */
export const PROMPT_TOO_LONG_SERVER_CODE = 'ENGINE_PROMPT_TOO_LONG'

export interface HttpFailure {
  status: number
  body: OpenAiErrorBody
  /** Seconds, passed through from the proxy's 429. */
  retryAfter?: string
  /** False when retrying cannot help (attestation refused, bad request): OpenAI SDKs honour `x-should-retry`. */
  shouldRetry: boolean
  /** The failure says the upstream connection is gone: re-attest before the next request. */
  reconnect: boolean
}

/** Status codes the gateway answers (documented in docs/gateway.md). */
export const STATUS = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  /** The proxy (or enclave socket) cannot be reached, or the answer was broken/altered in transit. */
  BAD_GATEWAY: 502,
  /** Attestation failed (never forwarded), or the enclave behind the proxy is down / draining. */
  UNAVAILABLE: 503,
  /** The enclave did not answer in time. */
  TIMEOUT: 504,
} as const

function failure(status: number, type: string, code: string, message: string, extra: Partial<HttpFailure> & {param?: string | null} = {}): HttpFailure {
  const {param = null, ...rest} = extra
  return {status, body: {error: {message, type, code, param}}, shouldRetry: status >= 500 || status === 429, reconnect: false, ...rest}
}

const paramOf = (details: Record<string, unknown>): string | null => (typeof details.param === 'string' ? details.param : null)

/** Any error → what the OpenAI client sees. */
export function toHttpFailure(error: unknown): HttpFailure {
  if (!isNleError(error)) return failure(STATUS.INTERNAL, 'server_error', 'GATEWAY_INTERNAL', 'The gateway failed to handle the request.')
  const {message} = error
  const code: string = error.code
  const details = error.details ?? {}
  if (code.startsWith('ATTEST_')) {
    return failure(STATUS.UNAVAILABLE, 'attestation_error', code, `The enclave's attestation did not verify; nothing was sent to it. ${message}`, {shouldRetry: false, reconnect: true})
  }
  // The prompt does not fit the context: whatever client code carries it (CLIENT_SERVER_ERROR, or a
  // dedicated one), the enclave's code is in details.serverCode. A 400, never a 500 (SDKs retry those).
  if (code === 'GATEWAY_CONTEXT_LENGTH_EXCEEDED' || details.serverCode === PROMPT_TOO_LONG_SERVER_CODE) {
    return failure(STATUS.BAD_REQUEST, 'invalid_request_error', 'context_length_exceeded', "The prompt is longer than this model's context window: shorten the messages.", {param: paramOf(details) ?? 'messages', shouldRetry: false})
  }
  switch (code) {
    case 'GATEWAY_BAD_REQUEST':
      return failure(STATUS.BAD_REQUEST, 'invalid_request_error', code, message, {param: paramOf(details)})
    case 'GATEWAY_UNSUPPORTED_PARAMETER':
      return failure(STATUS.BAD_REQUEST, 'invalid_request_error', 'unsupported_parameter', message, {param: paramOf(details)})
    case 'GATEWAY_REQUEST_TOO_LARGE':
    case 'CLIENT_REQUEST_TOO_LARGE':
      return failure(STATUS.TOO_LARGE, 'invalid_request_error', code, message)
    case 'GATEWAY_NOT_FOUND':
      if (details.model !== undefined) return failure(STATUS.NOT_FOUND, 'invalid_request_error', 'model_not_found', message, {param: 'model'})
      return failure(STATUS.NOT_FOUND, 'invalid_request_error', code, message)
    case 'GATEWAY_METHOD_NOT_ALLOWED':
      return failure(STATUS.METHOD_NOT_ALLOWED, 'invalid_request_error', code, message)
    case 'GATEWAY_FORBIDDEN_ORIGIN':
      return failure(STATUS.FORBIDDEN, 'invalid_request_error', code, message)
    case 'GATEWAY_UNAUTHORIZED':
      return failure(STATUS.UNAUTHORIZED, 'invalid_request_error', code, message)
    case 'GATEWAY_UNSUPPORTED_MEDIA_TYPE':
      return failure(STATUS.UNSUPPORTED_MEDIA_TYPE, 'invalid_request_error', code, message)
    case 'CLIENT_RATE_LIMITED': {
      const retryAfter = details.retryAfter
      return failure(STATUS.RATE_LIMITED, 'rate_limit_error', code, message, {
        ...(typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter >= 0 ? {retryAfter: String(retryAfter)} : {retryAfter: '1'}),
      })
    }
    case 'CLIENT_UPSTREAM_TIMEOUT':
      return failure(STATUS.TIMEOUT, 'server_error', code, message, {reconnect: true})
    case 'CLIENT_UNREACHABLE':
      if (details.errno === 'ETIMEDOUT') return failure(STATUS.TIMEOUT, 'server_error', 'CLIENT_UPSTREAM_TIMEOUT', message, {reconnect: true})
      return failure(STATUS.BAD_GATEWAY, 'server_error', code, message, {reconnect: true})
    case 'CLIENT_ENCLAVE_UNAVAILABLE':
      return failure(STATUS.UNAVAILABLE, 'server_error', code, message, {reconnect: true})
    case 'CLIENT_STREAM_INTERRUPTED':
      return failure(STATUS.BAD_GATEWAY, 'server_error', code, message, {reconnect: true})
    case 'CLIENT_SERVER_ERROR': {
      const serverCode = typeof details.serverCode === 'string' ? details.serverCode : 'UNKNOWN'
      if (serverCode === 'SERVER_BAD_REQUEST') return failure(STATUS.BAD_REQUEST, 'invalid_request_error', serverCode, message)
      if (serverCode === 'SERVER_BUSY') return failure(STATUS.RATE_LIMITED, 'rate_limit_error', serverCode, message, {retryAfter: '1'})
      return failure(STATUS.INTERNAL, 'server_error', serverCode, message)
    }
    case 'KMS_ACCESS_DENIED':
      // KMS mode: the caller's own identity may not Encrypt under the key.
      return failure(STATUS.FORBIDDEN, 'permission_error', code, `KMS refused to wrap the request key for this gateway's AWS identity. ${message}`, {shouldRetry: false})
    case 'KMS_KEY_NOT_FOUND':
    case 'KMS_AWS_ERROR':
      return failure(STATUS.BAD_GATEWAY, 'server_error', code, `KMS could not wrap the request key. ${message}`)
    case 'CLIENT_REQUEST_REFUSED':
      // KMS mode: the key policy does not admit the enclave's measurements.
      if (details.serverCode === 'CHANNEL_KMS_DENIED') return failure(STATUS.FORBIDDEN, 'permission_error', 'CHANNEL_KMS_DENIED', message, {shouldRetry: false})
      return failure(STATUS.BAD_GATEWAY, 'server_error', code, message)
    case 'CLIENT_ABORTED':
      // The caller left; nobody reads this.
      return failure(499, 'invalid_request_error', code, message, {shouldRetry: false})
    default:
      // CLIENT_REQUEST_REFUSED, CLIENT_PROTOCOL, CLIENT_HTTP_ERROR, CHANNEL_* (an answer altered or
      // cut short in transit): the upstream answered wrongly.
      if (code.startsWith('CLIENT_') || code.startsWith('CHANNEL_')) return failure(STATUS.BAD_GATEWAY, 'server_error', code, message, {reconnect: code !== 'CLIENT_REQUEST_REFUSED'})
      return failure(STATUS.INTERNAL, 'server_error', code, message)
  }
}
