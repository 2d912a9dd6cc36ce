// Generates a real decoder-only transformer as ONNX, with seeded random weights, in the Hugging Face /
// transformers.js layout:
//
//   DIR/config.json  generation_config.json  tokenizer.json  tokenizer_config.json
//   DIR/special_tokens_map.json  DIR/onnx/model.onnx  [DIR/onnx/model.onnx_data]
//
// Two architectures, each in the I/O layout of Optimum's export of it: GPT-2 (synth-gpt2.ts) and
// Llama (synth-llama.ts: RoPE, RMSNorm, SwiGLU, grouped-query attention, untied head). Both use
// GPT-2's real byte-level BPE tokenizer. Big presets write their weights as ONNX external data
// (`model.onnx_data`, as Optimum does), streamed to disk one tensor at a time.
import {mkdir, rm, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {ModelError} from './errors.js'
import {MANIFEST_FILE} from './manifest.js'
import {GPT2_EOS, GPT2_EOS_ID, gpt2TokenizerConfig, gpt2TokenizerJson} from './gpt2-tokenizer.js'
import {GraphBuilder} from './onnx-graph.js'
import {buildGpt2Onnx, gpt2Config, gpt2ParameterCount} from './synth-gpt2.js'
import {buildLlamaOnnx, llamaConfig, llamaParameterCount} from './synth-llama.js'
import {type Gpt2Shape, type LlamaShape, type PresetName, type SynthArch, type SynthPreset, resolvePreset} from './synth-presets.js'

export {
  ARCHS,
  PRESETS,
  PRESET_CHOICES,
  PRESET_NAMES,
  SYNTH_FORMAT,
  presetId,
  resolvePreset,
  type Gpt2Shape,
  type LlamaShape,
  type PresetName,
  type SynthArch,
  type SynthPreset,
} from './synth-presets.js'

export interface SynthOptions {
  preset: PresetName | SynthPreset
  outDir: string
  seed?: number
  /** Overrides the preset's choice of external data. */
  externalData?: boolean
  /** Progress of the long part (the weights of a big preset take tens of seconds), then of the write. */
  onProgress?: (p: SynthProgress) => void
  /**
   * What to do when outDir already holds a model (any file synth writes, or a manifest):
   * replace it (the default: dev and demo regenerate their own working folders) or refuse with
   * MODEL_OUTPUT_EXISTS before writing anything (`nle model synth` without --force).
   */
  ifExists?: 'replace' | 'refuse'
}

/** `weights`: float bytes made so far of about `totalBytes`; `write`: the ONNX file is being written. */
export type SynthProgress = {stage: 'weights'; bytes: number; totalBytes: number} | {stage: 'write'; file: string}

export interface SynthResult {
  dir: string
  files: string[]
  arch: SynthArch
  parameters: number
  /** Bytes of onnx/model.onnx, and of onnx/model.onnx_data (0 without external data). */
  onnxBytes: number
  dataBytes: number
  shape: Gpt2Shape | LlamaShape
  seed: number
}

export function parameterCount(preset: SynthPreset): number {
  return preset.arch === 'gpt2' ? gpt2ParameterCount(preset.shape) : llamaParameterCount(preset.shape)
}

/** Writes a complete model folder. The same preset and seed always give the same bytes. */
export async function synthModel(options: SynthOptions): Promise<SynthResult> {
  const preset = typeof options.preset === 'string' ? resolvePreset(options.preset) : options.preset
  const external = options.externalData ?? preset.externalData
  const seed = options.seed ?? 42
  const dir = options.outDir
  const maxPositions = preset.arch === 'gpt2' ? preset.shape.nPositions : preset.shape.maxPositions
  const eos = {bos_token_id: GPT2_EOS_ID, eos_token_id: GPT2_EOS_ID}
  const files: Record<string, string> = {
    'config.json': json({
      ...(preset.arch === 'gpt2' ? gpt2Config(preset.shape) : llamaConfig(preset.shape)),
      // As onnx-community repositories declare external data to transformers.js.
      ...(external ? {'transformers.js_config': {use_external_data_format: {'model.onnx': 1}}} : {}),
    }),
    'generation_config.json': json(eos),
    'tokenizer.json': JSON.stringify(gpt2TokenizerJson()),
    'tokenizer_config.json': json(gpt2TokenizerConfig(maxPositions)),
    'special_tokens_map.json': json({bos_token: GPT2_EOS, eos_token: GPT2_EOS, unk_token: GPT2_EOS}),
  }
  const onnxPath = join(dir, 'onnx', 'model.onnx')
  const dataPath = `${onnxPath}_data`
  if (options.ifExists === 'refuse') {
    const targets = [...Object.keys(files), 'onnx/model.onnx', 'onnx/model.onnx_data', MANIFEST_FILE]
    const present = (await Promise.all(targets.map(async (f) => ((await exists(join(dir, f))) ? f : undefined)))).filter((f) => f !== undefined)
    if (present.length > 0) {
      throw new ModelError('MODEL_OUTPUT_EXISTS', `${dir} already holds a model (${present.join(', ')}); nothing was written.`, {
        hint: 'Pass --force to replace it, or choose another --out.',
        details: {outDir: dir, existing: present},
      })
    }
  }
  let builder: GraphBuilder | undefined
  let dataBytes = 0
  try {
    await mkdir(join(dir, 'onnx'), {recursive: true})
    for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data)
    // A data file left by an earlier run would be taken for this model's.
    await rm(dataPath, {force: true})
    const progress = options.onProgress
    const totalBytes = parameterCount(preset) * 4
    let made = 0
    const onWeight = progress ? (n: number): void => progress({stage: 'weights', bytes: (made = Math.min(totalBytes, made + n)), totalBytes}) : undefined
    builder = new GraphBuilder({...(external ? {externalData: {path: dataPath, location: 'model.onnx_data'}} : {}), ...(onWeight ? {onWeight} : {})})
    progress?.({stage: 'weights', bytes: 0, totalBytes})
    const bytes = preset.arch === 'gpt2' ? buildGpt2Onnx(preset.shape, seed, builder) : buildLlamaOnnx(preset.shape, {seed, builder})
    progress?.({stage: 'write', file: 'onnx/model.onnx'})
    await writeFile(onnxPath, bytes)
    if (external) dataBytes = (await stat(dataPath)).size
  } catch (cause) {
    if (cause instanceof ModelError) throw cause
    throw new ModelError('MODEL_WRITE_FAILED', `Could not write the model to ${dir}.`, {cause, hint: 'Check that the folder is writable and has room.'})
  } finally {
    builder?.close()
  }
  const onnxBytes = (await stat(onnxPath)).size
  const written = [...Object.keys(files), 'onnx/model.onnx', ...(external ? ['onnx/model.onnx_data'] : [])]
  return {dir, files: written.sort(), arch: preset.arch, parameters: parameterCount(preset), onnxBytes, dataBytes, shape: preset.shape, seed}
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n'
}
