// Where `nle model synth` writes, and which preset, when the flags leave it open: in an nle
// project (nle.yaml found), the folder the build reads (model.path) and, for source: synth, the
// preset nle.yaml names; elsewhere --out is needed.
import {resolve} from 'node:path'

import {loadConfig} from '../config/load.js'
import {isNleError} from '../errors.js'
import {ModelError} from './errors.js'
import {type PresetName, type SynthArch, presetId} from './synth-presets.js'

export interface SynthTargetOptions {
  /** --out, when given. */
  out?: string
  /** --preset, when given. */
  preset?: string
  arch?: SynthArch
  /** nle.yaml to read model.path and model.preset from when --out is absent. */
  configFile: string
}

export interface SynthTarget {
  outDir: string
  preset: PresetName
  /** The config the folder (and maybe the preset) came from, when one was read. */
  config?: string
}

export async function synthTarget(o: SynthTargetOptions): Promise<SynthTarget> {
  if (o.out !== undefined) return {outDir: o.out, preset: presetId(o.arch, o.preset ?? 'tiny')}
  let loaded
  try {
    loaded = await loadConfig(o.configFile)
  } catch (error) {
    if (isNleError(error) && error.code === 'CONFIG_NOT_FOUND') {
      throw new ModelError('MODEL_SYNTH_NO_TARGET', `No --out given and no ${o.configFile} here to take model.path from.`, {
        hint: 'Pass --out DIR, or run it in an nle project (`nle init`), where it writes to model.path.',
        details: {config: o.configFile},
        cause: error,
      })
    }
    throw error
  }
  const {config, dir, file} = loaded
  const preset = o.preset === undefined && o.arch === undefined && config.model.source === 'synth' ? config.model.preset : presetId(o.arch, o.preset ?? 'tiny')
  return {outDir: resolve(dir, config.model.path), preset, config: file}
}
