/** Loading the served model at start, with its files checked against the manifest. */
import {createHash} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {Engine} from '../engine/index.js'
import {isNleError} from '../errors.js'
import type {Dtype} from '../model/layout.js'
// model/manifest.js, not model/index.js: the index re-exports the hub downloader, synth and quantize,
// which the enclave runtime package must not carry.
import {MANIFEST_FILE, type ModelManifest, checkManifestFiles, readManifest} from '../model/manifest.js'
import {type ChatEngine, engineChat} from './chat.js'
import {serverError} from './errors.js'
import type {Logger} from './log.js'

export interface ModelSpec {
  path: string
  dtype?: Dtype
  /** Pinned "sha256:<hex>" of the manifest file; when set the manifest must exist and match. */
  digest?: string
  threads?: number
}

/**
 * Check every file the manifest lists against its sha256 (and the manifest against the pinned
 * digest). Returns the manifest, or null when there is none and none was pinned.
 */
export async function verifyModelFiles(spec: ModelSpec, logger: Logger): Promise<ModelManifest | null> {
  let manifestBytes: Buffer
  try {
    manifestBytes = await readFile(join(spec.path, MANIFEST_FILE))
  } catch {
    if (spec.digest !== undefined) {
      throw serverError('SERVER_MODEL_DIGEST_MISMATCH', `${join(spec.path, MANIFEST_FILE)} is missing but the model digest is pinned.`, {hint: 'Save the model with `nle model save` so it has a manifest.'})
    }
    logger.log('warn', 'model_unverified', {reason: 'no manifest'})
    return null
  }
  const actual = `sha256:${createHash('sha256').update(manifestBytes).digest('hex')}`
  if (spec.digest !== undefined && actual !== spec.digest) {
    throw serverError('SERVER_MODEL_DIGEST_MISMATCH', 'The model manifest differs from the pinned digest.', {details: {expected: spec.digest, actual}})
  }
  let manifest: ModelManifest
  try {
    manifest = await readManifest(spec.path)
  } catch (cause) {
    throw serverError('SERVER_MODEL_LOAD_FAILED', `${join(spec.path, MANIFEST_FILE)} is not a valid model manifest.`, {cause})
  }
  const mismatch = await checkManifestFiles(spec.path, manifest)
  if (mismatch?.problem === 'missing') {
    throw serverError('SERVER_MODEL_LOAD_FAILED', `The model file ${mismatch.file} listed in the manifest is missing.`, {details: {file: mismatch.file}})
  }
  if (mismatch !== undefined) {
    throw serverError('SERVER_MODEL_DIGEST_MISMATCH', `The model file ${mismatch.file} does not match its manifest digest.`, {details: {...mismatch}})
  }
  return manifest
}

/** Verify and load the model; throws SERVER_MODEL_* errors (exit codes IO / VERIFY). */
export async function loadChatModel(spec: ModelSpec, logger: Logger): Promise<ChatEngine> {
  const manifest = await verifyModelFiles(spec, logger)
  // The manifest says which file was saved (and its digest was just checked): that is the one to run.
  if (manifest !== null && spec.dtype !== undefined && spec.dtype !== manifest.dtype) {
    throw serverError('SERVER_MODEL_LOAD_FAILED', `The runtime config asks for dtype ${spec.dtype}, but the saved model is ${manifest.dtype}.`, {
      hint: `Set model.dtype: ${manifest.dtype} in nle.yaml, or save the model again with --dtype ${spec.dtype}.`,
      details: {configured: spec.dtype, saved: manifest.dtype},
    })
  }
  const which = manifest === null ? {dtype: spec.dtype ?? 'fp32'} : {dtype: manifest.dtype, onnxFile: manifest.onnx.file}
  try {
    const started = performance.now()
    const engine = await Engine.load(spec.path, {...which, ...(spec.threads === undefined ? {} : {threads: spec.threads})})
    // How the engine runs this model: operators can see whether the LM head got the last-position graph.
    logger.log('info', 'model_loaded', {
      ms: Math.round(performance.now() - started),
      threads: engine.threads,
      lastLogitsOnly: engine.decoder.lastLogitsOnly,
      ...(engine.decoder.fullHeadReason === undefined ? {} : {fullHeadReason: engine.decoder.fullHeadReason}),
      ...(engine.decoder.nbits.nodes === 0
        ? {}
        : {quantizedProducts: engine.decoder.nbits.nodes, accuracyLevelsInFile: engine.decoder.nbits.fileLevels.join(','), accuracyLevelsRun: engine.decoder.nbits.runLevels.join(',')}),
    })
    const model = manifest === null ? engine.config.modelType : manifest.source.kind === 'hub' ? manifest.source.repo : manifest.modelType
    return engineChat(engine, model)
  } catch (cause) {
    if (isNleError(cause) && cause.code.startsWith('SERVER_')) throw cause
    throw serverError('SERVER_MODEL_LOAD_FAILED', `The model in ${spec.path} could not be loaded${isNleError(cause) ? ` (${cause.code})` : ''}.`, {
      cause,
      hint: isNleError(cause) ? cause.hint : undefined,
    })
  }
}
