import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {downloadDetail, stageLines, wantsStageLines} from '../../cli/progress.js'
import {DTYPES, saveModel} from '../../lib/model/index.js'
import {type SaveReport, saveLines, saveReport} from '../../lib/model/save-report.js'

export default class ModelSave extends BaseCommand<typeof ModelSave> {
  static override summary = 'Save a model in the Hugging Face ONNX layout, checked, with a manifest of its files.'
  static override description = `SOURCE is a local folder (config.json, tokenizer.json, tokenizer_config.json, an onnx/model*.onnx for the chosen --dtype, as Optimum and onnx-community export them) or a Hugging Face Hub repository id such as onnx-community/bloom-560m-ONNX.
Hub downloads resume after an interruption (run the command again), follow HF_ENDPOINT, send HF_TOKEN (or --token) as a bearer token, and check each LFS file against its sha256 oid. The ONNX must be a decoder with past_key_values inputs and present outputs.
Writes OUT/nle-model.json: every file with its size and sha256. The EIF build copies exactly these files; the lockfile records the manifest's digest.`
  static override examples = [
    '<%= config.bin %> model save ./exports/bloom-560m --out model',
    '<%= config.bin %> model save onnx-community/bloom-560m-ONNX --revision main --dtype q8 --out model',
    'HF_ENDPOINT=https://hub.internal <%= config.bin %> model save org/model --out model --json',
  ]
  static override args = {
    source: Args.string({description: 'A model folder, or a hub repository id (owner/name).', required: true}),
  }
  static override flags = {
    out: Flags.directory({char: 'o', description: 'Folder to save the model into.', default: 'model'}),
    dtype: Flags.option({options: DTYPES, description: 'Which ONNX variant, as transformers.js names them: fp32 (onnx/model.onnx), fp16 (model_fp16), q8 (model_quantized), int8, uint8, q4, q4f16, bnb4; Optimum\'s legacy decoder_model_merged*.onnx is found too.', default: 'fp32' as const})(),
    revision: Flags.string({description: 'Hub branch, tag or commit.', default: 'main'}),
    token: Flags.string({description: 'Hub access token (default: $HF_TOKEN).', env: 'HF_TOKEN'}),
    endpoint: Flags.string({description: 'Hub address (default: $HF_ENDPOINT or https://huggingface.co).'}),
    force: Flags.boolean({description: 'Replace a model already saved in --out.'}),
  }

  async run(): Promise<SaveReport> {
    const {flags, args} = this
    // On a terminal: a line per downloaded file on stderr, with a bar redrawn in place.
    const lines = wantsStageLines(this.jsonEnabled()) ? stageLines() : undefined
    const result = await saveModel({
      source: args.source,
      outDir: flags.out,
      dtype: flags.dtype,
      revision: flags.revision,
      force: flags.force,
      hub: {
        ...(flags.token === undefined ? {} : {token: flags.token}),
        ...(flags.endpoint === undefined ? {} : {endpoint: flags.endpoint}),
      },
      ...(lines === undefined ? {} : {onProgress: downloadDetail(lines)}),
    }).catch((error: unknown) => {
      lines?.end(false)
      throw error
    })
    lines?.end(true)
    const data = saveReport(result)
    if (!this.jsonEnabled()) for (const line of saveLines(data)) this.log(line)
    return data
  }
}
