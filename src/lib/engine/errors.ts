import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

/** Every code the inference engine can fail with. */
export type EngineErrorCode =
  | 'ENGINE_MODEL_NOT_FOUND'
  | 'ENGINE_MODEL_UNSUPPORTED'
  | 'ENGINE_CONFIG_INVALID'
  | 'ENGINE_TOKENIZER_MISSING'
  | 'ENGINE_TOKENIZER_INVALID'
  | 'ENGINE_CHAT_TEMPLATE_MISSING'
  | 'ENGINE_CHAT_TEMPLATE_FAILED'
  | 'ENGINE_SESSION_FAILED'
  | 'ENGINE_INFERENCE_FAILED'
  | 'ENGINE_PROMPT_EMPTY'
  | 'ENGINE_PROMPT_TOO_LONG'
  | 'ENGINE_BAD_OPTIONS'
  | 'ENGINE_CLOSED'

const DEFAULT_EXIT: Record<EngineErrorCode, ExitCode> = {
  ENGINE_MODEL_NOT_FOUND: ExitCode.IO,
  ENGINE_MODEL_UNSUPPORTED: ExitCode.VERIFY,
  ENGINE_CONFIG_INVALID: ExitCode.CONFIG,
  ENGINE_TOKENIZER_MISSING: ExitCode.IO,
  ENGINE_TOKENIZER_INVALID: ExitCode.CONFIG,
  ENGINE_CHAT_TEMPLATE_MISSING: ExitCode.CONFIG,
  ENGINE_CHAT_TEMPLATE_FAILED: ExitCode.CONFIG,
  ENGINE_SESSION_FAILED: ExitCode.VERIFY,
  ENGINE_INFERENCE_FAILED: ExitCode.INTERNAL,
  ENGINE_PROMPT_EMPTY: ExitCode.USAGE,
  ENGINE_PROMPT_TOO_LONG: ExitCode.USAGE,
  ENGINE_BAD_OPTIONS: ExitCode.USAGE,
  ENGINE_CLOSED: ExitCode.INTERNAL,
}

export class EngineError extends NleError<EngineErrorCode> {
  constructor(code: EngineErrorCode, message: string, options: NleErrorOptions = {}) {
    super(code, message, {exitCode: DEFAULT_EXIT[code], ...options})
    this.name = 'EngineError'
  }
}
