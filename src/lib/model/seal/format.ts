/**
 * The sealed-model format: a model's files encrypted with one data key in authenticated chunks, and
 * the small manifest (`nle-sealed.json`) that describes them.
 *
 * Every file the model manifest (nle-model.json) lists becomes `NNNN.sealed` (its index in that
 * list): the file cut into chunks of `chunkBytes` (the last one shorter; an empty file is one empty
 * chunk), each chunk AES-256-GCM encrypted and followed by its 16-byte tag. Per chunk:
 *
 *   nonce = fileIndex (u32 BE) ‖ chunkIndex (u64 BE)            — unique: one fresh data key per seal
 *   AAD   = "nle-sealed-model/1\n" ‖ manifest digest ‖ "\n" ‖ fileIndex (u32) ‖ len(path) (u16) ‖ path
 *           ‖ chunkIndex (u64) ‖ final (u8: 1 on a file's last chunk)
 *
 * so a chunk decrypts only at its own place in its own file of its own model, and a file cut after
 * any chunk but its last one fails (no chunk there says final). The sealed manifest also lists each
 * sealed chunk's sha256: when a chunk does not authenticate, the opener looks its digest up to tell
 * a reordered, swapped or changed chunk apart (the tag is what protects; the digests name what went
 * wrong). The data key travels
 * only wrapped by KMS (GenerateDataKey's CiphertextBlob), under an encryption context that names the
 * model manifest's digest, so KMS releases it only for that model.
 *
 * This module has no I/O and no KMS: ./seal.ts writes the format, ./open.ts reads it.
 */
import {createHash} from 'node:crypto'

import {z} from 'zod'

import {sealError} from './errors.js'

export const SEALED_MANIFEST_FILE = 'nle-sealed.json'
export const SEALED_FORMAT = 'nle-sealed-model'
export const SEALED_VERSION = 1
/** Default plaintext bytes per chunk (4 MiB): large enough for full AES-GCM speed, small enough to keep a chunk in memory. */
export const DEFAULT_CHUNK_BYTES = 4 << 20
export const MIN_CHUNK_BYTES = 4 << 10
export const MAX_CHUNK_BYTES = 64 << 20
export const TAG_BYTES = 16
export const KEY_BYTES = 32
/** The encryption-context key that names the model (its manifest digest) for KMS. */
export const CONTEXT_KEY = 'nle:model-manifest'
/** The largest sealed manifest read (a 100 GB model in 4 MiB chunks lists ~25,000 digests: ~1.7 MB). */
export const MAX_SEALED_MANIFEST_BYTES = 16 << 20

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/)
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/)
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/)

export const SealedFileSchema = z.strictObject({
  /** The file's path in the model folder (POSIX, relative), as the model manifest lists it. */
  path: z.string().min(1),
  /** Plaintext bytes (as the model manifest lists them). */
  size: z.number().int().nonnegative(),
  /** The sealed file's name in the sealed folder. */
  sealed: z.string().regex(/^\d{4,}\.sealed$/),
  /** sha256 of each sealed chunk (ciphertext ‖ tag), in order. */
  chunks: z.array(sha256Hex).min(1),
})

export const SealedManifestSchema = z.strictObject({
  format: z.literal(SEALED_FORMAT),
  version: z.literal(SEALED_VERSION),
  cipher: z.literal('AES-256-GCM'),
  chunkBytes: z.number().int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES),
  model: z.strictObject({
    /** "sha256:<hex>" of the model manifest's bytes (what the lockfile's inputs.modelManifest pins). */
    manifestDigest: digest,
    /** The model manifest's bytes (base64): the file list, sizes and plaintext sha256s the opener checks. */
    manifest: base64,
  }),
  key: z.strictObject({
    /** The KMS key the data key was generated under (its ARN, as GenerateDataKey answers). */
    keyId: z.string().min(1),
    /** The data key wrapped by KMS (GenerateDataKey's CiphertextBlob, base64). */
    wrapped: base64.min(1),
    encryptionContext: z.record(z.string(), z.string()),
  }),
  files: z.array(SealedFileSchema).min(1),
})

