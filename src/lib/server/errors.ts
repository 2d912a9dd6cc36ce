/** Error codes of the enclave server. Messages never carry a question, an answer or a key. */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type ServerErrorCode =
  /** The runtime config (--config) is missing or invalid. */
  | 'SERVER_CONFIG_INVALID'
  /** The model could not be loaded (missing files, not ONNX, tokenizer unreadable). */
  | 'SERVER_MODEL_LOAD_FAILED'
  /** A model file's sha256 differs from the manifest, or the manifest from the pinned digest. */
  | 'SERVER_MODEL_DIGEST_MISMATCH'
  /** The Unix socket could not be listened on. */
  | 'SERVER_LISTEN_FAILED'
  /** The NSM (device or simulator) could not be opened or refused to attest. */
  | 'SERVER_NSM_FAILED'
  /** The opened request is not an OpenAI chat completion request this server accepts. */
  | 'SERVER_BAD_REQUEST'
  /** The server is draining or its generation queue is full. */
  | 'SERVER_BUSY'
  /** Generation failed inside the engine. */
  | 'SERVER_GENERATION_FAILED'

const EXIT: Record<ServerErrorCode, ExitCode> = {
  SERVER_CONFIG_INVALID: ExitCode.CONFIG,
  SERVER_MODEL_LOAD_FAILED: ExitCode.IO,
  SERVER_MODEL_DIGEST_MISMATCH: ExitCode.VERIFY,
  SERVER_LISTEN_FAILED: ExitCode.IO,
  SERVER_NSM_FAILED: ExitCode.IO,
  SERVER_BAD_REQUEST: ExitCode.USAGE,
  SERVER_BUSY: ExitCode.NETWORK,
  SERVER_GENERATION_FAILED: ExitCode.INTERNAL,
}

export function serverError(code: ServerErrorCode, message: string, options: NleErrorOptions = {}): NleError<ServerErrorCode> {
  return new NleError(code, message, {exitCode: EXIT[code], ...options})
}
