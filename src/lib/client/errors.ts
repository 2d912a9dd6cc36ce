/** Error codes of the client library (attestation refusals keep their ATTEST_* codes). */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {USAGE, NETWORK, VERIFY, CHECK_FAILED, CONFIG, IO} = ExitCode

export const CLIENT_ERRORS = defineErrors({
  CLIENT_BAD_TARGET: {exit: USAGE, summary: 'The target is neither unix:/path nor an http(s) URL.', hint: 'Pass --url https://host:port or unix:/absolute/path.sock'},
  CLIENT_UNREACHABLE: {exit: NETWORK, summary: 'The proxy or enclave socket could not be reached.', hint: 'Is the proxy (or the enclave server) running and listening there? `nle status` or `nle dev` shows the address'},
  CLIENT_RATE_LIMITED: {exit: NETWORK, summary: 'HTTP 429: the proxy (or the enclave\'s queue) is at its concurrency limit.', hint: 'Retry after a moment, or raise proxy.concurrency / proxy.queue'},
  CLIENT_REQUEST_TOO_LARGE: {exit: USAGE, summary: 'HTTP 413: the sealed request is larger than the proxy accepts.', hint: 'Shorten the conversation, or raise proxy.bodyLimitBytes'},
  CLIENT_UPSTREAM_TIMEOUT: {exit: NETWORK, summary: 'The answer did not come in time (the proxy said so, or a limit of this client was hit).', hint: 'A large model on few CPUs is slow: raise --timeout (or proxy.upstreamTimeoutMs), or lower --max-tokens'},
  CLIENT_ENCLAVE_UNAVAILABLE: {exit: NETWORK, summary: 'HTTP 502/503: the proxy could not reach any enclave, or the enclave is shutting down.', hint: 'Check the enclave with `nle status` (or restart `nle dev`) and retry'},
  CLIENT_REQUEST_REFUSED: {exit: VERIFY, summary: 'The enclave refused the sealed request (details.serverCode says why).', hint: 'See details.serverCode in --json; attest again and retry'},
  CLIENT_HTTP_ERROR: {exit: NETWORK, summary: 'The proxy answered with an unexpected HTTP status.', hint: 'Check that the URL names an nle proxy (not another web server) and see its log'},
  CLIENT_STREAM_INTERRUPTED: {exit: NETWORK, summary: 'The connection broke while the answer was streaming.', hint: 'Retry; if it repeats, check the proxy\'s log and its upstream timeout'},
  CLIENT_SERVER_ERROR: {exit: CHECK_FAILED, summary: 'The enclave answered with a sealed error (details.serverCode).', hint: 'See details.serverCode in --json and the enclave\'s log (`nle console` in debug mode, or `nle dev --logs`)'},
  CLIENT_PROTOCOL: {exit: NETWORK, summary: 'The answer is not in the shape of this protocol.', hint: 'Client and proxy/enclave must run the same nle release; check that the URL names an nle proxy'},
  CLIENT_RESPONSE_TOO_LARGE: {exit: NETWORK, summary: 'An SSE event or a whole answer is larger than this client accepts.', hint: 'Lower --max-tokens; details.limit names the limit that was hit'},
  CLIENT_ABORTED: {exit: CHECK_FAILED, summary: 'The request was cancelled by the caller.', hint: 'Nothing to do: the request was cancelled on purpose'},
  CLIENT_NO_MEASUREMENTS: {exit: USAGE, summary: 'No expected measurements to verify the attestation against: nothing is sent.', hint: 'Run in the project folder (its nle.lock.json), pass --lockfile, or start `nle dev`'},
  CLIENT_CONTEXT_TOO_LONG: {exit: USAGE, summary: 'The conversation is longer than the model\'s context (details.context and details.promptTokens when the enclave said them).', hint: 'Shorten the question, or start a new conversation (/clear in `nle chat`; the chat also drops its oldest turns by itself); --max-tokens does not help: the answer gets what the prompt leaves of the context'},
  CLIENT_TLS_UNTRUSTED: {exit: VERIFY, summary: 'The proxy\'s TLS certificate is not trusted (self-signed, unknown CA, expired or another name): details.tlsCode.', hint: 'Pass the CA that signed it with --ca (`nle dev` prints its CA file), or fix the certificate'},
  CLIENT_FILE_UNREADABLE: {exit: IO, summary: 'A file the client was told to read (--ca, --dev-root) cannot be read (details.file).', hint: 'Check the path and its permissions'},
  CLIENT_KMS_UNCONFIGURED: {exit: CONFIG, summary: 'KMS mode needs a KMS key (and, with `nle dev`, its local KMS identity) that is not configured.', hint: 'Set kms.keyId in nle.yaml or pass --kms-key-id, or use --mode attested'},
})

export type ClientErrorCode = keyof typeof CLIENT_ERRORS

export function clientError(code: ClientErrorCode, message: string, options: NleErrorOptions = {}): NleError<ClientErrorCode> {
  return new NleError(code, message, options)
}
