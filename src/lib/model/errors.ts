import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

/** Every code a model operation (save, synth, validation, hub download) can fail with. */
export type ModelErrorCode =
  | 'MODEL_SOURCE_NOT_FOUND'
  | 'MODEL_FILE_MISSING'
  | 'MODEL_CONFIG_INVALID'
  | 'MODEL_TOKENIZER_MISSING'
  | 'MODEL_TOKENIZER_INVALID'
  | 'MODEL_ONNX_CORRUPT'
  | 'MODEL_ONNX_NOT_DECODER'
  | 'MODEL_ONNX_SHAPE_MISMATCH'
  | 'MODEL_ONNX_UNRUNNABLE'
  | 'MODEL_UNSUPPORTED'
  | 'MODEL_DTYPE_UNAVAILABLE'
  | 'MODEL_HUB_UNREACHABLE'
  | 'MODEL_HUB_NOT_FOUND'
  | 'MODEL_HUB_UNAUTHORIZED'
  | 'MODEL_HUB_BAD_RESPONSE'
  | 'MODEL_HASH_MISMATCH'
  | 'MODEL_OUTPUT_EXISTS'
  | 'MODEL_WRITE_FAILED'
  | 'MODEL_PRESET_UNKNOWN'
  | 'MODEL_SYNTH_NO_TARGET'

const DEFAULT_EXIT: Record<ModelErrorCode, ExitCode> = {
  MODEL_SOURCE_NOT_FOUND: ExitCode.IO,
  MODEL_FILE_MISSING: ExitCode.IO,
  MODEL_CONFIG_INVALID: ExitCode.CONFIG,
  MODEL_TOKENIZER_MISSING: ExitCode.IO,
  MODEL_TOKENIZER_INVALID: ExitCode.CONFIG,
  MODEL_ONNX_CORRUPT: ExitCode.VERIFY,
  MODEL_ONNX_NOT_DECODER: ExitCode.VERIFY,
  MODEL_ONNX_SHAPE_MISMATCH: ExitCode.VERIFY,
  MODEL_ONNX_UNRUNNABLE: ExitCode.VERIFY,
  MODEL_UNSUPPORTED: ExitCode.VERIFY,
  MODEL_DTYPE_UNAVAILABLE: ExitCode.USAGE,
  MODEL_HUB_UNREACHABLE: ExitCode.NETWORK,
  MODEL_HUB_NOT_FOUND: ExitCode.NETWORK,
  MODEL_HUB_UNAUTHORIZED: ExitCode.NETWORK,
  MODEL_HUB_BAD_RESPONSE: ExitCode.NETWORK,
  MODEL_HASH_MISMATCH: ExitCode.VERIFY,
  MODEL_OUTPUT_EXISTS: ExitCode.IO,
  MODEL_WRITE_FAILED: ExitCode.IO,
  MODEL_PRESET_UNKNOWN: ExitCode.USAGE,
  MODEL_SYNTH_NO_TARGET: ExitCode.USAGE,
}

export class ModelError extends NleError<ModelErrorCode> {
  constructor(code: ModelErrorCode, message: string, options: NleErrorOptions = {}) {
    super(code, message, {exitCode: DEFAULT_EXIT[code], ...options})
    this.name = 'ModelError'
  }
}
