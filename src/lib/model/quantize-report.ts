/** What `nle model quantize` reports: the `--json` data and the human summary, from a QuantizeResult. */
import type {QuantizeResult} from './quantize.js'

/** What `nle model quantize --json` prints. */
export interface QuantizeReport {
  dir: string
  dtype: QuantizeResult['dtype']
  onnxFile: string
  dataFile: string | null
  bits: QuantizeResult['bits']
  blockSize: number
  symmetric: boolean
  accuracyLevel: number
  quantized: number
  kept: QuantizeResult['kept']
  bytes: QuantizeResult['bytes']
  quality: NonNullable<QuantizeResult['quality']> | null
  ms: number
  manifest: string
  manifestDigest: string
}

export function quantizeReport(r: QuantizeResult): QuantizeReport {
  return {
    dir: r.dir,
    dtype: r.dtype,
    onnxFile: r.onnxFile,
    dataFile: r.dataFile ?? null,
    bits: r.bits,
    blockSize: r.blockSize,
    symmetric: r.symmetric,
    accuracyLevel: r.accuracyLevel,
    quantized: r.quantized,
    kept: r.kept,
    bytes: r.bytes,
    quality: r.quality ?? null,
    ms: Math.round(r.ms),
    manifest: r.manifestPath,
    manifestDigest: r.manifestDigest,
  }
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`
const ratio = (a: number, b: number): string => `${mb(a)} → ${mb(b)} (${(a / b).toFixed(2)}x)`

/** The human summary of a quantization. */
export function quantizeLines(r: QuantizeResult): string[] {
  const q = r.quality
  return [
    `Quantized ${r.quantized} weight products to ${r.bits}-bit (${r.symmetric ? 'symmetric' : 'asymmetric'}, block ${r.blockSize}, accuracy_level ${r.accuracyLevel}) in ${(r.ms / 1000).toFixed(1)} s: ${r.dir}/${r.onnxFile}`,
    ...(r.kept.length > 0 ? [`Kept in fp32: ${r.kept.map((k) => `${k.node} (${k.reason})`).join(', ')}`] : []),
    `Weight matrices ${ratio(r.bytes.weightsBefore, r.bytes.weightsAfter)}; ONNX files ${ratio(r.bytes.fileBefore, r.bytes.fileAfter)}`,
    ...(q === undefined
      ? []
      : [`Quality: last-position logits cosine vs fp32 ${q.cosine.map((c) => c.toFixed(5)).join(', ')} (min ${q.min.toFixed(5)}); same next token on ${q.sameArgmax} of ${q.cosine.length} prompts`]),
    `Manifest: ${r.manifestPath} (${r.manifestDigest})`,
  ]
}
