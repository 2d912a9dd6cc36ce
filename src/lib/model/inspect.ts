// Checks that an ONNX file is a decoder-only language model with a KV cache, the way Optimum
// exports them: inputs input_ids (+ attention_mask, position_ids, token_type_ids, and the merged
// decoder's use_cache_branch) and past_key_values.{i}.key|value, outputs logits and
// present.{i}.key|value, one pair per layer. It also works out the cache's layout (which axis grows,
// how many heads, the head size) so the engine can build an empty cache in the model's own shapes.
import type * as ort from 'onnxruntime-node'

import {ModelError} from './errors.js'

export interface TensorInfo {
  name: string
  type: string
  shape: (number | string)[]
}

export type FloatType = 'float32' | 'float16'

/** One cache tensor's layout: its shape for an empty cache (batch 1) and the axis that grows. */
export interface CacheTensorLayout {
  emptyDims: number[]
  pastAxis: number
}

export interface DecoderIo {
  inputs: TensorInfo[]
  outputs: TensorInfo[]
  numLayers: number
  /** The shape of one past key tensor as declared (symbolic dims are strings). */
  pastKeyShape: (number | string)[]
  pastValueShape: (number | string)[]
  key: CacheTensorLayout
  value: CacheTensorLayout
  /** Heads in the KV cache and the size of each, as the graph and config.json agree on them. */
  kvHeads: number
  headDim: number
  /** The element type of the KV cache (fed back in that type) and of the logits (read as float32). */
  cacheType: FloatType
  logitsType: FloatType
  hasAttentionMask: boolean
  hasPositionIds: boolean
  hasTokenTypeIds: boolean
  /** Optimum's merged decoder: a `use_cache_branch` input picks the no-cache or the cache branch. */
  hasCacheBranch: boolean
}

export interface DecoderExpectation {
  numLayers?: number | undefined
  /** Heads of the KV cache (num_key_value_heads for grouped-query attention). */
  numKvHeads?: number | undefined
  headDim?: number | undefined
  vocabSize?: number | undefined
}

/** Inputs the engine knows how to feed, besides the per-layer cache. */
const KNOWN_INPUTS: Readonly<Record<string, string>> = {
  input_ids: 'int64',
  attention_mask: 'int64',
  position_ids: 'int64',
  token_type_ids: 'int64',
  use_cache_branch: 'bool',
}
const CACHE_INPUT = /^past_key_values\.(\d+)\.(key|value)$/
const PAST_AXIS = /past|seq|length|total/i

export const SUPPORTED_MODELS =
  'decoder-only text models exported by Optimum ("text-generation-with-past") or as onnx-community publishes them: GPT-2, Bloom, GPT-NeoX, OPT, Llama, Mistral, Qwen2, Phi-3, Gemma, Falcon and others with the same inputs'

function info(m: ort.InferenceSession.ValueMetadata): TensorInfo {
  return m.isTensor ? {name: m.name, type: m.type, shape: [...m.shape]} : {name: m.name, type: 'non-tensor', shape: []}
}

