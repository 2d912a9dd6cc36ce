/**
 * Sealing a saved model folder (./format.ts): each file the model manifest lists is read once, a
 * chunk at a time, hashed (it must still match the manifest) and encrypted; only ciphertext is
 * written, into a fresh folder that replaces the output once every file is sealed. The plaintext
 * data key lives in this process only while sealing and is zeroed afterwards.
 */
import {createCipheriv} from 'node:crypto'
import {createHash} from 'node:crypto'
import {mkdir, open, readFile, readdir, rename, rm, writeFile} from 'node:fs/promises'
import {basename, dirname, join, resolve, sep} from 'node:path'

import {isNleError} from '../../errors.js'
import {MANIFEST_FILE, type ModelManifest, ModelManifestSchema} from '../manifest.js'
import {sealError} from './errors.js'
import {
  DEFAULT_CHUNK_BYTES,
  KEY_BYTES,
  MAX_CHUNK_BYTES,
  MIN_CHUNK_BYTES,
  SEALED_FORMAT,
  SEALED_MANIFEST_FILE,
  SEALED_VERSION,
  type SealedFile,
  type SealedManifest,
  chunkAad,
  chunkCount,
  chunkNonce,
  encryptionContextFor,
  sealedName,
  sha256,
} from './format.js'

/** A data key as KMS GenerateDataKey returns it. */
export interface DataKey {
  plaintext: Uint8Array
  ciphertextBlob: Uint8Array
  /** The key's ARN. */
  keyId: string
}

export type GenerateDataKey = (encryptionContext: Record<string, string>) => Promise<DataKey>

export interface SealProgress {
  file: string
  index: number
  files: number
  bytesDone: number
  bytesTotal: number
}

export interface SealOptions {
  modelDir: string
  outDir: string
  generateDataKey: GenerateDataKey
  chunkBytes?: number
  /** Replace an output folder that already holds files. */
  force?: boolean
  onProgress?: (p: SealProgress) => void
}

export interface SealResult {
  outDir: string
  manifestPath: string
  /** "sha256:<hex>" of the model manifest (the encryption context names it). */
  modelDigest: string
  /** "sha256:<hex>" of nle-sealed.json (what an image carrying it pins). */
  sealedManifestDigest: string
  keyId: string
  files: number
  chunks: number
  plainBytes: number
  sealedBytes: number
}

/** Read and check the model manifest of a saved model folder (SEAL_SOURCE_INVALID). */
export async function readModelManifestBytes(modelDir: string): Promise<{bytes: Buffer; manifest: ModelManifest; digest: string}> {
  let bytes: Buffer
  try {
    bytes = await readFile(join(modelDir, MANIFEST_FILE))
  } catch (cause) {
    throw sealError('SEAL_SOURCE_INVALID', `${join(modelDir, MANIFEST_FILE)} is missing.`, {cause, details: {modelDir}})
  }
  let raw: unknown
  try {
    raw = JSON.parse(bytes.toString('utf8'))
  } catch (cause) {
    throw sealError('SEAL_SOURCE_INVALID', `${join(modelDir, MANIFEST_FILE)} is not JSON.`, {cause, details: {modelDir}})
  }
  const parsed = ModelManifestSchema.safeParse(raw)
  if (!parsed.success) throw sealError('SEAL_SOURCE_INVALID', `${join(modelDir, MANIFEST_FILE)} is not a valid model manifest.`, {details: {modelDir}})
  const root = resolve(modelDir)
  for (const f of parsed.data.files) {
    if (!resolve(root, f.path).startsWith(root + sep)) throw sealError('SEAL_SOURCE_INVALID', `The model manifest lists a file outside the model folder (${f.path}).`, {details: {file: f.path}})
  }
  if (parsed.data.files.length === 0) throw sealError('SEAL_SOURCE_INVALID', 'The model manifest lists no files.', {details: {modelDir}})
  return {bytes, manifest: parsed.data, digest: `sha256:${sha256(bytes)}`}
}

async function isNonEmptyDir(path: string): Promise<boolean> {
  return readdir(path).then(
    (names) => names.length > 0,
    () => false,
  )
}

/** Seal one file into `to`: returns its sealed-chunk digests. The plaintext is read a chunk at a time. */
async function sealFile(o: {from: string; to: string; key: Uint8Array; digest: string; index: number; path: string; size: number; sha256: string; chunkBytes: number; progress: (n: number) => void}): Promise<string[]> {
  const input = await open(o.from, 'r').catch((cause: unknown) => {
    throw sealError('SEAL_SOURCE_INVALID', `The model file ${o.path} listed in ${MANIFEST_FILE} is missing.`, {cause, details: {file: o.path}})
  })
  let output
  try {
    output = await open(o.to, 'wx', 0o644)
  } catch (cause) {
    await input.close()
    throw sealError('SEAL_WRITE_FAILED', `Cannot create ${o.to}.`, {cause, details: {path: o.to}})
  }
  const hash = createHash('sha256')
  const buffer = Buffer.allocUnsafe(Math.min(o.chunkBytes, Math.max(o.size, 1)))
  const digests: string[] = []
  const n = chunkCount(o.size, o.chunkBytes)
  try {
    for (let i = 0; i < n; i++) {
      const want = Math.min(o.chunkBytes, o.size - i * o.chunkBytes)
      let got = 0
      while (got < want) {
        const {bytesRead} = await input.read(buffer, got, want - got, i * o.chunkBytes + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      if (got !== want) throw sealError('SEAL_SOURCE_INVALID', `The model file ${o.path} is shorter than ${MANIFEST_FILE} says (it changed since it was saved).`, {details: {file: o.path}})
      const plain = buffer.subarray(0, want)
      hash.update(plain)
      const cipher = createCipheriv('aes-256-gcm', o.key, chunkNonce(o.index, i), {authTagLength: 16})
      cipher.setAAD(chunkAad(o.digest, o.index, o.path, i, i === n - 1))
      const sealed = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()])
      digests.push(sha256(sealed))
      await output.write(sealed)
      o.progress(want)
    }
    const {bytesRead: extra} = await input.read(Buffer.alloc(1), 0, 1, o.size)
    if (extra !== 0 || hash.digest('hex') !== o.sha256) {
      throw sealError('SEAL_SOURCE_INVALID', `The model file ${o.path} does not match its sha256 in ${MANIFEST_FILE} (it changed since it was saved).`, {hint: 'Save the model again (`nle model save`), then seal it.', details: {file: o.path}})
    }
  } catch (error) {
    if (isNleError(error)) throw error
    throw sealError('SEAL_WRITE_FAILED', `Sealing ${o.path} failed: ${(error as Error).message}`, {cause: error, details: {file: o.path}})
  } finally {
    buffer.fill(0)
    await input.close()
    await output.close()
  }
  return digests
}

