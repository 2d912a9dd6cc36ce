// The model manifest (`nle-model.json`): what was saved, from where, and each file's size and
// sha256. The EIF build copies exactly these files and the lockfile pins the manifest's digest.
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {z} from 'zod'

import {ModelError} from './errors.js'
import {DTYPES} from './layout.js'

export const MANIFEST_FILE = 'nle-model.json'

export const ManifestFileSchema = z.object({
  path: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
})

export const ModelManifestSchema = z.object({
  schemaVersion: z.literal(1),
  source: z.union([
    z.object({kind: z.literal('local'), path: z.string()}),
    z.object({kind: z.literal('hub'), endpoint: z.string(), repo: z.string(), revision: z.string(), commit: z.string()}),
    z.object({kind: z.literal('synth'), preset: z.string(), seed: z.number().int()}),
  ]),
  dtype: z.enum(DTYPES),
  modelType: z.string(),
  onnx: z.object({
    file: z.string(),
    numLayers: z.number().int().positive(),
    /** Facts of the KV cache as the graph and config.json agree on them (absent in older manifests). */
    numHeads: z.number().int().positive().optional(),
    numKvHeads: z.number().int().positive().optional(),
    headDim: z.number().int().positive().optional(),
    cacheType: z.enum(['float32', 'float16']).optional(),
    logitsType: z.enum(['float32', 'float16']).optional(),
    /** Optimum's merged decoder (use_cache_branch). */
    mergedDecoder: z.boolean().optional(),
    /** Whether the engine feeds the LM head the last position only, or why not. */
    lastLogitsOnly: z.union([z.literal(true), z.object({reason: z.string()})]).optional(),
    inputs: z.array(z.string()),
    outputs: z.array(z.string()),
  }),
  files: z.array(ManifestFileSchema),
  totalBytes: z.number().int().nonnegative(),
})

export type ModelManifest = z.infer<typeof ModelManifestSchema>
export type ManifestFile = z.infer<typeof ManifestFileSchema>

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, {highWaterMark: 1 << 20})) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Size and sha256 of each file (paths relative to dir, POSIX), sorted by path. */
export async function describeFiles(dir: string, paths: readonly string[]): Promise<ManifestFile[]> {
  const out: ManifestFile[] = []
  for (const path of [...paths].sort()) {
    const full = join(dir, path)
    out.push({path, size: (await stat(full)).size, sha256: await sha256File(full)})
  }
  return out
}

/** One file of a manifest that is missing or whose bytes differ from its recorded sha256. */
export interface ManifestMismatch {
  file: string
  problem: 'missing' | 'changed'
  expected: string
  actual?: string
}

/**
 * Re-hashes every file the manifest lists in `dir` and returns the first that is missing or
 * changed, or undefined when all match.
 */
export async function checkManifestFiles(dir: string, manifest: ModelManifest): Promise<ManifestMismatch | undefined> {
  for (const file of manifest.files) {
    let actual: string
    try {
      actual = await sha256File(join(dir, file.path))
    } catch {
      return {file: file.path, problem: 'missing', expected: file.sha256}
    }
    if (actual !== file.sha256) return {file: file.path, problem: 'changed', expected: file.sha256, actual}
  }
  return undefined
}

export async function writeManifest(dir: string, manifest: ModelManifest): Promise<string> {
  const path = join(dir, MANIFEST_FILE)
  await writeFile(path, JSON.stringify(ModelManifestSchema.parse(manifest), null, 2) + '\n')
  return path
}

export async function readManifest(dir: string): Promise<ModelManifest> {
  const path = join(dir, MANIFEST_FILE)
  let raw: string
  try {
    raw = await readFile(path, 'utf8')
  } catch (cause) {
    throw new ModelError('MODEL_FILE_MISSING', `${path} is missing.`, {cause, hint: 'Run `nle model save` first.', details: {path}})
  }
  const parsed = ModelManifestSchema.safeParse(safeJson(raw))
  if (!parsed.success) {
    throw new ModelError('MODEL_CONFIG_INVALID', `${path} is not a valid model manifest.`, {details: {path, issues: parsed.error.issues.slice(0, 5)}})
  }
  return parsed.data
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
