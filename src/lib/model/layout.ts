// The Hugging Face ONNX folder layout (as written by Optimum and read by transformers.js):
//   config.json, tokenizer.json, tokenizer_config.json, [generation_config.json, special_tokens_map.json]
//   onnx/model.onnx (fp32) | onnx/model_quantized.onnx (q8) [+ its external data onnx/<file>_data*]
import {stat} from 'node:fs/promises'
import {join} from 'node:path'

import {ModelError} from './errors.js'
import {isModelFile, readModelText} from './memory.js'

/**
 * The dtypes a Hugging Face ONNX repository ships, named as transformers.js names them, each with the
 * file suffix it selects: `onnx/model{suffix}.onnx`, or Optimum's legacy merged decoder
 * `onnx/decoder_model_merged{suffix}.onnx` (an `If` on the `use_cache_branch` input).
 */
export const DTYPE_SUFFIX = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
} as const
export type Dtype = keyof typeof DTYPE_SUFFIX
export const DTYPES = Object.keys(DTYPE_SUFFIX) as [Dtype, ...Dtype[]]

/** The files a dtype may be stored in, in the order they are preferred (the plain export first). */
export function onnxCandidates(dtype: Dtype): string[] {
  const suffix = DTYPE_SUFFIX[dtype]
  return [`onnx/model${suffix}.onnx`, `onnx/decoder_model_merged${suffix}.onnx`]
}

/** The first of the dtype's files that `has` says exists, or undefined. */
export function pickOnnxFile(dtype: Dtype, has: (path: string) => boolean): string | undefined {
  return onnxCandidates(dtype).find(has)
}

/** The dtypes a listing of files (relative POSIX paths) has an ONNX file for. */
export function availableDtypes(listing: Iterable<string>): Dtype[] {
  const files = new Set(listing)
  return DTYPES.filter((d) => pickOnnxFile(d, (p) => files.has(p)) !== undefined)
}

/** Finds the dtype's ONNX file in a model folder (relative path), or undefined. */
export async function findOnnxFile(dir: string, dtype: Dtype): Promise<string | undefined> {
  for (const candidate of onnxCandidates(dtype)) if (await isFile(join(dir, candidate))) return candidate
  return undefined
}

export const REQUIRED_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json'] as const
export const OPTIONAL_FILES = ['generation_config.json', 'special_tokens_map.json'] as const

/** True for the external-data companions of an ONNX file (`model.onnx_data`, `model.onnx_data_1`). */
export function isExternalDataOf(onnxFile: string, candidate: string): boolean {
  return candidate === `${onnxFile}_data` || candidate.startsWith(`${onnxFile}_data_`)
}

export interface DecoderConfig {
  modelType: string
  numLayers: number | undefined
  numHeads: number | undefined
  /** Heads of the KV cache: fewer than numHeads for grouped-query (Llama, Qwen2, Phi-3, Mistral) and multi-query attention. */
  numKvHeads: number | undefined
  /** Size of one attention head: config's explicit head_dim (Gemma, some Qwen) or hidden size / heads. */
  headDim: number | undefined
  hiddenSize: number | undefined
  vocabSize: number | undefined
  maxPositions: number | undefined
  eosTokenIds: number[]
  /** True when config.json describes a model this engine cannot run; the reason is in `unsupported`. */
  unsupported: string | undefined
}

type Json = Record<string, unknown>

/** The KV head count per family, as transformers' modeling code derives it. */
function kvHeads(config: Json, numHeads: number | undefined): number | undefined {
  const num = (k: string): number | undefined => (typeof config[k] === 'number' ? config[k] : undefined)
  if (config.model_type === 'falcon') {
    // Falcon: the new decoder architecture has num_kv_heads groups; the old one is multi-query
    // (one shared head) or plain multi-head, whatever num_kv_heads says.
    if (config.new_decoder_architecture === true) return num('num_kv_heads') ?? numHeads
    return config.multi_query === true ? 1 : numHeads
  }
  if (config.multi_query === true) return 1
  return num('num_key_value_heads') ?? num('num_kv_heads') ?? num('n_head_kv') ?? numHeads
}

/** Why config.json describes a model that is not a text-only decoder, or undefined. */
function unsupportedReason(config: Json): string | undefined {
  if (config.is_encoder_decoder === true) return `an encoder-decoder model (${String(config.model_type)})`
  for (const key of ['vision_config', 'audio_config', 'speech_config']) {
    if (key in config) return `a multimodal model (config.json has ${key})`
  }
  return undefined
}

