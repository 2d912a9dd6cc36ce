// Checks that an ONNX file is a decoder-only language model with a KV cache, the way Optimum
// exports them: inputs input_ids (+ attention_mask, position_ids) and past_key_values.{i}.key|value,
// outputs logits and present.{i}.key|value, one pair per layer.
import * as ort from 'onnxruntime-node'

import {ModelError} from './errors.js'

export interface TensorInfo {
  name: string
  type: string
  shape: (number | string)[]
}

export interface DecoderIo {
  inputs: TensorInfo[]
  outputs: TensorInfo[]
  numLayers: number
  /** The shape of one past key tensor as declared (symbolic dims are strings). */
  pastKeyShape: (number | string)[]
  pastValueShape: (number | string)[]
  hasAttentionMask: boolean
  hasPositionIds: boolean
}

export interface DecoderExpectation {
  numLayers?: number | undefined
  numHeads?: number | undefined
  headDim?: number | undefined
  vocabSize?: number | undefined
}

function info(m: ort.InferenceSession.ValueMetadata): TensorInfo {
  return m.isTensor ? {name: m.name, type: m.type, shape: [...m.shape]} : {name: m.name, type: 'non-tensor', shape: []}
}

/** Checks I/O names and shapes of a loaded session. Throws MODEL_ONNX_NOT_DECODER / _SHAPE_MISMATCH. */
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
  if (!inNames.has('input_ids')) throw notDecoder('no input_ids input')
  if (!outNames.has('logits')) throw notDecoder('no logits output')
  let numLayers = 0
  while (inNames.has(`past_key_values.${numLayers}.key`)) numLayers++
  if (numLayers === 0) throw notDecoder('no past_key_values.0.key input')
  for (let i = 0; i < numLayers; i++) {
    for (const kv of ['key', 'value']) {
      if (!inNames.has(`past_key_values.${i}.${kv}`)) throw notDecoder(`no past_key_values.${i}.${kv} input`)
      if (!outNames.has(`present.${i}.${kv}`)) throw notDecoder(`no present.${i}.${kv} output`)
    }
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
  const vocab = logits.shape[2]
  if (expect.vocabSize !== undefined && typeof vocab === 'number' && vocab !== expect.vocabSize) {
    throw mismatch(`logits has ${vocab} classes, config.json vocab_size is ${expect.vocabSize}`)
  }
  const pastKey = byName.get('past_key_values.0.key') as TensorInfo
  const pastValue = byName.get('past_key_values.0.value') as TensorInfo
  for (const t of [pastKey, pastValue]) {
    if (t.type !== 'float32' && t.type !== 'float16') throw mismatch(`${t.name} is ${t.type}, expected float32 or float16`)
    if (t.shape.length !== 3 && t.shape.length !== 4) throw mismatch(`${t.name} has rank ${t.shape.length}, expected 4`, {shape: t.shape})
  }
  if (pastKey.shape.length === 4) {
    const [, heads, , dim] = pastKey.shape
    if (expect.numHeads !== undefined && typeof heads === 'number' && heads !== expect.numHeads) {
      throw mismatch(`past key has ${heads} heads, config.json has ${expect.numHeads}`, {shape: pastKey.shape})
    }
    if (expect.headDim !== undefined && typeof dim === 'number' && dim !== expect.headDim) {
      throw mismatch(`past key head size is ${dim}, config.json implies ${expect.headDim}`, {shape: pastKey.shape})
    }
  }
  return {
    inputs,
    outputs,
    numLayers,
    pastKeyShape: pastKey.shape,
    pastValueShape: pastValue.shape,
    hasAttentionMask: inNames.has('attention_mask'),
    hasPositionIds: inNames.has('position_ids'),
  }
}

/** Opens an ONNX file just to read its I/O (no graph optimisation) and checks it is a KV-cache decoder. */
export async function inspectDecoderOnnx(path: string, expect: DecoderExpectation = {}): Promise<DecoderIo> {
  let session: ort.InferenceSession
  try {
    session = await ort.InferenceSession.create(path, {graphOptimizationLevel: 'disabled', intraOpNumThreads: 1, logSeverityLevel: 3})
  } catch (cause) {
    throw new ModelError('MODEL_ONNX_CORRUPT', `${path} could not be loaded as an ONNX model.`, {
      hint: 'The file is damaged or not ONNX: download or export it again.',
      cause,
      details: {path, reason: firstLine(cause)},
    })
  }
  try {
    return checkDecoderIo(session, expect, path)
  } finally {
    await session.release()
  }
}

export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  return (text.split('\n')[0] ?? text).slice(0, 300)
}
