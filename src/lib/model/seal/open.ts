/**
 * Opening a sealed model (./format.ts) inside the enclave: the data key from KMS (Decrypt with a
 * Recipient: `unwrap`), the sealed files streamed from wherever the host keeps them (`fetch`), each
 * chunk checked and decrypted into memory, each file's sha256 checked against the model manifest.
 * Nothing is written anywhere: the result is the model's files as buffers.
 *
 * Fails closed, each way with its own code: a sealed manifest for another model than the pinned one
 * (SEAL_MODEL_MISMATCH), a key KMS will not release (SEAL_KEY_REFUSED), a chunk changed, moved within
 * its file or taken from another file (SEAL_CHUNK_TAMPERED / _REORDERED / _SWAPPED), a file cut short
 * or too long (SEAL_TRUNCATED), plaintext that is not the manifest's (SEAL_FILE_DIGEST_MISMATCH).
 */
import {createDecipheriv, createHash} from 'node:crypto'

import {isNleError} from '../../errors.js'
import {type ModelManifest, ModelManifestSchema} from '../manifest.js'
import {sealError} from './errors.js'
import {KEY_BYTES, type SealedFile, type SealedManifest, TAG_BYTES, chunkAad, chunkCount, chunkNonce, chunkPlainBytes, encryptionContextFor, sha256} from './format.js'

/** KMS Decrypt of the wrapped data key (in the enclave: with a Recipient, ../../server/kms-mode.ts). */
export type UnwrapModelKey = (wrapped: Uint8Array, encryptionContext: Record<string, string>) => Promise<Uint8Array>

/** The sealed bytes of one file, as the host serves them (not trusted). */
export type FetchSealed = (file: SealedFile, index: number) => Promise<AsyncIterable<Uint8Array>>

export interface OpenOptions {
  sealed: SealedManifest
  /** The model the enclave must serve ("sha256:<hex>" of its manifest): required, so nothing opens unpinned. */
  expectedModelDigest: string
  unwrap: UnwrapModelKey
  fetch: FetchSealed
  onProgress?: (p: {file: string; index: number; files: number; bytesDone: number; bytesTotal: number}) => void
}

export interface OpenedModel {
  manifest: ModelManifest
  manifestBytes: Buffer
  /** The model's files by path (each its own ArrayBuffer, so it can be transferred to a worker). */
  files: Map<string, Buffer>
  plainBytes: number
}

/** The model manifest a sealed manifest carries, checked against its digest and the sealed file list. */
export function sealedModelManifest(sealed: SealedManifest): {manifest: ModelManifest; bytes: Buffer} {
  const bytes = Buffer.from(sealed.model.manifest, 'base64')
  if (`sha256:${sha256(bytes)}` !== sealed.model.manifestDigest) {
    throw sealError('SEAL_MANIFEST_INVALID', 'The model manifest inside the sealed manifest does not match its digest.')
  }
  let manifest: ModelManifest
  try {
    manifest = ModelManifestSchema.parse(JSON.parse(bytes.toString('utf8')))
  } catch (cause) {
    throw sealError('SEAL_MANIFEST_INVALID', 'The model manifest inside the sealed manifest is not a valid model manifest.', {cause})
  }
  if (manifest.files.length !== sealed.files.length || manifest.files.some((f, i) => f.path !== sealed.files[i]!.path || f.size !== sealed.files[i]!.size)) {
    throw sealError('SEAL_MANIFEST_INVALID', 'The sealed manifest\'s files are not the model manifest\'s (paths, sizes or order differ).')
  }
  return {manifest, bytes}
}

function keyError(error: unknown): Error {
  const code = isNleError(error) ? error.code : undefined
  if (code === 'CHANNEL_KMS_DENIED' || code === 'CHANNEL_KMS_REJECTED') {
    return sealError('SEAL_KEY_REFUSED', `KMS refused to release the model's data key (${code}).`, {cause: error, details: {kmsCode: code}})
  }
  return sealError('SEAL_KEY_UNAVAILABLE', `The model's data key could not be unwrapped${code ? ` (${code})` : ''}.`, {cause: error, ...(code ? {details: {kmsCode: code}} : {})})
}

/** Where each sealed chunk digest of the manifest belongs (to tell a moved chunk from a changed one). */
function chunkIndex(sealed: SealedManifest): Map<string, {file: number; chunk: number}> {
  const at = new Map<string, {file: number; chunk: number}>()
  for (const [file, f] of sealed.files.entries()) for (const [chunk, d] of f.chunks.entries()) if (!at.has(d)) at.set(d, {file, chunk})
  return at
}