/** Checks I/O names, types and shapes of a loaded session against config.json's facts. */
export function checkDecoderIo(session: ort.InferenceSession, expect: DecoderExpectation = {}, file = 'model.onnx'): DecoderIo {
  const inputs = session.inputMetadata.map(info)
  const outputs = session.outputMetadata.map(info)
  const inNames = new Set(inputs.map((i) => i.name))
  const outNames = new Set(outputs.map((o) => o.name))
  const notDecoder = (why: string): ModelError =>
    new ModelError('MODEL_ONNX_NOT_DECODER', `${file} is not a decoder with a KV cache: ${why}.`, {
      hint: 'Export with Optimum\'s "text-generation-with-past" task (past_key_values inputs, present outputs).',
      details: {file, inputs: [...inNames], outputs: [...outNames]},
    })
  const unsupported = (why: string, extra: Record<string, unknown> = {}): ModelError =>
    new ModelError('MODEL_UNSUPPORTED', `${file} is not a model this engine can run: ${why}.`, {
      hint: `nle runs ${SUPPORTED_MODELS}.`,
      details: {file, inputs: [...inNames], ...extra},
    })
  if ([...inNames].some((n) => /^past_key_values\.\d+\.(decoder|encoder)\./.test(n)) || inNames.has('encoder_hidden_states')) {
    throw unsupported('it is the decoder of an encoder-decoder model')
  }
  if (!inNames.has('input_ids')) throw notDecoder('no input_ids input')
  if (!outNames.has('logits')) throw notDecoder('no logits output')
  const foreign = inputs.filter((i) => !(i.name in KNOWN_INPUTS) && !CACHE_INPUT.test(i.name))
  if (foreign.length > 0) {
    throw unsupported(`it has inputs the engine does not feed (${foreign.map((i) => i.name).join(', ')})`, {foreign: foreign.map((i) => i.name)})
  }
  let numLayers = 0
  while (inNames.has(`past_key_values.${numLayers}.key`)) numLayers++
  if (numLayers === 0) throw notDecoder('no past_key_values.0.key input')
  for (let i = 0; i < numLayers; i++) {
    for (const kv of ['key', 'value']) {
      if (!inNames.has(`past_key_values.${i}.${kv}`)) throw notDecoder(`no past_key_values.${i}.${kv} input`)
      if (!outNames.has(`present.${i}.${kv}`)) throw notDecoder(`no present.${i}.${kv} output`)
    }
  }
  if ([...inNames].some((n) => CACHE_INPUT.test(n) && Number(CACHE_INPUT.exec(n)?.[1]) >= numLayers)) {
    throw notDecoder(`its past_key_values inputs are not numbered 0..${numLayers - 1}`)
  }
  for (const i of inputs) {
    const want = KNOWN_INPUTS[i.name]
    if (want !== undefined && i.type !== want) throw unsupported(`input ${i.name} is ${i.type}, expected ${want}`)
  }
  const mismatch = (why: string, extra: Record<string, unknown> = {}): ModelError =>
    new ModelError('MODEL_ONNX_SHAPE_MISMATCH', `${file} does not match config.json: ${why}.`, {
      hint: 'The ONNX file and config.json must come from the same export.',
      details: {file, ...extra},
    })
  if (expect.numLayers !== undefined && expect.numLayers !== numLayers) {
    throw mismatch(`${numLayers} layers in the ONNX, ${expect.numLayers} in config.json`)
  }
  const byName = new Map(inputs.map((i) => [i.name, i]))
  const outByName = new Map(outputs.map((o) => [o.name, o]))
  const logits = outByName.get('logits') as TensorInfo
  if (logits.shape.length !== 3) throw mismatch(`logits has rank ${logits.shape.length}, expected 3`, {logits: logits.shape})
  if (logits.type !== 'float32' && logits.type !== 'float16') throw unsupported(`logits are ${logits.type}, expected float32 or float16`)
  const vocab = logits.shape[2]
  if (expect.vocabSize !== undefined && typeof vocab === 'number' && vocab !== expect.vocabSize) {
    throw mismatch(`logits has ${vocab} classes, config.json vocab_size is ${expect.vocabSize}`)
  }
  const pastKey = byName.get('past_key_values.0.key') as TensorInfo
  const pastValue = byName.get('past_key_values.0.value') as TensorInfo
  for (let i = 0; i < numLayers; i++) {
    for (const kv of ['key', 'value'] as const) {
      const t = byName.get(`past_key_values.${i}.${kv}`) as TensorInfo
      const first = kv === 'key' ? pastKey : pastValue
      if (t.type !== 'float32' && t.type !== 'float16') throw unsupported(`${t.name} is ${t.type}, expected float32 or float16`)
      if (t.type !== pastKey.type || JSON.stringify(t.shape) !== JSON.stringify(first.shape)) {
        throw unsupported(`layer ${i}'s cache differs in type or shape from layer 0's (an unknown cache layout)`, {shape: t.shape})
      }
    }
  }
  if (pastValue.type !== pastKey.type) throw unsupported('the past keys and values have different types')

  // Heads and head size: from the graph where its dims are numbers, from config.json otherwise,
  // and the two must agree.
  const resolve = (what: string, fromGraph: number | string | undefined, fromConfig: number | undefined): number => {
    if (typeof fromGraph === 'number') {
      if (fromConfig !== undefined && fromConfig !== fromGraph) {
        throw mismatch(`the cache has ${fromGraph} ${what}, config.json implies ${fromConfig}`, {key: pastKey.shape, value: pastValue.shape})
      }
      return fromGraph
    }
    if (fromConfig === undefined || !Number.isInteger(fromConfig) || fromConfig < 1) {
      throw unsupported(`neither the graph nor config.json says how many ${what} the cache has`, {key: pastKey.shape})
    }
    return fromConfig
  }
  let kvHeads: number
  let headDim: number
  let key: CacheTensorLayout
  let value: CacheTensorLayout
  const isPast = (d: number | string | undefined): boolean => typeof d === 'string' && PAST_AXIS.test(d)
  if (pastKey.shape.length === 4 && pastValue.shape.length === 4) {
    // [batch, kv heads, past, head size] for both.
    const [, h, p, d] = pastKey.shape
    const [, hv, pv, dv] = pastValue.shape
    if (!isPast(p) || !isPast(pv)) throw unsupported('the cache\'s third axis is not the past sequence (an unknown cache layout)', {key: pastKey.shape})
    kvHeads = resolve('key/value heads', h, expect.numKvHeads)
    headDim = resolve('dimensions per head', d, expect.headDim)
    if ((typeof hv === 'number' && hv !== kvHeads) || (typeof dv === 'number' && dv !== headDim)) {
      throw unsupported('past keys and values have different head counts or sizes', {key: pastKey.shape, value: pastValue.shape})
    }
    key = {emptyDims: [1, kvHeads, 0, headDim], pastAxis: 2}
    value = {emptyDims: [1, kvHeads, 0, headDim], pastAxis: 2}
  } else if (pastKey.shape.length === 3 && pastValue.shape.length === 3) {
    // Bloom: batch × heads folded into the first axis; key [·, head size, past], value [·, past, head size].
    const layout3 = (t: TensorInfo): CacheTensorLayout => {
      const axis = [1, 2].filter((a) => isPast(t.shape[a]))
      if (axis.length !== 1) throw unsupported(`${t.name}'s past axis cannot be told apart (an unknown cache layout)`, {shape: t.shape})
      const pastAxis = axis[0] as number
      const dims = [kvHeads, headDim, headDim]
      dims[pastAxis] = 0
      return {emptyDims: dims, pastAxis}
    }
    kvHeads = resolve('key/value heads', undefined, expect.numKvHeads)
    const dimAxis = isPast(pastKey.shape[2]) ? 1 : 2
    headDim = resolve('dimensions per head', pastKey.shape[dimAxis], expect.headDim)
    key = layout3(pastKey)
    value = layout3(pastValue)
    if (typeof pastKey.shape[0] === 'number') throw unsupported('a 3-D cache whose first axis is fixed (an unknown cache layout)', {shape: pastKey.shape})
  } else {
    throw unsupported(`the cache tensors have rank ${pastKey.shape.length}/${pastValue.shape.length}, expected 4 (or 3, as Bloom)`, {key: pastKey.shape, value: pastValue.shape})
  }
  if (/(^|\/)decoder_model_merged[^/]*\.onnx$/.test(file) && !inNames.has('use_cache_branch')) {
    throw notDecoder('it is named as a merged decoder but has no use_cache_branch input to pick its branch')
  }
  return {
    inputs,
    outputs,
    numLayers,
    pastKeyShape: pastKey.shape,
    pastValueShape: pastValue.shape,
    key,
    value,
    kvHeads,
    headDim,
    cacheType: pastKey.type as FloatType,
    logitsType: logits.type as FloatType,
    hasAttentionMask: inNames.has('attention_mask'),
    hasPositionIds: inNames.has('position_ids'),
    hasTokenTypeIds: inNames.has('token_type_ids'),
    hasCacheBranch: inNames.has('use_cache_branch'),
  }
}

export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  return (text.split('\n')[0] ?? text).slice(0, 300)
}