/**
 * Seal the model in `modelDir` into `outDir` under a fresh data key from `generateDataKey` (KMS
 * GenerateDataKey with the encryption context naming the model manifest's digest).
 */
export async function sealModel(options: SealOptions): Promise<SealResult> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES
  if (!Number.isInteger(chunkBytes) || chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES || chunkBytes % 16 !== 0) {
    throw sealError('SEAL_SOURCE_INVALID', `The chunk size must be a multiple of 16 between ${MIN_CHUNK_BYTES} and ${MAX_CHUNK_BYTES} bytes.`, {details: {chunkBytes}})
  }
  const modelDir = resolve(options.modelDir)
  const outDir = resolve(options.outDir)
  if (outDir === modelDir || outDir.startsWith(modelDir + sep) || modelDir.startsWith(outDir + sep)) {
    throw sealError('SEAL_OUTPUT_EXISTS', 'The sealed folder must be outside the model folder (and not contain it).', {details: {modelDir, outDir}})
  }
  const {bytes, manifest, digest} = await readModelManifestBytes(modelDir)
  if (!options.force && (await isNonEmptyDir(outDir))) {
    throw sealError('SEAL_OUTPUT_EXISTS', `${outDir} already holds files.`, {details: {outDir}})
  }
  const context = encryptionContextFor(digest)
  const dataKey = await options.generateDataKey(context)
  const key = Buffer.from(dataKey.plaintext)
  dataKey.plaintext.fill(0)
  const staging = join(dirname(outDir), `.${basename(outDir)}.sealing-${process.pid}`)
  try {
    if (key.length !== KEY_BYTES) throw sealError('SEAL_KEY_GENERATE_FAILED', `KMS returned a ${key.length}-byte data key; AES-256 needs ${KEY_BYTES}.`)
    await rm(staging, {recursive: true, force: true})
    await mkdir(staging, {recursive: true, mode: 0o755}).catch((cause: unknown) => {
      throw sealError('SEAL_WRITE_FAILED', `Cannot create ${staging}.`, {cause, details: {path: staging}})
    })
    const total = manifest.files.reduce((s, f) => s + f.size, 0)
    let done = 0
    const files: SealedFile[] = []
    for (const [index, f] of manifest.files.entries()) {
      options.onProgress?.({file: f.path, index, files: manifest.files.length, bytesDone: done, bytesTotal: total})
      const chunks = await sealFile({
        from: join(modelDir, f.path),
        to: join(staging, sealedName(index)),
        key,
        digest,
        index,
        path: f.path,
        size: f.size,
        sha256: f.sha256,
        chunkBytes,
        progress: (n) => {
          done += n
          options.onProgress?.({file: f.path, index, files: manifest.files.length, bytesDone: done, bytesTotal: total})
        },
      })
      files.push({path: f.path, size: f.size, sealed: sealedName(index), chunks})
    }
    const sealed: SealedManifest = {
      format: SEALED_FORMAT,
      version: SEALED_VERSION,
      cipher: 'AES-256-GCM',
      chunkBytes,
      model: {manifestDigest: digest, manifest: bytes.toString('base64')},
      key: {keyId: dataKey.keyId, wrapped: Buffer.from(dataKey.ciphertextBlob).toString('base64'), encryptionContext: context},
      files,
    }
    const text = JSON.stringify(sealed, null, 2) + '\n'
    await writeFile(join(staging, SEALED_MANIFEST_FILE), text, {mode: 0o644})
    await rm(outDir, {recursive: true, force: true})
    await rename(staging, outDir).catch((cause: unknown) => {
      throw sealError('SEAL_WRITE_FAILED', `Cannot move the sealed files to ${outDir}.`, {cause, details: {outDir}})
    })
    const chunkTotal = files.reduce((s, f) => s + f.chunks.length, 0)
    return {
      outDir,
      manifestPath: join(outDir, SEALED_MANIFEST_FILE),
      modelDigest: digest,
      sealedManifestDigest: `sha256:${sha256(Buffer.from(text, 'utf8'))}`,
      keyId: dataKey.keyId,
      files: files.length,
      chunks: chunkTotal,
      plainBytes: total,
      sealedBytes: total + chunkTotal * 16,
    }
  } catch (error) {
    await rm(staging, {recursive: true, force: true})
    throw error
  } finally {
    key.fill(0)
  }
}
