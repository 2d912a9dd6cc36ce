// The size of a decoder's KV cache: what one token of one sequence holds, keys and values for
// every layer. The enclave server budgets its memory with it (src/lib/server/kv-budget.ts) and
// `nle allocator` sizes the enclave with it (src/lib/host/memory.ts).
import type {DecoderConfig, Dtype} from './layout.js'

export interface KvShape {
  numLayers: number
  /** Heads of the cache (num_key_value_heads: fewer than the attention heads for grouped-query attention). */
  kvHeads: number
  headDim: number
  /** 4 for a float32 cache, 2 for float16. */
  bytesPerValue: number
}

/** layers × 2 (key and value) × KV heads × head size × bytes per value. */
export function kvBytesPerToken(s: KvShape): number {
  return s.numLayers * 2 * s.kvHeads * s.headDim * s.bytesPerValue
}

/** The cache's element size for a dtype: the fp16 exports keep an fp16 cache, every other one (the quantized ones too) fp32. */
export function kvBytesPerValue(dtype: Dtype | undefined): number {
  return dtype === 'fp16' || dtype === 'q4f16' ? 2 : 4
}

/** The cache's shape from config.json's facts, or undefined when config.json does not say enough. */
export function kvShapeFromConfig(config: DecoderConfig, dtype?: Dtype): KvShape | undefined {
  const {numLayers, numKvHeads, headDim} = config
  if (!numLayers || !numKvHeads || !headDim || !Number.isInteger(headDim)) return undefined
  return {numLayers, kvHeads: numKvHeads, headDim, bytesPerValue: kvBytesPerValue(dtype)}
}
