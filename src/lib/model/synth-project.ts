/**
 * `nle model synth`: where to write (synthTarget), the model, its manifest, and the timed stages
 * the command reports (`--json`: `stages`; a terminal: one line per stage). Returns the data the
 * command prints; `synthLines` is its human summary. No rendering of progress here: the caller
 * gets stage starts and the weights' byte count.
 */
import {type StageListener, StageClock, type StageTiming} from '../stages.js'
import {recordManifest} from './save.js'
import type {SynthArch} from './synth-presets.js'
import {synthTarget} from './synth-target.js'
import {synthModel} from './synth.js'

export interface SynthProjectOptions {
  out?: string | undefined
  preset?: string | undefined
  arch?: SynthArch | undefined
  /** nle.yaml, read only without `out`. */
  configFile: string
  seed: number
  /** Replace a model already in the folder (else MODEL_OUTPUT_EXISTS, nothing written). */
  force: boolean
  externalData?: boolean | undefined
  /** A stage starts (weights, write, manifest). */
  onStage?: StageListener
  /** Weight bytes generated so far, of about `totalBytes`. */
  onWeights?: (bytes: number, totalBytes: number) => void
}

/** What `nle model synth --json` prints. */
export interface SynthProjectResult {
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
}

export async function synthProject(o: SynthProjectOptions): Promise<SynthProjectResult> {
  const {outDir, preset} = await synthTarget({out: o.out, preset: o.preset, arch: o.arch, configFile: o.configFile})
  const clock = new StageClock(o.onStage)
  let stage = ''
  const r = await synthModel({
    preset,
    outDir,
    seed: o.seed,
    ifExists: o.force ? 'replace' : 'refuse',
    ...(o.externalData === undefined ? {} : {externalData: o.externalData}),
    onProgress: (p) => {
      if (p.stage !== stage) {
        stage = p.stage
        clock.start(p.stage, p.stage === 'weights' ? 'Generating the weights' : `Writing ${p.file}`)
      }
      if (p.stage === 'weights') o.onWeights?.(p.bytes, p.totalBytes)
    },
  })
  clock.start('manifest', 'Hashing the files into nle-model.json')
  const m = await recordManifest(r.dir, 'fp32', {kind: 'synth', preset, seed: o.seed})
  const stages = clock.end()
  return {
    dir: r.dir,
    preset,
    arch: r.arch,
    seed: o.seed,
    parameters: r.parameters,
    onnxBytes: r.onnxBytes,
    dataBytes: r.dataBytes,
    files: r.files,
    manifest: m.manifestPath,
    manifestDigest: m.manifestDigest,
    stages,
  }
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1)

/** The human summary of a synth. */
export function synthLines(r: SynthProjectResult): string[] {
  const size = r.dataBytes > 0 ? `ONNX ${mb(r.onnxBytes)} MB + external data ${mb(r.dataBytes)} MB` : `ONNX ${mb(r.onnxBytes)} MB`
  return [`Wrote ${r.preset} (${r.arch}, ${(r.parameters / 1e6).toFixed(1)}M parameters, ${size}) to ${r.dir}`, `Manifest: ${r.manifest} (${r.manifestDigest})`]
}
