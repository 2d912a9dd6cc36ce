// Block-wise weight quantization in the layout of onnxruntime's com.microsoft MatMulNBits contrib
// operator (docs/ContribOperators.md in onnxruntime):
//
//   B            uint8 [N, kBlocks, blob]      kBlocks = ceil(K / blockSize), blob = blockSize · bits / 8;
//                                              the K values of output column n, block by block,
//                                              bit-packed with the first value in the low bits of a byte
//   scales       float [N, kBlocks]            one per block, the type of the activations
//   zero_points  uint8 [N, ceil(kBlocks · bits / 8)], packed the same way (optional: 2^(bits-1) without)
//
//   weight[k][n] ≈ (q − zero_point) · scale
//
// The last block of a column is padded past K with the zero point (a weight of 0); the operator
// never reads the padding. Only the packing is here: the graph rewrite is in quantize.ts.

export type Bits = 4 | 8

export interface NBitsOptions {
  bits: Bits
  /** A power of two, at least 16 (the operator's rule). */
  blockSize: number
  /** Symmetric: no zero points (the operator's default 2^(bits-1)); otherwise one per block. */
  symmetric: boolean
}

export interface NBitsWeight {
  K: number
  N: number
  kBlocks: number
  /** B as MatMulNBits reads it: N · kBlocks · blob bytes. */
  data: Uint8Array
  /** N · kBlocks, row-major [N, kBlocks]. */
  scales: Float32Array
  /** Packed [N, ceil(kBlocks · bits / 8)] when asymmetric. */
  zeroPoints: Uint8Array | undefined
}

export function checkBlockSize(blockSize: number): boolean {
  return Number.isInteger(blockSize) && blockSize >= 16 && (blockSize & (blockSize - 1)) === 0
}

/** Bytes of the packed zero points of one column. */
export function zeroPointBytesPerColumn(kBlocks: number, bits: Bits): number {
  return Math.ceil((kBlocks * bits) / 8)
}

/** Bytes a K×N weight takes once quantized (B, scales as float32, zero points). */
export function quantizedBytes(K: number, N: number, o: NBitsOptions): number {
  const kBlocks = Math.ceil(K / o.blockSize)
  const blob = (o.blockSize * o.bits) / 8
  return N * kBlocks * blob + N * kBlocks * 4 + (o.symmetric ? 0 : N * zeroPointBytesPerColumn(kBlocks, o.bits))
}

/**
 * Quantizes a weight given column by column: `columns[n·K + k]` is weight[k][n], i.e. the transpose
 * of a K×N MatMul weight (and exactly the layout of an [N, K] tensor such as a tied embedding).
 *
 * Symmetric: the value of largest magnitude m in a block maps to −2^(bits-1) (scale = m / −2^(bits-1)),
 * so the full range of levels is used; the opposite extreme, if as large, clamps one level short.
 * Asymmetric: the block's range, widened to include 0 so that 0 stays exact, spans 0 … 2^bits − 1.
 * A block of zeros has scale 0. Rounding is Math.round (halves up).
 */
export function quantizeColumns(columns: Float32Array, K: number, N: number, o: NBitsOptions): NBitsWeight {
  if (!checkBlockSize(o.blockSize)) throw new RangeError(`block size ${o.blockSize} is not a power of two >= 16`)
  if (columns.length !== K * N) throw new RangeError(`expected ${K * N} weights, got ${columns.length}`)
  const {bits, blockSize, symmetric} = o
  const kBlocks = Math.ceil(K / blockSize)
  const blob = (blockSize * bits) / 8
  const levels = (1 << bits) - 1
  const mid = 1 << (bits - 1)
  const zpPerColumn = zeroPointBytesPerColumn(kBlocks, bits)
  const data = new Uint8Array(N * kBlocks * blob)
  const scales = new Float32Array(N * kBlocks)
  const zeroPoints = symmetric ? undefined : new Uint8Array(N * zpPerColumn)
  for (let n = 0; n < N; n++) {
    const column = n * K
    for (let b = 0; b < kBlocks; b++) {
      const from = b * blockSize
      const to = Math.min(K, from + blockSize)
      let scale: number
      let zp: number
      if (symmetric) {
        let m = 0
        for (let k = from; k < to; k++) {
          const w = columns[column + k]!
          if (Math.abs(w) > Math.abs(m)) m = w
        }
        // Stored as float32: compute with the rounded scale so that q and the stored scale agree.
        scale = m === 0 ? 0 : Math.fround(m / -mid)
        zp = mid
      } else {
        let lo = 0
        let hi = 0
        for (let k = from; k < to; k++) {
          const w = columns[column + k]!
          if (w < lo) lo = w
          if (w > hi) hi = w
        }
        scale = Math.fround((hi - lo) / levels)
        zp = scale === 0 ? mid : Math.min(levels, Math.max(0, Math.round(-lo / scale)))
      }
      scales[n * kBlocks + b] = scale
      const inv = scale === 0 ? 0 : 1 / scale
      const base = (n * kBlocks + b) * blob
      for (let i = 0; i < blockSize; i++) {
        const k = from + i
        const q = k < to ? Math.min(levels, Math.max(0, Math.round(columns[column + k]! * inv) + zp)) : zp
        if (bits === 8) data[base + i] = q
        else data[base + (i >> 1)]! |= (i & 1) === 0 ? q : q << 4
      }
      if (zeroPoints !== undefined) {
        if (bits === 8) zeroPoints[n * zpPerColumn + b] = zp
        else zeroPoints[n * zpPerColumn + (b >> 1)]! |= (b & 1) === 0 ? zp : zp << 4
      }
    }
    // The unused high nibble of an odd block count holds the default zero point, like an absent one.
    if (zeroPoints !== undefined && bits === 4 && kBlocks % 2 === 1) zeroPoints[n * zpPerColumn + (kBlocks >> 1)]! |= mid << 4
  }
  return {K, N, kBlocks, data, scales, zeroPoints}
}

/** The weights a quantized matrix stands for, column by column (`out[n·K + k]` = weight[k][n]). */
export function dequantizeColumns(w: NBitsWeight, o: NBitsOptions): Float32Array {
  const {K, N, kBlocks} = w
  const {bits, blockSize} = o
  const blob = (blockSize * bits) / 8
  const zpPerColumn = zeroPointBytesPerColumn(kBlocks, bits)
  const out = new Float32Array(K * N)
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const scale = w.scales[n * kBlocks + b]!
      let zp = 1 << (bits - 1)
      if (w.zeroPoints !== undefined) {
        const byte = w.zeroPoints[n * zpPerColumn + (bits === 8 ? b : b >> 1)]!
        zp = bits === 8 ? byte : (b & 1) === 0 ? byte & 0xf : byte >> 4
      }
      const base = (n * kBlocks + b) * blob
      for (let i = 0; i < blockSize && b * blockSize + i < K; i++) {
        const byte = w.data[bits === 8 ? base + i : base + (i >> 1)]!
        const q = bits === 8 ? byte : (i & 1) === 0 ? byte & 0xf : byte >> 4
        out[n * K + b * blockSize + i] = (q - zp) * scale
      }
    }
  }
  return out
}

/** The columns of a row-major K×N matrix (a MatMul weight): its N×K transpose. */
export function transposeKN(rows: Float32Array, K: number, N: number): Float32Array {
  const out = new Float32Array(K * N)
  for (let k = 0; k < K; k++) {
    const row = k * N
    for (let n = 0; n < N; n++) out[n * K + k] = rows[row + n]!
  }
  return out
}
