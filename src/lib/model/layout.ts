// The Hugging Face ONNX folder layout (as written by Optimum and read by transformers.js):
//   config.json, tokenizer.json, tokenizer_config.json, [generation_config.json, special_tokens_map.json]
//   onnx/model.onnx (fp32) | onnx/model_quantized.onnx (q8) [+ its external data onnx/<file>_data*]
import {readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {ModelError} from './errors.js'

export const DTYPES = ['fp32', 'q8'] as const
export type Dtype = (typeof DTYPES)[number]

/** The file each dtype selects, as transformers.js names them. */
export const ONNX_FILE: Record<Dtype, string> = {
  fp32: 'onnx/model.onnx',
  q8: 'onnx/model_quantized.onnx',
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
  hiddenSize: number | undefined
  vocabSize: number | undefined
  maxPositions: number | undefined
  eosTokenIds: number[]
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
  return {
    modelType: config.model_type,
    numLayers: num('n_layer', 'num_hidden_layers', 'num_layers'),
    numHeads: num('n_head', 'num_attention_heads'),
    hiddenSize: num('n_embd', 'hidden_size', 'd_model'),
    vocabSize: num('vocab_size'),
    maxPositions: num('n_positions', 'max_position_embeddings', 'seq_length'),
    eosTokenIds: [...new Set([...ids(generation.eos_token_id), ...ids(config.eos_token_id)])],
  }
}

async function readJsonObject(path: string, required: true): Promise<Record<string, unknown>>
async function readJsonObject(path: string, required: false): Promise<Record<string, unknown> | undefined>
async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
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
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}

/**
 * Checks that a folder has the files of the HF ONNX layout for this dtype. Returns the paths
 * (relative, POSIX) of the files that belong to the model.
 */
export async function checkLayout(dir: string, dtype: Dtype, listing: readonly string[]): Promise<string[]> {
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
  const onnxFile = ONNX_FILE[dtype]
  if (!(await isFile(join(dir, onnxFile)))) {
    const available = DTYPES.filter((d) => listing.includes(ONNX_FILE[d]))
    throw new ModelError('MODEL_DTYPE_UNAVAILABLE', `The model has no ${dtype} ONNX file (${onnxFile}).`, {
      hint: available.length > 0 ? `Available: --dtype ${available.join(' | ')}.` : 'No onnx/model*.onnx file was found: is this an ONNX export?',
      details: {dir, dtype, available},
    })
  }
  const files: string[] = [...REQUIRED_FILES]
  for (const name of OPTIONAL_FILES) if (await isFile(join(dir, name))) files.push(name)
  files.push(onnxFile)
  for (const name of listing) if (isExternalDataOf(onnxFile, name)) files.push(name)
  return files.sort()
}
