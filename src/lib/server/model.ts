/** Loading the served model at start, with its files checked against the manifest. */
import {createHash} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {availableParallelism, freemem} from 'node:os'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {WorkerEngine} from '../engine/worker-engine.js'
import {isNleError} from '../errors.js'
import {kvBytesPerToken} from '../model/kv-size.js'
import type {Dtype} from '../model/layout.js'
// model/manifest.js, not model/index.js: the index re-exports the hub downloader, synth and quantize,
// which the enclave runtime package must not carry.
import {MANIFEST_FILE, type ModelManifest, checkManifestFiles, readManifest} from '../model/manifest.js'
import {type ChatEngine, engineChat} from './chat.js'
import {serverError} from './errors.js'
import {MAX_AUTO_BATCH, MIB, autoBatchLimit, autoKvBudgetBytes} from './kv-budget.js'
import type {Logger} from '../net/log.js'

export interface ModelSpec {
  path: string
  dtype?: Dtype
  /** Pinned "sha256:<hex>" of the manifest file; when set the manifest must exist and match. */
  digest?: string
  threads?: number
  /** The manifest of a model already verified file by file (a sealed model opened in memory). */
  verified?: ModelManifest
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

export interface ServingOptions {
  /** The batch limit (server.generationConcurrency): a number, or 'auto' (from the memory, the vCPUs and the model). */
  concurrency?: number | 'auto'
  /** The KV-cache budget (server.kvCacheMiB): MiB, or 'auto' (from the memory left once the model loaded). */
  kvCacheMiB?: number | 'auto'
  /** runtime.maxTokens: the longest answer, for the automatic batch's typical sequence. */
  maxTokens?: number
  /** The memory free once the model loaded and the vCPUs (default os.freemem() then, os.availableParallelism()). */
  freeBytes?: () => number
  vcpus?: number
}

export interface ServingModel {
  chat: ChatEngine
  /** Generations decoded together (the server's generation slots). */
  concurrency: number
  kvBudgetBytes: number
  kvBytesPerToken: number
}

/** Verify and load the model; throws SERVER_MODEL_* errors (exit codes IO / VERIFY). */
export async function loadChatModel(spec: ModelSpec, logger: Logger): Promise<ChatEngine> {
  return (await loadServingModel(spec, {}, logger)).chat
}

/**
 * Verify and load the model into the engine's worker thread (the HTTP side stays responsive while
 * it computes), and size the batch and the KV budget. Throws SERVER_MODEL_* errors.
 */
export async function loadServingModel(spec: ModelSpec, serving: ServingOptions, logger: Logger): Promise<ServingModel> {
  const manifest = spec.verified ?? (await verifyModelFiles(spec, logger))
  // The manifest says which file was saved (and its digest was just checked): that is the one to run.
  if (manifest !== null && spec.dtype !== undefined && spec.dtype !== manifest.dtype) {
    throw serverError('SERVER_MODEL_LOAD_FAILED', `The runtime config asks for dtype ${spec.dtype}, but the saved model is ${manifest.dtype}.`, {
      hint: `Set model.dtype: ${manifest.dtype} in nle.yaml, or save the model again with --dtype ${spec.dtype}.`,
      details: {configured: spec.dtype, saved: manifest.dtype},
    })
  }
  const which = manifest === null ? {dtype: spec.dtype ?? 'fp32'} : {dtype: manifest.dtype, onnxFile: manifest.onnx.file}
  const configured = serving.concurrency ?? 'auto'
  let engine: WorkerEngine
  try {
    const started = performance.now()
    engine = await WorkerEngine.load(spec.path, {
      ...which,
      ...(spec.threads === undefined ? {} : {threads: spec.threads}),
      maxBatch: configured === 'auto' ? MAX_AUTO_BATCH : configured,
    })
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
  } catch (cause) {
    if (isNleError(cause) && cause.code.startsWith('SERVER_')) throw cause
    throw serverError('SERVER_MODEL_LOAD_FAILED', `The model in ${spec.path} could not be loaded${isNleError(cause) ? ` (${cause.code})` : ''}.`, {
      cause,
      hint: isNleError(cause) ? cause.hint : undefined,
    })
  }
  const bytesPerToken = kvBytesPerToken(engine.decoder.kv)
  const freeBytes = (serving.freeBytes ?? freemem)()
  const budgetBytes = serving.kvCacheMiB === undefined || serving.kvCacheMiB === 'auto' ? autoKvBudgetBytes(freeBytes) : Math.floor(serving.kvCacheMiB * MIB)
  const auto = autoBatchLimit(budgetBytes, {freeBytes, vcpus: serving.vcpus ?? availableParallelism(), bytesPerToken, contextTokens: engine.config.maxPositions, maxTokens: serving.maxTokens ?? 256})
  // The engine batches at most what it loaded with (1 for a model whose layout cannot be batched exactly).
  const concurrency = Math.min(engine.batching.maxBatch, configured === 'auto' ? auto : configured)
  logger.log('info', 'serving', {
    concurrency,
    concurrencySource: configured === 'auto' ? 'auto' : 'config',
    ...(engine.batching.unbatchable === undefined ? {} : {unbatchable: engine.batching.unbatchable}),
    kvBytesPerToken: bytesPerToken,
    kvBudgetMiB: Math.floor(budgetBytes / MIB),
    kvBudgetSource: serving.kvCacheMiB === undefined || serving.kvCacheMiB === 'auto' ? 'auto' : 'config',
    freeMiB: Math.floor(freeBytes / MIB),
  })
  const model = manifest === null ? engine.config.modelType : manifest.source.kind === 'hub' ? manifest.source.repo : manifest.modelType
  return {chat: engineChat(engine, model, {bytesPerToken}), concurrency, kvBudgetBytes: budgetBytes, kvBytesPerToken: bytesPerToken}
}