export type SealedManifest = z.infer<typeof SealedManifestSchema>
export type SealedFile = z.infer<typeof SealedFileSchema>

/** The encryption context the data key is generated and unwrapped under. */
export function encryptionContextFor(manifestDigest: string): Record<string, string> {
  return {[CONTEXT_KEY]: manifestDigest}
}

/** Chunks of a file of `size` bytes (an empty file is one empty chunk). */
export function chunkCount(size: number, chunkBytes: number): number {
  return Math.max(1, Math.ceil(size / chunkBytes))
}

/** Plaintext bytes of chunk `i` of a file of `size` bytes. */
export function chunkPlainBytes(size: number, chunkBytes: number, i: number): number {
  return Math.min(chunkBytes, size - i * chunkBytes)
}

/** Bytes of a sealed file: the plaintext plus one tag per chunk. */
export function sealedSize(size: number, chunkBytes: number): number {
  return size + chunkCount(size, chunkBytes) * TAG_BYTES
}

export function sealedName(index: number): string {
  return `${String(index).padStart(4, '0')}.sealed`
}

export function chunkNonce(fileIndex: number, chunkIndex: number): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.writeUInt32BE(fileIndex, 0)
  nonce.writeBigUInt64BE(BigInt(chunkIndex), 4)
  return nonce
}

const AAD_PREFIX = Buffer.from(`${SEALED_FORMAT}/${SEALED_VERSION}\n`, 'utf8')

export function chunkAad(manifestDigest: string, fileIndex: number, path: string, chunkIndex: number, final: boolean): Buffer {
  const name = Buffer.from(path, 'utf8')
  if (name.length > 0xffff) throw sealError('SEAL_SOURCE_INVALID', 'A model file path is longer than 65535 bytes.')
  const fixed = Buffer.alloc(4 + 2)
  fixed.writeUInt32BE(fileIndex, 0)
  fixed.writeUInt16BE(name.length, 4)
  const tail = Buffer.alloc(8 + 1)
  tail.writeBigUInt64BE(BigInt(chunkIndex), 0)
  tail.writeUInt8(final ? 1 : 0, 8)
  return Buffer.concat([AAD_PREFIX, Buffer.from(`${manifestDigest}\n`, 'utf8'), fixed, name, tail])
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Parse a sealed manifest's bytes; SEAL_MANIFEST_INVALID for anything that is not this format. */
export function parseSealedManifest(bytes: Uint8Array, where = SEALED_MANIFEST_FILE): SealedManifest {
  if (bytes.length > MAX_SEALED_MANIFEST_BYTES) throw sealError('SEAL_MANIFEST_INVALID', `${where} is larger than ${MAX_SEALED_MANIFEST_BYTES >> 20} MiB.`, {details: {where}})
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch (cause) {
    throw sealError('SEAL_MANIFEST_INVALID', `${where} is not JSON.`, {cause, details: {where}})
  }
  const parsed = SealedManifestSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw sealError('SEAL_MANIFEST_INVALID', `${where}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}.`, {details: {where}})
  }
  const m = parsed.data
  const names = new Set<string>()
  for (const [i, f] of m.files.entries()) {
    if (f.sealed !== sealedName(i)) throw sealError('SEAL_MANIFEST_INVALID', `${where}: file ${i} is sealed as ${f.sealed}, not ${sealedName(i)}.`, {details: {where, index: i}})
    if (f.chunks.length !== chunkCount(f.size, m.chunkBytes)) throw sealError('SEAL_MANIFEST_INVALID', `${where}: ${f.path} lists ${f.chunks.length} chunks; its size needs ${chunkCount(f.size, m.chunkBytes)}.`, {details: {where, file: f.path}})
    if (names.has(f.path)) throw sealError('SEAL_MANIFEST_INVALID', `${where}: ${f.path} is listed twice.`, {details: {where, file: f.path}})
    names.add(f.path)
  }
  return m
}
