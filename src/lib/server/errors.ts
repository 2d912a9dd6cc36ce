/** Error codes of the enclave server. Messages never carry a question, an answer or a key. */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {CONFIG, IO, VERIFY, USAGE, NETWORK, INTERNAL} = ExitCode

export const SERVER_ERRORS = defineErrors({
  SERVER_CONFIG_INVALID: {exit: CONFIG, summary: 'The enclave server\'s runtime config (--config) is missing or invalid.', hint: 'Rebuild the enclave: `nle build` writes the runtime config from nle.yaml'},
  SERVER_MODEL_LOAD_FAILED: {exit: IO, summary: 'The model could not be loaded (missing files, not ONNX, tokenizer unreadable).', hint: 'Check the saved model (`nle model run DIR`) and rebuild the enclave'},
  SERVER_MODEL_DIGEST_MISMATCH: {exit: VERIFY, summary: 'A model file\'s sha256 differs from the manifest, or the manifest from the pinned digest.', hint: 'The model in the image is not the one that was saved: save it again and rebuild'},
  SERVER_LISTEN_FAILED: {exit: IO, summary: 'The enclave server could not listen on its Unix socket.', hint: 'Check that the socket\'s folder exists and is writable; for a socket in use see ADDRESS_IN_USE'},
  SERVER_NSM_FAILED: {exit: IO, summary: 'The NSM (device or simulator) could not be opened or refused to attest.', hint: 'Outside an enclave, run with --nsm simulator (`nle dev` does)'},
  SERVER_BAD_REQUEST: {exit: USAGE, summary: 'The opened request is not an OpenAI chat completion request this server accepts.', hint: 'Check the request fields (messages, max_tokens, temperature) against docs/gateway.md'},
  SERVER_BUSY: {exit: NETWORK, summary: 'HTTP 429: the generation queue is full.', hint: 'Retry after the Retry-After delay, or raise server.generationQueue'},
  SERVER_DRAINING: {exit: NETWORK, summary: 'HTTP 503: the enclave server is shutting down.', hint: 'Retry once the enclave has restarted'},
  SERVER_NOT_FOUND: {exit: USAGE, summary: 'HTTP 404: no route of the enclave API at this path.', hint: 'The enclave serves /v1/attestation, /v1/chat/completions, /healthz and /metrics'},
  SERVER_METHOD_NOT_ALLOWED: {exit: USAGE, summary: 'HTTP 405: that route takes another method (GET /v1/attestation, POST /v1/chat/completions).', hint: 'Use the route\'s method; nle\'s client does'},
  SERVER_BAD_NONCE: {exit: USAGE, summary: 'HTTP 400: the attestation nonce is not hex or is too long.', hint: 'Send ?nonce= with at most 512 bytes in hex (nle\'s client sends 32)'},
  SERVER_UNSUPPORTED_MEDIA_TYPE: {exit: USAGE, summary: 'HTTP 415: a chat request that is not a sealed request (application/nle-sealed-request or application/nle-kms-request).', hint: 'Send chat requests through nle\'s client or gateway: the enclave opens only sealed requests'},
  SERVER_BODY_TOO_LARGE: {exit: USAGE, summary: 'HTTP 413: the sealed request is larger than the server accepts.', hint: 'Shorten the conversation'},
  SERVER_KV_BUDGET: {exit: USAGE, summary: 'The request needs more KV-cache memory (prompt + max_tokens) than the enclave server\'s budget holds.', hint: 'Send a shorter prompt or a smaller max_tokens, or give the enclave more memory (enclave.memoryMiB; `nle allocator` sizes it)'},
  SERVER_GENERATION_FAILED: {exit: INTERNAL, summary: 'Generation failed inside the engine.', hint: 'See the enclave\'s log (details.serverCode names the engine\'s code); re-run with --verbose and report it'},
  SERVER_USAGE: {exit: USAGE, summary: 'A flag of the enclave server is invalid.', hint: 'See runtime/enclave-server/ for the flags; `nle build` writes the ones the image uses'},
  SERVER_INTERNAL: {exit: INTERNAL, summary: 'The enclave server failed to start for an unexpected reason.', hint: 'This is a bug in nle: report the enclave\'s log'},
})

export type ServerErrorCode = keyof typeof SERVER_ERRORS

export function serverError(code: ServerErrorCode, message: string, options: NleErrorOptions = {}): NleError<ServerErrorCode> {
  return new NleError(code, message, options)
}
