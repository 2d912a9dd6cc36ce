// `nle model save`: take a model in the HF ONNX layout from a local folder or from the hub, check
// it is a KV-cache decoder this engine can run, copy it into the output folder and write the manifest.
import {copyFile, mkdir, readdir, stat} from 'node:fs/promises'
import {join, relative, resolve, sep} from 'node:path'

import {ModelError} from './errors.js'
import {type DownloadProgress, HubClient, type HubOptions, REPO_ID} from './hub.js'
import {DecoderSession} from '../engine/session.js'
import {isNleError} from '../errors.js'
import {type DecoderIo, type DecoderExpectation, SUPPORTED_MODELS, firstLine} from './inspect.js'
import {type Dtype, OPTIONAL_FILES, REQUIRED_FILES, checkLayout, dtypeUnavailable, isExternalDataOf, pickOnnxFile, readDecoderConfig} from './layout.js'
import {MANIFEST_FILE, type ModelManifest, describeFiles, sha256File, writeManifest} from './manifest.js'

export interface SaveOptions {
  /** A folder in the HF ONNX layout, or a hub repository id ("owner/name"). */
  source: string
  /** Hub revision: branch, tag or commit (default "main"). */
  revision?: string
  dtype?: Dtype
  outDir: string
  /** Replace a model already saved in outDir. */
  force?: boolean
  hub?: HubOptions
  onProgress?: (p: DownloadProgress) => void
}

export interface SaveResult {
  dir: string
  manifestPath: string
  /** `sha256:<hex>` of nle-model.json: the lockfile's `modelManifest` input. */
  manifestDigest: string
  manifest: ModelManifest
}

export type SourceKind = 'local' | 'hub'

/** An existing folder is a local source; otherwise an "owner/name" id is a hub repository. */
export async function sourceKind(source: string): Promise<SourceKind> {
  try {
    if ((await stat(source)).isDirectory()) return 'local'
  } catch {
    // not a local path
  }
  if (REPO_ID.test(source) && !source.startsWith('.')) return 'hub'
  throw new ModelError('MODEL_SOURCE_NOT_FOUND', `"${source}" is neither a model folder nor a hub repository id (owner/name).`, {
    hint: 'Pass a folder with config.json, tokenizer.json and onnx/model.onnx, or a hub id such as onnx-community/bloom-560m-ONNX.',
    details: {source},
  })
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, {withFileTypes: true})) {
      const full = join(d, e.name)
      if (e.isDirectory()) await walk(full)
      else if (e.isFile()) out.push(relative(dir, full).split(sep).join('/'))
    }
  }
  await walk(dir)
  return out.sort()
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

export interface CheckedModel {
  modelType: string
  numHeads: number | undefined
  onnxFile: string
  io: DecoderIo
  /** True when the engine feeds the LM head the last position only; otherwise why not. */
  lastLogitsOnly: true | {reason: string}
  files: string[]
}

/**
 * Loads an ONNX decoder the way the engine does (at ORT's "basic" level, one thread, which loads
 * fast) and runs a prefill and one cached step: a model that loads but cannot generate (a merged
 * decoder fed the wrong branch, a cache in an unexpected layout) is refused here, not at request time.
 */
export async function probeDecoder(path: string, expect: DecoderExpectation): Promise<{io: DecoderIo; lastLogitsOnly: true | {reason: string}}> {
  let session: DecoderSession
  try {
    session = await DecoderSession.create(path, expect, {threads: 1, optimization: 'basic', prepack: false})
  } catch (cause) {
    if (cause instanceof ModelError) throw cause
    throw new ModelError('MODEL_ONNX_CORRUPT', `${path} could not be loaded as an ONNX model.`, {
      hint: 'The file is damaged or not ONNX: download or export it again.',
      cause,
      details: {path, reason: isNleError(cause) ? String(cause.details?.reason ?? cause.message) : firstLine(cause)},
    })
  }
  try {
    const vocab = expect.vocabSize
    const ids = [0, 1]
    const first = await session.forward(ids, session.emptyCache())
    const second = await session.forward([2], first.cache)
    for (const step of [first, second]) {
      if (vocab !== undefined && step.lastLogits.length !== vocab) throw new Error(`logits have ${step.lastLogits.length} classes, not ${vocab}`)
      if (!step.lastLogits.every(Number.isFinite)) throw new Error('logits are not finite numbers')
    }
    const grown = second.cache.tensors['past_key_values.0.key']
    if (grown === undefined || grown.dims[session.io.key.pastAxis] !== ids.length + 1) {
      throw new Error(`the cache did not grow along axis ${session.io.key.pastAxis} (present.0.key has shape ${JSON.stringify(grown?.dims)})`)
    }
    return {io: session.io, lastLogitsOnly: session.fullHeadReason === undefined ? true : {reason: session.fullHeadReason}}
  } catch (cause) {
    throw new ModelError('MODEL_ONNX_UNRUNNABLE', `${path} loads but cannot generate: ${isNleError(cause) ? String(cause.details?.reason ?? cause.message) : firstLine(cause)}.`, {
      hint: `nle runs ${SUPPORTED_MODELS}; export with Optimum's "text-generation-with-past" task.`,
      cause,
      details: {path},
    })
  } finally {
    await session.release()
  }
}

