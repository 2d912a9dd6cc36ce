import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {IO, CONFIG, VERIFY, USAGE, INTERNAL} = ExitCode

/** Every code the inference engine can fail with. */
export const ENGINE_ERRORS = defineErrors({
  ENGINE_MODEL_NOT_FOUND: {exit: IO, summary: 'The model folder does not exist.', hint: 'Save a model first (`nle model save SOURCE` or `nle model synth --out DIR`) and pass its folder'},
  ENGINE_MODEL_UNSUPPORTED: {exit: VERIFY, summary: 'The model\'s architecture or files are not ones this engine runs.', hint: 'Use a decoder-only ONNX export with a KV cache (GPT-2, Llama, Qwen2, Phi-3, Bloom families); `nle model save` checks this'},
  ENGINE_CONFIG_INVALID: {exit: CONFIG, summary: 'The model\'s config.json is missing fields or has invalid values.', hint: 'Re-save the model with `nle model save`; config.json must be the one exported with the ONNX file'},
  ENGINE_TOKENIZER_MISSING: {exit: IO, summary: 'A tokenizer file (tokenizer.json, tokenizer_config.json) is missing from the model folder.', hint: 'Re-save the model with `nle model save`, which copies the tokenizer files'},
  ENGINE_TOKENIZER_INVALID: {exit: CONFIG, summary: 'The tokenizer files cannot be loaded.', hint: 'Re-save the model with `nle model save`; the tokenizer must be a Hugging Face tokenizer.json'},
  ENGINE_CHAT_TEMPLATE_MISSING: {exit: CONFIG, summary: 'The model has no chat template, so chat messages cannot be rendered.', hint: 'Use a chat (instruction-tuned) model, or send raw prompts with `nle model run --prompt`'},
  ENGINE_CHAT_TEMPLATE_FAILED: {exit: CONFIG, summary: 'The model\'s chat template refused the messages (e.g. roles out of order).', hint: 'Check the message roles: most templates want an optional system message, then alternating user and assistant turns'},
  ENGINE_SESSION_FAILED: {exit: VERIFY, summary: 'onnxruntime could not load the ONNX model.', hint: 'Re-save the model; `nle model save` refuses ONNX files onnxruntime cannot run'},
  ENGINE_INFERENCE_FAILED: {exit: INTERNAL, summary: 'onnxruntime failed while generating.', hint: 'Re-run with --verbose and report the output with the model\'s name'},
  ENGINE_PROMPT_EMPTY: {exit: USAGE, summary: 'The prompt has no tokens.', hint: 'Send a non-empty prompt'},
  ENGINE_PROMPT_TOO_LONG: {exit: USAGE, summary: 'The prompt (the whole conversation) is longer than the model\'s context window.', hint: 'Shorten the question or start a new conversation (in `nle chat`: /clear)'},
  ENGINE_BAD_OPTIONS: {exit: USAGE, summary: 'A generation option is out of range (max tokens, temperature, top-p, top-k, ids).', hint: 'See `nle model run --help` for the ranges'},
  ENGINE_CLOSED: {exit: INTERNAL, summary: 'The engine was used after it was closed.', hint: 'This is a bug in nle: re-run with --verbose and report the output'},
})

export type EngineErrorCode = keyof typeof ENGINE_ERRORS

export class EngineError extends NleError<EngineErrorCode> {
  constructor(code: EngineErrorCode, message: string, options: NleErrorOptions = {}) {
    super(code, message, options)
    this.name = 'EngineError'
  }
}