/** Open one sealed file from its byte stream into a buffer of its plaintext. */
async function openFile(o: {
  sealed: SealedManifest
  index: number
  key: Buffer
  stream: AsyncIterable<Uint8Array>
  where: Map<string, {file: number; chunk: number}>
  expectedSha256: string
  progress: (n: number) => void
}): Promise<Buffer> {
  const {sealed, index, key} = o
  const f = sealed.files[index]!
  const digest = sealed.model.manifestDigest
  const n = chunkCount(f.size, sealed.chunkBytes)
  const out = Buffer.allocUnsafeSlow(f.size)
  const hash = createHash('sha256')
  let chunk = 0
  let want = chunkPlainBytes(f.size, sealed.chunkBytes, 0) + TAG_BYTES
  let pending = Buffer.allocUnsafe(want)
  let filled = 0
  /** Why a chunk that did not authenticate failed: moved in its file, from another file, or changed. */
  const diagnose = (got: Buffer, cause?: unknown): Error => {
    const found = o.where.get(sha256(got))
    const details = {file: f.path, chunk}
    if (found?.file === index && found.chunk !== chunk) return sealError('SEAL_CHUNK_REORDERED', `Chunk ${chunk} of ${f.path} is the file's chunk ${found.chunk}.`, {details: {...details, isChunk: found.chunk}})
    if (found !== undefined && found.file !== index) return sealError('SEAL_CHUNK_SWAPPED', `Chunk ${chunk} of ${f.path} is a chunk of ${sealed.files[found.file]!.path}.`, {details: {...details, isFile: sealed.files[found.file]!.path}})
    return sealError('SEAL_CHUNK_TAMPERED', `Chunk ${chunk} of ${f.path} does not authenticate under the model's key.`, {...(cause === undefined ? {} : {cause}), details})
  }
  const finish = (): void => {
    const got = pending.subarray(0, want)
    const plainLen = want - TAG_BYTES
    // The tag decides (it binds the model, the file, the place and the last-chunk flag); the chunk
    // digests of the manifest are read only to name what went wrong.
    const decipher = createDecipheriv('aes-256-gcm', key, chunkNonce(index, chunk), {authTagLength: TAG_BYTES})
    decipher.setAAD(chunkAad(digest, index, f.path, chunk, chunk === n - 1))
    decipher.setAuthTag(got.subarray(plainLen))
    const at = chunk * sealed.chunkBytes
    const plain = decipher.update(got.subarray(0, plainLen))
    try {
      decipher.final()
    } catch (cause) {
      plain.fill(0)
      throw diagnose(got, cause)
    }
    plain.copy(out, at)
    hash.update(plain)
    plain.fill(0)
    o.progress(plainLen)
    chunk++
    filled = 0
    if (chunk < n) {
      want = chunkPlainBytes(f.size, sealed.chunkBytes, chunk) + TAG_BYTES
      if (pending.length < want) pending = Buffer.allocUnsafe(want)
    }
  }
  try {
    for await (const piece of o.stream) {
      let from = 0
      while (from < piece.length) {
        if (chunk >= n) throw sealError('SEAL_TRUNCATED', `${f.sealed} has bytes past its last chunk.`, {details: {file: f.path}})
        const take = Math.min(want - filled, piece.length - from)
        pending.set(piece.subarray(from, from + take), filled)
        filled += take
        from += take
        if (filled === want) finish()
      }
    }
    if (chunk < n) throw sealError('SEAL_TRUNCATED', `${f.sealed} ends in chunk ${chunk} of ${n}.`, {details: {file: f.path, chunk, chunks: n}})
    if (hash.digest('hex') !== o.expectedSha256) {
      throw sealError('SEAL_FILE_DIGEST_MISMATCH', `${f.path}, opened, does not match its sha256 in the model manifest.`, {details: {file: f.path}})
    }
    return out
  } catch (error) {
    out.fill(0)
    throw error
  } finally {
    pending.fill(0)
  }
}

/** Open every file of a sealed model into memory (see the module comment for the checks). */
export async function openSealedModel(options: OpenOptions): Promise<OpenedModel> {
  const {sealed} = options
  if (sealed.model.manifestDigest !== options.expectedModelDigest) {
    throw sealError('SEAL_MODEL_MISMATCH', 'The sealed manifest is of another model than the one pinned.', {details: {pinned: options.expectedModelDigest, sealed: sealed.model.manifestDigest}})
  }
  const {manifest, bytes} = sealedModelManifest(sealed)
  const context = encryptionContextFor(sealed.model.manifestDigest)
  // The context is always the pinned model's: a sealed manifest naming another context changes nothing KMS sees.
  const same = Object.keys(sealed.key.encryptionContext).length === 1 && sealed.key.encryptionContext[Object.keys(context)[0]!] === Object.values(context)[0]
  if (!same) throw sealError('SEAL_MANIFEST_INVALID', 'The sealed manifest\'s encryption context does not name its model.')
  let key: Buffer
  try {
    const raw = await options.unwrap(Buffer.from(sealed.key.wrapped, 'base64'), context)
    key = Buffer.from(raw)
    raw.fill(0)
  } catch (error) {
    throw keyError(error)
  }
  const files = new Map<string, Buffer>()
  try {
    if (key.length !== KEY_BYTES) throw sealError('SEAL_KEY_REFUSED', `The unwrapped data key has ${key.length} bytes, not ${KEY_BYTES}.`)
    const where = chunkIndex(sealed)
    const total = sealed.files.reduce((s, f) => s + f.size, 0)
    let done = 0
    for (const [index, f] of sealed.files.entries()) {
      options.onProgress?.({file: f.path, index, files: sealed.files.length, bytesDone: done, bytesTotal: total})
      const stream = await options.fetch(f, index)
      const plain = await openFile({sealed, index, key, stream, where, expectedSha256: manifest.files[index]!.sha256, progress: (n) => (done += n)})
      files.set(f.path, plain)
    }
    return {manifest, manifestBytes: bytes, files, plainBytes: total}
  } catch (error) {
    for (const b of files.values()) b.fill(0)
    throw error
  } finally {
    key.fill(0)
  }
}
