import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {stageLines, wantsStageLines} from '../../cli/progress.js'
import {DEFAULT_BLOCK_SIZE, QUANTIZE_TARGETS, type QuantizeProgress, quantizeModel} from '../../lib/model/index.js'
import {type QuantizeReport, quantizeLines, quantizeReport} from '../../lib/model/quantize-report.js'

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

  async run(): Promise<QuantizeReport> {
    const {flags, args} = this
    // On a terminal: a line per stage on stderr, the tensor being written redrawn in place.
    const lines = wantsStageLines(this.jsonEnabled()) ? stageLines() : undefined
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
      ...(lines ? {onStage: (_stage: string, label: string) => lines.start(label), onProgress: (p: QuantizeProgress) => lines.detail(`[${p.done}/${p.total}] ${p.tensor}`)} : {}),
    }).catch((error: unknown) => {
      lines?.end(false)
      throw error
    })
    lines?.end(true)
    if (!this.jsonEnabled()) for (const line of quantizeLines(r)) this.log(line)
    return quantizeReport(r)
  }
}