/** Reads config.json, checks the ONNX I/O against it and runs one step. */
export async function validateModelFolder(dir: string, dtype: Dtype): Promise<CheckedModel> {
  const {onnxFile, files} = await checkLayout(dir, dtype, await listFiles(dir))
  const config = await readDecoderConfig(dir)
  if (config.unsupported !== undefined) {
    throw new ModelError('MODEL_UNSUPPORTED', `The model in ${dir} is ${config.unsupported}.`, {hint: `nle runs ${SUPPORTED_MODELS}.`, details: {dir, modelType: config.modelType}})
  }
  const {io, lastLogitsOnly} = await probeDecoder(join(dir, onnxFile), {
    numLayers: config.numLayers,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
  })
  return {modelType: config.modelType, numHeads: config.numHeads, onnxFile, io, lastLogitsOnly, files}
}

export async function saveModel(options: SaveOptions): Promise<SaveResult> {
  const dtype = options.dtype ?? 'fp32'
  const outDir = resolve(options.outDir)
  const kind = await sourceKind(options.source)
  if (!options.force && (await exists(join(outDir, MANIFEST_FILE)))) {
    throw new ModelError('MODEL_OUTPUT_EXISTS', `A model is already saved in ${outDir}.`, {hint: 'Pass --force to replace it.', details: {outDir}})
  }
  let source: ModelManifest['source']
  let checked: CheckedModel
  if (kind === 'local') {
    const srcDir = resolve(options.source)
    checked = await validateModelFolder(srcDir, dtype)
    await mkdir(outDir, {recursive: true})
    if (srcDir !== outDir) {
      try {
        for (const f of checked.files) {
          await mkdir(join(outDir, f, '..'), {recursive: true})
          await copyFile(join(srcDir, f), join(outDir, f))
        }
      } catch (cause) {
        throw new ModelError('MODEL_WRITE_FAILED', `Could not copy the model into ${outDir}.`, {cause, details: {outDir}})
      }
    }
    source = {kind: 'local', path: srcDir}
  } else {
    const hub = new HubClient(options.hub)
    const rev = await hub.revision(options.source, options.revision ?? 'main')
    const listed = new Map(rev.files.map((f) => [f.path, f]))
    for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
      if (!listed.has(name)) {
        throw new ModelError('MODEL_TOKENIZER_MISSING', `${rev.repo} has no ${name}.`, {details: {repo: rev.repo, commit: rev.commit}})
      }
    }
    if (!listed.has('config.json')) throw new ModelError('MODEL_FILE_MISSING', `${rev.repo} has no config.json.`, {details: {repo: rev.repo}})
    const onnxFile = pickOnnxFile(dtype, (p) => listed.has(p))
    if (onnxFile === undefined) throw dtypeUnavailable(dtype, listed.keys(), {repo: rev.repo, commit: rev.commit})
    const wanted = [...REQUIRED_FILES, ...OPTIONAL_FILES.filter((f) => listed.has(f)), onnxFile, ...rev.files.map((f) => f.path).filter((p) => isExternalDataOf(onnxFile, p))]
    for (const path of wanted) {
      const file = listed.get(path)
      if (file === undefined) continue
      await hub.download(rev, file, join(outDir, path), options.onProgress)
    }
    checked = await validateModelFolder(outDir, dtype)
    source = {kind: 'hub', endpoint: hub.endpoint, repo: rev.repo, revision: rev.revision, commit: rev.commit}
  }
  return {dir: outDir, ...(await recordManifest(outDir, dtype, source, checked))}
}


/**
 * Writes `nle-model.json` for a checked model folder. `checked` is the folder's validation when
 * the caller already has it; otherwise the folder is validated first.
 */
export async function recordManifest(
  dir: string,
  dtype: Dtype,
  source: ModelManifest['source'],
  checked?: CheckedModel,
): Promise<{manifestPath: string; manifestDigest: string; manifest: ModelManifest}> {
  const v = checked ?? (await validateModelFolder(dir, dtype))
  const files = await describeFiles(dir, v.files)
  const manifest: ModelManifest = {
    schemaVersion: 1,
    source,
    dtype,
    modelType: v.modelType,
    onnx: {
      file: v.onnxFile,
      numLayers: v.io.numLayers,
      ...(v.numHeads === undefined ? {} : {numHeads: v.numHeads}),
      numKvHeads: v.io.kvHeads,
      headDim: v.io.headDim,
      cacheType: v.io.cacheType,
      logitsType: v.io.logitsType,
      mergedDecoder: v.io.hasCacheBranch,
      lastLogitsOnly: v.lastLogitsOnly,
      inputs: v.io.inputs.map((i) => i.name),
      outputs: v.io.outputs.map((o) => o.name),
    },
    files,
    totalBytes: files.reduce((a, f) => a + f.size, 0),
  }
  const manifestPath = await writeManifest(dir, manifest)
  return {manifestPath, manifestDigest: `sha256:${await sha256File(manifestPath)}`, manifest}
}
