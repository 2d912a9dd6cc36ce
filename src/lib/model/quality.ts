// How far a quantized model's outputs are from its fp32 original: the cosine similarity of the
// last-position logits after a prefill of the same prompt ids, both run by the engine's
// onnxruntime-node session (the graph as the engine loads it).
import {DecoderSession} from '../engine/session.js'
import {TextTokenizer} from '../engine/tokenizer.js'
import {type Dtype, findOnnxFile, onnxCandidates, readDecoderConfig} from './layout.js'
import {ModelError} from './errors.js'
import {join} from 'node:path'

export interface ModelRef {
  dir: string
  dtype: Dtype
}

export interface LogitsSimilarity {
  /** One cosine per prompt. */
  cosine: number[]
  min: number
  /** Prompts whose argmax (the greedy next token) is the same in both. */
  sameArgmax: number
}

export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`vectors of ${a.length} and ${b.length} values`)
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!
    na += a[i]! * a[i]!
    nb += b[i]! * b[i]!
  }
  return na === 0 || nb === 0 ? (na === nb ? 1 : 0) : dot / Math.sqrt(na * nb)
}

function argmax(v: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i
  return best
}

async function lastLogits(ref: ModelRef, prompts: readonly (readonly number[])[], threads: number): Promise<Float32Array[]> {
  const file = await findOnnxFile(ref.dir, ref.dtype)
  if (file === undefined) throw new ModelError('MODEL_DTYPE_UNAVAILABLE', `${ref.dir} has no ${ref.dtype} ONNX file (${onnxCandidates(ref.dtype).join(' or ')}).`, {details: {...ref}})
  const config = await readDecoderConfig(ref.dir)
  const session = await DecoderSession.create(
    join(ref.dir, file),
    {numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim, vocabSize: config.vocabSize},
    // Pre-packing on whatever the size: without it onnxruntime runs MatMulNBits through its fp32
    // fallback whatever the accuracy_level (measured: tokens then equal a level-0 file's).
    {threads, prepack: true},
  )
  try {
    const out: Float32Array[] = []
    for (const ids of prompts) out.push(Float32Array.from((await session.forward(ids, session.emptyCache())).lastLogits))
    return out
  } finally {
    await session.release()
  }
}

/** Cosine similarity of the last-position logits of `candidate` and `reference` on each prompt. */
export async function lastLogitsSimilarity(reference: ModelRef, candidate: ModelRef, prompts: readonly (readonly number[])[], options: {threads?: number} = {}): Promise<LogitsSimilarity> {
  if (prompts.length === 0 || prompts.some((p) => p.length === 0)) throw new RangeError('at least one non-empty prompt is needed')
  const threads = options.threads ?? 1
  const a = await lastLogits(reference, prompts, threads)
  const b = await lastLogits(candidate, prompts, threads)
  const cosine = a.map((x, i) => cosineSimilarity(x, b[i]!))
  return {cosine, min: Math.min(...cosine), sameArgmax: a.filter((x, i) => argmax(x) === argmax(b[i]!)).length}
}

/** The texts `nle model quantize` measures the quality drop on (tokenized by the model's own tokenizer). */
export const QUALITY_TEXTS = [
  'The benefits assistant answers questions about the dental plan, the deductible and',
  'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n',
  'In 1969 the first crewed landing on the Moon was followed by',
] as const

/** lastLogitsSimilarity on QUALITY_TEXTS, tokenized with the reference folder's tokenizer. */
export async function quantizationQuality(reference: ModelRef, candidate: ModelRef, options: {threads?: number} = {}): Promise<LogitsSimilarity> {
  const tokenizer = await TextTokenizer.load(reference.dir)
  const prompts = QUALITY_TEXTS.map((t) => tokenizer.encode(t)).filter((ids) => ids.length > 0)
  return lastLogitsSimilarity(reference, candidate, prompts, options)
}
