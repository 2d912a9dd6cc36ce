// IEEE 754 half precision → float32. onnxruntime-node hands float16 tensors to JavaScript as a
// Uint16Array of raw bits (Node 20 has no Float16Array), so logits must be widened before sampling.

let table: Float32Array | undefined

/** All 65,536 half values as float32 (256 KiB, built on first use). */
function halfTable(): Float32Array {
  if (table !== undefined) return table
  const t = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1
    const exp = (h >> 10) & 0x1f
    const frac = h & 0x3ff
    if (exp === 0) t[h] = sign * frac * 2 ** -24
    else if (exp === 31) t[h] = frac === 0 ? sign * Infinity : NaN
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15)
  }
  table = t
  return t
}

/** Widens raw float16 bits to float32 values. */
export function halfToFloat(bits: Uint16Array): Float32Array {
  const t = halfTable()
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i] as number] as number
  return out
}
