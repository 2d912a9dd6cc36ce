// The shapes `nle model synth` generates, by preset id: data only, so that nle.yaml's schema can
// name them without loading the generators.
import {ModelError} from './errors.js'

export interface Gpt2Shape {
  nLayer: number
  nEmbd: number
  nHead: number
  nPositions: number
  /** Std-dev of the normal initialisation of weights (GPT-2 uses 0.02). */
  initStd: number
}

/** GPT-2 shapes. */
export const GPT2_PRESETS = {
  /** ~3.4 MB: the test model. */
  tiny: {nLayer: 2, nEmbd: 16, nHead: 2, nPositions: 256, initStd: 0.3},
  /** gpt2-medium's shape: 24 layers, 1024 hidden, 16 heads, ~355M parameters (~1.4 GB fp32). */
  'gpt2-medium': {nLayer: 24, nEmbd: 1024, nHead: 16, nPositions: 1024, initStd: 0.02},
} as const satisfies Record<string, Gpt2Shape>

export interface LlamaShape {
  nLayer: number
  hidden: number
  nHead: number
  /** Heads of the KV cache (grouped-query attention when fewer than nHead; nHead must be a multiple). */
  nKvHead: number
  intermediate: number
  maxPositions: number
  ropeTheta: number
  rmsNormEps: number
  /** Std-dev of the normal initialisation of weights (initializer_range). */
  initStd: number
}

/** Llama shapes (preset ids `llama-<name>`). */
export const LLAMA_PRESETS = {
  /** 2 layers, 16 hidden, 4 heads over 2 KV heads (head size 4), ~6.5 MB: the test model. */
  tiny: {nLayer: 2, hidden: 16, nHead: 4, nKvHead: 2, intermediate: 48, maxPositions: 256, ropeTheta: 10000, rmsNormEps: 1e-6, initStd: 0.3},
  /** Qwen2.5-0.5B's shape: 24 layers, 896 hidden, 14 heads over 2 KV heads, MLP 4864; ~448M parameters with GPT-2's vocabulary (~1.8 GB fp32). */
  '0.5b': {nLayer: 24, hidden: 896, nHead: 14, nKvHead: 2, intermediate: 4864, maxPositions: 32768, ropeTheta: 10000, rmsNormEps: 1e-6, initStd: 0.02},
} as const satisfies Record<string, LlamaShape>

export const ARCHS = ['gpt2', 'llama'] as const
export type SynthArch = (typeof ARCHS)[number]

export type SynthPreset = ({arch: 'gpt2'; shape: Gpt2Shape} | {arch: 'llama'; shape: LlamaShape}) & {
  /** Write the weights as external data (onnx/model.onnx_data) instead of inside model.onnx. */
  externalData: boolean
}

/**
 * Bumped, per architecture, whenever the generator writes a different graph for the same preset and
 * seed (caches of generated models, such as the engine benchmark's, key on it).
 * gpt2 2: the LM head is a final MatMul. llama 1: the first.
 */
export const SYNTH_FORMAT = {gpt2: 2, llama: 1} as const satisfies Record<SynthArch, number>

/** Every preset by id; `tiny` is GPT-2's (its meaning before Llama existed). */
export const PRESETS = {
  tiny: {arch: 'gpt2', shape: GPT2_PRESETS.tiny, externalData: false},
  'gpt2-medium': {arch: 'gpt2', shape: GPT2_PRESETS['gpt2-medium'], externalData: false},
  'llama-tiny': {arch: 'llama', shape: LLAMA_PRESETS.tiny, externalData: false},
  'llama-0.5b': {arch: 'llama', shape: LLAMA_PRESETS['0.5b'], externalData: true},
} as const satisfies Record<string, SynthPreset>

export type PresetName = keyof typeof PRESETS
export const PRESET_NAMES = Object.keys(PRESETS) as [PresetName, ...PresetName[]]
/** What `--preset` accepts: a preset id, or a shape name taken with `--arch` (llama + tiny = llama-tiny). */
export const PRESET_CHOICES = [...new Set([...PRESET_NAMES, ...Object.keys(GPT2_PRESETS), ...Object.keys(LLAMA_PRESETS)])]

const unknownPreset = (what: string): ModelError =>
  new ModelError('MODEL_PRESET_UNKNOWN', `Unknown model preset ${what}.`, {
    hint: `Use one of: ${PRESET_NAMES.join(', ')} (or --arch gpt2 with ${Object.keys(GPT2_PRESETS).join('|')}, --arch llama with ${Object.keys(LLAMA_PRESETS).join('|')}).`,
  })

export function resolvePreset(name: string): SynthPreset {
  if (!Object.hasOwn(PRESETS, name)) throw unknownPreset(`"${name}"`)
  return PRESETS[name as PresetName]
}

/**
 * The preset id for `--arch` and `--preset`: a shape name within the architecture (`llama` + `tiny`
 * is `llama-tiny`; `gpt2` + `tiny` is `tiny`), or a preset id, which must then be of that
 * architecture. Without an architecture, a preset id (whose shape names are GPT-2's: `tiny`).
 */
export function presetId(arch: SynthArch | undefined, preset: string): PresetName {
  const within = arch === 'llama' ? `llama-${preset}` : preset
  if (arch !== undefined && Object.hasOwn(PRESETS, within) && PRESETS[within as PresetName].arch === arch) return within as PresetName
  if (Object.hasOwn(PRESETS, preset) && (arch === undefined || PRESETS[preset as PresetName].arch === arch)) return preset as PresetName
  throw unknownPreset(arch === undefined ? `"${preset}"` : `"${preset}" for --arch ${arch}`)
}

