import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {IO, CONFIG, VERIFY, USAGE, NETWORK} = ExitCode

/** Every code a model operation (save, synth, validation, hub download) can fail with. */
export const MODEL_ERRORS = defineErrors({
  MODEL_SOURCE_NOT_FOUND: {exit: IO, summary: 'The model source is neither a local folder nor a hub repository id.', hint: 'Pass a folder with config.json and an onnx/ file, or a hub id like owner/name'},
  MODEL_FILE_MISSING: {exit: IO, summary: 'A file the model needs (config.json, the ONNX file) is absent.', hint: 'Export the model with its config.json and ONNX file (e.g. with Optimum), or pick another --dtype'},
  MODEL_CONFIG_INVALID: {exit: CONFIG, summary: 'config.json (or a synthetic model\'s shape) is invalid.', hint: 'Check config.json against the exported ONNX model'},
  MODEL_TOKENIZER_MISSING: {exit: IO, summary: 'The model has no tokenizer.json or tokenizer_config.json.', hint: 'Add the tokenizer files of the same model to the folder (or repository)'},
  MODEL_TOKENIZER_INVALID: {exit: CONFIG, summary: 'The tokenizer files cannot be loaded.', hint: 'Use the tokenizer files exported with the model'},
  MODEL_ONNX_CORRUPT: {exit: VERIFY, summary: 'The ONNX file cannot be loaded as an ONNX model.', hint: 'Download or export it again; a truncated file fails this way'},
  MODEL_ONNX_NOT_DECODER: {exit: VERIFY, summary: 'The ONNX model is not a decoder with a KV cache.', hint: 'Export the model with past key values (Optimum: the text-generation-with-past task)'},
  MODEL_ONNX_SHAPE_MISMATCH: {exit: VERIFY, summary: 'The ONNX model\'s shapes disagree with config.json.', hint: 'Use the config.json exported with this ONNX file'},
  MODEL_ONNX_UNRUNNABLE: {exit: VERIFY, summary: 'The ONNX model loads but cannot generate a token.', hint: 'Try another --dtype, or re-export the model'},
  MODEL_UNSUPPORTED: {exit: VERIFY, summary: 'The model\'s architecture is not one nle runs.', hint: 'Use a decoder-only model of a supported family (GPT-2, Llama, Qwen2, Phi-3, Bloom)'},
  MODEL_DTYPE_UNAVAILABLE: {exit: USAGE, summary: 'The model has no ONNX file for the requested --dtype.', hint: 'Pick a --dtype the model ships (fp32, fp16, q8, q4, …); the message lists the files looked for'},
  MODEL_HUB_UNREACHABLE: {exit: NETWORK, summary: 'The model hub could not be reached.', hint: 'Check the network (and HF_ENDPOINT, proxies); downloads resume when run again'},
  MODEL_HUB_NOT_FOUND: {exit: NETWORK, summary: 'The hub has no such repository, revision or file.', hint: 'Check the repository id and --revision'},
  MODEL_HUB_UNAUTHORIZED: {exit: NETWORK, summary: 'The hub refused access (private or gated repository).', hint: 'Set HF_TOKEN to a token that may read the repository (and accept its licence on the hub)'},
  MODEL_HUB_BAD_RESPONSE: {exit: NETWORK, summary: 'The hub answered with an unexpected status or body.', hint: 'Try again later; if it persists, report the status shown'},
  MODEL_HASH_MISMATCH: {exit: VERIFY, summary: 'A downloaded file does not match its published hash.', hint: 'The download is corrupt or was tampered with: run the command again (the file is fetched anew)'},
  MODEL_OUTPUT_EXISTS: {exit: IO, summary: 'The output folder already holds a saved model.', hint: 'Pass --force to replace it, or choose another --out'},
  MODEL_WRITE_FAILED: {exit: IO, summary: 'The model could not be written to the output folder.', hint: 'Check free space and permissions of the output folder'},
  MODEL_SYNTH_NO_TARGET: {exit: USAGE, summary: '`nle model synth` has no output folder: no --out and no nle.yaml whose model.path it could use.', hint: 'Pass --out DIR, or run it in a project (`nle init`) to write to model.path'},
  MODEL_PRESET_UNKNOWN: {exit: USAGE, summary: 'The synthetic model preset is not known.', hint: 'See `nle model synth --help` for the presets'},
})

export type ModelErrorCode = keyof typeof MODEL_ERRORS

export class ModelError extends NleError<ModelErrorCode> {
  constructor(code: ModelErrorCode, message: string, options: NleErrorOptions = {}) {
    super(code, message, options)
    this.name = 'ModelError'
  }
}