/** Reads config.json (and generation_config.json when present) into the fields the engine needs. */
export async function readDecoderConfig(dir: string): Promise<DecoderConfig> {
  const config = await readJsonObject(join(dir, 'config.json'), true)
  const generation = (await readJsonObject(join(dir, 'generation_config.json'), false)) ?? {}
  const num = (...keys: string[]): number | undefined => {
    for (const k of keys) if (typeof config[k] === 'number') return config[k]
    return undefined
  }
  const ids = (v: unknown): number[] => (typeof v === 'number' ? [v] : Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [])
  if (typeof config.model_type !== 'string') {
    throw new ModelError('MODEL_CONFIG_INVALID', 'config.json has no "model_type".', {hint: 'Use a config.json exported with the model.'})
  }
  const numHeads = num('n_head', 'num_attention_heads')
  const hiddenSize = num('n_embd', 'hidden_size', 'd_model')
  const explicitHeadDim = num('head_dim')
  return {
    modelType: config.model_type,
    numLayers: num('n_layer', 'num_hidden_layers', 'num_layers'),
    numHeads,
    numKvHeads: kvHeads(config, numHeads),
    headDim: explicitHeadDim ?? (hiddenSize !== undefined && numHeads ? hiddenSize / numHeads : undefined),
    hiddenSize,
    vocabSize: num('vocab_size'),
    maxPositions: num('n_positions', 'max_position_embeddings', 'seq_length'),
    // generation_config.json is what generate() honours; config.json's are the fallback.
    eosTokenIds: [...new Set([...ids(generation.eos_token_id), ...ids(config.eos_token_id)])],
    unsupported: unsupportedReason(config),
  }
}

async function readJsonObject(path: string, required: true): Promise<Record<string, unknown>>
async function readJsonObject(path: string, required: false): Promise<Record<string, unknown> | undefined>
async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string
  try {
    text = await readModelText(path)
  } catch (cause) {
    if (!required) return undefined
    throw new ModelError('MODEL_FILE_MISSING', `${path} is missing.`, {cause, details: {path}})
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (cause) {
    throw new ModelError('MODEL_CONFIG_INVALID', `${path} is not valid JSON.`, {cause, details: {path}})
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelError('MODEL_CONFIG_INVALID', `${path} is not a JSON object.`, {details: {path}})
  }
  return value as Record<string, unknown>
}

async function isFile(path: string): Promise<boolean> {
  return isModelFile(path)
}

/** MODEL_DTYPE_UNAVAILABLE for a dtype that is not among `listing`'s files, naming those that are. */
export function dtypeUnavailable(dtype: Dtype, listing: Iterable<string>, where: Record<string, unknown>): ModelError {
  const available = availableDtypes(listing)
  return new ModelError('MODEL_DTYPE_UNAVAILABLE', `The model has no ${dtype} ONNX file (${onnxCandidates(dtype).join(' or ')}).`, {
    hint: available.length > 0 ? `Available here: --dtype ${available.join(' | ')}.` : 'No onnx/model*.onnx or onnx/decoder_model_merged*.onnx file was found: is this an ONNX export?',
    details: {...where, dtype, available},
  })
}

/**
 * Checks that a folder has the files of the HF ONNX layout for this dtype. Returns the dtype's ONNX
 * file and the paths (relative, POSIX) of every file that belongs to the model.
 */
export async function checkLayout(dir: string, dtype: Dtype, listing: readonly string[]): Promise<{onnxFile: string; files: string[]}> {
  let st
  try {
    st = await stat(dir)
  } catch (cause) {
    throw new ModelError('MODEL_SOURCE_NOT_FOUND', `Model folder ${dir} does not exist.`, {cause, details: {dir}})
  }
  if (!st.isDirectory()) throw new ModelError('MODEL_SOURCE_NOT_FOUND', `${dir} is not a folder.`, {details: {dir}})
  for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
    if (!(await isFile(join(dir, name)))) {
      throw new ModelError('MODEL_TOKENIZER_MISSING', `The model folder has no ${name}.`, {
        hint: 'Export the tokenizer with the model (Optimum writes tokenizer.json and tokenizer_config.json).',
        details: {dir, file: name},
      })
    }
  }
  if (!(await isFile(join(dir, 'config.json')))) {
    throw new ModelError('MODEL_FILE_MISSING', 'The model folder has no config.json.', {details: {dir, file: 'config.json'}})
  }
  const onnxFile = await findOnnxFile(dir, dtype)
  if (onnxFile === undefined) throw dtypeUnavailable(dtype, listing, {dir})
  const files: string[] = [...REQUIRED_FILES]
  for (const name of OPTIONAL_FILES) if (await isFile(join(dir, name))) files.push(name)
  files.push(onnxFile)
  for (const name of listing) if (isExternalDataOf(onnxFile, name)) files.push(name)
  return {onnxFile, files: files.sort()}
}
