// The batched KV cache: one tensor per layer and kind holding every active row, left-padded so
// that all rows share one past length (the padding is masked out by each row's attention mask).
// Decode steps feed onnxruntime's present tensors straight back; this module only rebuilds the
// batch when rows join or leave (one copy of the cache then, not one per step).
import {ort} from './ort.js'

import type {CacheTensorLayout} from '../model/inspect.js'

/** A batch of cache rows: tensors shaped like the model's cache with `batch` rows and `length` positions. */
export interface BatchCache {
  readonly tensors: Readonly<Record<string, ort.Tensor>>
  readonly length: number
  readonly batch: number
}

/** Where one row of a new batch comes from: row `row` of `cache`, whose first `pad` positions are padding. */
export interface RowSource {
  cache: BatchCache
  row: number
  pad: number
}

type FloatArray = Float32Array | Uint16Array

/** Layout of a cache input by name (`past_key_values.{i}.key|value`). */
export function layoutOf(name: string, key: CacheTensorLayout, value: CacheTensorLayout): CacheTensorLayout {
  return name.endsWith('.key') ? key : value
}

/**
 * Builds a batch of `sources.length` rows, in that order, right-aligned on the longest row's real
 * positions (leading positions that were padding in every row are dropped). Returns the batch and
 * each row's new padding.
 */
export function assembleBatch(
  sources: readonly RowSource[],
  layout: (name: string) => CacheTensorLayout,
): {cache: BatchCache; pads: number[]} {
  const first = sources[0]
  if (first === undefined) throw new Error('assembleBatch needs at least one row')
  const length = Math.max(...sources.map((s) => s.cache.length - s.pad))
  const pads = sources.map((s) => length - (s.cache.length - s.pad))
  const batch = sources.length
  const tensors: Record<string, ort.Tensor> = {}
  for (const name of Object.keys(first.cache.tensors)) {
    const {pastAxis} = layout(name)
    const model = first.cache.tensors[name] as ort.Tensor
    const dims = [...model.dims]
    // Rows are the outermost blocks: axis 0 is batch (4-D) or batch × heads (Bloom's 3-D cache).
    const outerPerRow = dims.slice(1, pastAxis).reduce((a, d) => a * d, 1) * ((dims[0] as number) / first.cache.batch)
    const inner = dims.slice(pastAxis + 1).reduce((a, d) => a * d, 1)
    const out = dims.slice()
    out[0] = ((dims[0] as number) / first.cache.batch) * batch
    out[pastAxis] = length
    const sample = model.data as FloatArray
    // Same element type as onnxruntime handed out (float16 arrives as raw half bits); zero-filled padding.
    const data = new (sample.constructor as new (n: number) => FloatArray)(batch * outerPerRow * length * inner)
    sources.forEach((s, dst) => {
      const src = (s.cache.tensors[name] as ort.Tensor).data as FloatArray
      const srcLen = s.cache.length
      const count = (srcLen - s.pad) * inner
      const dstPad = pads[dst] as number
      for (let o = 0; o < outerPerRow; o++) {
        const from = ((s.row * outerPerRow + o) * srcLen + s.pad) * inner
        data.set(src.subarray(from, from + count), ((dst * outerPerRow + o) * length + dstPad) * inner)
      }
    })
    tensors[name] = new ort.Tensor(model.type as 'float32' | 'float16', data, out)
  }
  return {cache: {tensors, length, batch}, pads}
}
