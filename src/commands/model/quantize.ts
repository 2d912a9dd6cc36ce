import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {DEFAULT_BLOCK_SIZE, QUANTIZE_TARGETS, type QuantizeProgress, quantizeModel} from '../../lib/model/index.js'

export default class ModelQuantize extends BaseCommand<typeof ModelQuantize> {
  static override summary = 'Quantize an fp32 ONNX decoder to 8-bit (q8) or 4-bit (q4) weights, in onnxruntime\'s MatMulNBits layout.'
  static override description = `IN is a model folder in the Hugging Face ONNX layout with an fp32 onnx/model.onnx (or Optimum's onnx/decoder_model_merged.onnx). Every MatMul or Gemm whose weight is a float32 initializer (or the transpose of one: a tied LM head) becomes com.microsoft MatMulNBits with block-wise weights (--block-size values along K share a scale, and a zero point for q4 unless --symmetric; q8 is symmetric unless --no-symmetric) and accuracy_level 4 (activations quantized to int8 per block, integer products: the fast path on CPU). Embeddings (Gather) stay fp32; --keep lm-head keeps the LM head fp32 too.
The result is written to OUT under the name transformers.js gives the dtype (q8: onnx/model_quantized.onnx, q4: onnx/model_q4.onnx) with its weights in <file>_data, beside a copy of the folder's config and tokenizer files, and OUT/nle-model.json records it (as \`nle model save --dtype q8|q4\` would). OUT may be IN: the quantized file is added beside the fp32 one. Existing files are not replaced without --force.`
  static override examples = [
    '<%= config.bin %> model quantize --to q4 ./exports/llama --out ./llama-q4',
    '<%= config.bin %> model quantize --to q8 ./model --out ./model --force',
    '<%= config.bin %> model quantize --to q4 ./model --out ./model-q4 --symmetric --keep lm-head --json',
  ]
  static override args = {
    in: Args.directory({description: 'Model folder with an fp32 onnx/model.onnx.', required: true, exists: true}),
  }
  static override flags = {
    to: Flags.option({options: QUANTIZE_TARGETS, description: 'q4: 4-bit weights (onnx/model_q4.onnx); q8: 8-bit weights (onnx/model_quantized.onnx).', required: true})(),
    out: Flags.directory({char: 'o', description: 'Folder to write the quantized model into (may be IN).', required: true}),
    symmetric: Flags.boolean({
      description:
        'Symmetric blocks, no zero points (--no-symmetric: a zero point per block, half a byte (q4) or a byte (q8) more per block for a smaller quantization error). Default: symmetric for q8, asymmetric for q4.',
      allowNo: true,
    }),
    'block-size': Flags.integer({description: 'Weights per block along K: a power of two, at least 16.', default: DEFAULT_BLOCK_SIZE}),
    keep: Flags.option({options: ['lm-head'] as const, description: 'Leave in fp32: lm-head (the product that gives the logits).', multiple: true})(),
    'accuracy-level': Flags.integer({description: 'MatMulNBits accuracy_level: 4 = int8 compute (the fast path), 0 = fp32 compute (for measurements).', default: 4, min: 0, max: 4, hidden: true}),
    force: Flags.boolean({description: 'Replace the quantized file, its data file, the manifest and the copied files when OUT has them.'}),
    quality: Flags.boolean({
      description:
        'Then measure the quality drop: cosine similarity of the last-position logits of the quantized file against the fp32 one on three short prompts (1.0 = identical). --no-quality skips it (it loads both files, one after the other).',
      default: true,
      allowNo: true,
    }),
  }

  async run(): Promise<Record<string, unknown>> {
    const {flags, args} = this
    const bar = process.stderr.isTTY && !this.jsonEnabled() ? progress() : undefined
    const r = await quantizeModel({
      inDir: args.in,
      outDir: flags.out,
      to: flags.to,
      blockSize: flags['block-size'],
      accuracyLevel: flags['accuracy-level'],
      keepLmHead: (flags.keep ?? []).includes('lm-head'),
      force: flags.force,
      measureQuality: flags.quality,
      ...(flags.symmetric === undefined ? {} : {symmetric: flags.symmetric}),
      ...(bar === undefined ? {} : {onProgress: bar.update}),
    })
    bar?.done()
    const data = {
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
    if (!this.jsonEnabled()) {
      const ratio = (a: number, b: number): string => `${mb(a)} → ${mb(b)} (${(a / b).toFixed(2)}x)`
      this.log(`Quantized ${r.quantized} weight products to ${r.bits}-bit (${r.symmetric ? 'symmetric' : 'asymmetric'}, block ${r.blockSize}, accuracy_level ${r.accuracyLevel}) in ${(r.ms / 1000).toFixed(1)} s: ${r.dir}/${r.onnxFile}`)
      if (r.kept.length > 0) this.log(`Kept in fp32: ${r.kept.map((k) => `${k.node} (${k.reason})`).join(', ')}`)
      this.log(`Weight matrices ${ratio(r.bytes.weightsBefore, r.bytes.weightsAfter)}; ONNX files ${ratio(r.bytes.fileBefore, r.bytes.fileAfter)}`)
      if (r.quality !== undefined) {
        const q = r.quality
        this.log(
          `Quality: last-position logits cosine vs fp32 ${q.cosine.map((c) => c.toFixed(5)).join(', ')} (min ${q.min.toFixed(5)}); same next token on ${q.sameArgmax} of ${q.cosine.length} prompts`,
        )
      }
      this.log(`Manifest: ${r.manifestPath} (${r.manifestDigest})`)
    }
    return data
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`
}

/** One progress line on stderr, redrawn in place (TTY only). */
function progress(): {update: (p: QuantizeProgress) => void; done: () => void} {
  let shown = false
  return {
    update(p) {
      shown = true
      process.stderr.write(`\r\u001B[2K[${p.done}/${p.total}] ${p.tensor}`)
    },
    done() {
      if (shown) process.stderr.write('\r\u001B[2K')
    },
  }
}
