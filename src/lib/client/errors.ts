/** Error codes of the client library (attestation refusals keep their ATTEST_* codes). */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type ClientErrorCode =
  /** The target is neither unix:/path nor an http(s) URL. */
  | 'CLIENT_BAD_TARGET'
  /** The proxy or enclave socket could not be reached. */
  | 'CLIENT_UNREACHABLE'
  /** 429: the proxy (or the enclave's queue) is at its concurrency limit. */
  | 'CLIENT_RATE_LIMITED'
  /** 413: the sealed request is larger than the proxy accepts. */
  | 'CLIENT_REQUEST_TOO_LARGE'
  /**
   * The answer did not come in time: the proxy said so (HTTP 504), or a limit of this client was hit
   * (details.phase: headers, idle — no sealed chunk for too long —, or the overall deadline).
   */
  | 'CLIENT_UPSTREAM_TIMEOUT'
  /** 502/503: the proxy could not reach any enclave, or the enclave is shutting down. */
  | 'CLIENT_ENCLAVE_UNAVAILABLE'
  /** The enclave refused the sealed request (details.serverCode: CHANNEL_REPLAY, CHANNEL_REQUEST_AUTH_FAILED, …). */
  | 'CLIENT_REQUEST_REFUSED'
  /** Any other unexpected HTTP status. */
  | 'CLIENT_HTTP_ERROR'
  /** The connection broke while the answer was streaming. */
  | 'CLIENT_STREAM_INTERRUPTED'
  /** The enclave answered with a sealed error (details.serverCode). */
  | 'CLIENT_SERVER_ERROR'
  /** The answer is not in the shape of this protocol. */
  | 'CLIENT_PROTOCOL'
  /** An SSE event or a whole answer is larger than this client accepts (details.what, details.limit). */
  | 'CLIENT_RESPONSE_TOO_LARGE'
  /** The request was cancelled by the caller. */
  | 'CLIENT_ABORTED'
  /** No expected measurements to verify the attestation against: nothing is sent (both modes). */
  | 'CLIENT_NO_MEASUREMENTS'
  /**
   * The conversation is longer than the model's context (details.serverCode ENGINE_PROMPT_TOO_LONG,
   * details.context and details.promptTokens when the enclave said them).
   */
  | 'CLIENT_CONTEXT_TOO_LONG'
  /** The proxy's TLS certificate is not trusted (self-signed, unknown CA, expired, wrong name): details.tlsCode. */
  | 'CLIENT_TLS_UNTRUSTED'
  /** A file the client was told to read (--ca, --dev-root) cannot be read (details.file). */
  | 'CLIENT_FILE_UNREADABLE'

const EXIT: Record<ClientErrorCode, ExitCode> = {
  CLIENT_BAD_TARGET: ExitCode.USAGE,
  CLIENT_UNREACHABLE: ExitCode.NETWORK,
  CLIENT_RATE_LIMITED: ExitCode.NETWORK,
  CLIENT_REQUEST_TOO_LARGE: ExitCode.USAGE,
  CLIENT_UPSTREAM_TIMEOUT: ExitCode.NETWORK,
  CLIENT_ENCLAVE_UNAVAILABLE: ExitCode.NETWORK,
  CLIENT_REQUEST_REFUSED: ExitCode.VERIFY,
  CLIENT_HTTP_ERROR: ExitCode.NETWORK,
  CLIENT_STREAM_INTERRUPTED: ExitCode.NETWORK,
  CLIENT_SERVER_ERROR: ExitCode.CHECK_FAILED,
  CLIENT_PROTOCOL: ExitCode.NETWORK,
  CLIENT_RESPONSE_TOO_LARGE: ExitCode.NETWORK,
  CLIENT_ABORTED: ExitCode.CHECK_FAILED,
  CLIENT_NO_MEASUREMENTS: ExitCode.USAGE,
  CLIENT_CONTEXT_TOO_LONG: ExitCode.USAGE,
  CLIENT_TLS_UNTRUSTED: ExitCode.VERIFY,
  CLIENT_FILE_UNREADABLE: ExitCode.IO,
}

export function clientError(code: ClientErrorCode, message: string, options: NleErrorOptions = {}): NleError<ClientErrorCode> {
  return new NleError(code, message, {exitCode: EXIT[code], ...options})
}
