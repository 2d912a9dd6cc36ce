// `nle model save`: take a model in the HF ONNX layout from a local folder or from the hub, check
// it is a KV-cache decoder this engine can run, copy it into the output folder and write the manifest.
import {copyFile, mkdir, readdir, stat} from 'node:fs/promises'
import {join, relative, resolve, sep} from 'node:path'

import {ModelError} from './errors.js'
import {type DownloadProgress, HubClient, type HubOptions, REPO_ID} from './hub.js'
import {type DecoderIo, inspectDecoderOnnx} from './inspect.js'
import {type Dtype, ONNX_FILE, OPTIONAL_FILES, REQUIRED_FILES, checkLayout, isExternalDataOf, readDecoderConfig} from './layout.js'
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

/** Reads config.json and checks the ONNX I/O against it. */
export async function validateModelFolder(dir: string, dtype: Dtype): Promise<{modelType: string; io: DecoderIo; files: string[]}> {
  const files = await checkLayout(dir, dtype, await listFiles(dir))
  const config = await readDecoderConfig(dir)
  const headDim = config.hiddenSize !== undefined && config.numHeads ? config.hiddenSize / config.numHeads : undefined
  const io = await inspectDecoderOnnx(join(dir, ONNX_FILE[dtype]), {
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    headDim,
    vocabSize: config.vocabSize,
  })
  return {modelType: config.modelType, io, files}
}

export async function saveModel(options: SaveOptions): Promise<SaveResult> {
  const dtype = options.dtype ?? 'fp32'
  const outDir = resolve(options.outDir)
  const kind = await sourceKind(options.source)
  if (!options.force && (await exists(join(outDir, MANIFEST_FILE)))) {
    throw new ModelError('MODEL_OUTPUT_EXISTS', `A model is already saved in ${outDir}.`, {hint: 'Pass --force to replace it.', details: {outDir}})
  }
  let source: ModelManifest['source']
  let checked: Awaited<ReturnType<typeof validateModelFolder>>
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
    const onnxFile = ONNX_FILE[dtype]
    if (!listed.has(onnxFile)) {
      const available = (Object.keys(ONNX_FILE) as Dtype[]).filter((d) => listed.has(ONNX_FILE[d]))
      throw new ModelError('MODEL_DTYPE_UNAVAILABLE', `${rev.repo} has no ${dtype} ONNX file (${onnxFile}).`, {
        hint: available.length > 0 ? `Available: --dtype ${available.join(' | ')}.` : 'The repository has no onnx/model*.onnx: is it an ONNX export?',
        details: {repo: rev.repo, dtype, available},
      })
    }
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
  checked?: Awaited<ReturnType<typeof validateModelFolder>>,
): Promise<{manifestPath: string; manifestDigest: string; manifest: ModelManifest}> {
  const v = checked ?? (await validateModelFolder(dir, dtype))
  const files = await describeFiles(dir, v.files)
  const manifest: ModelManifest = {
    schemaVersion: 1,
    source,
    dtype,
    modelType: v.modelType,
    onnx: {
      file: ONNX_FILE[dtype],
      numLayers: v.io.numLayers,
      inputs: v.io.inputs.map((i) => i.name),
      outputs: v.io.outputs.map((o) => o.name),
    },
    files,
    totalBytes: files.reduce((a, f) => a + f.size, 0),
  }
  const manifestPath = await writeManifest(dir, manifest)
  return {manifestPath, manifestDigest: `sha256:${await sha256File(manifestPath)}`, manifest}
}
