/**
 * Model folders held in memory: a sealed model opened in the enclave (./seal/open.ts) never
 * becomes files — in `nle dev` the "enclave" is a process on the host, whose disk must not see the
 * plaintext either. A folder is registered under a path that is not on disk; the engine's readers
 * (config, tokenizer, the ONNX plan, onnxruntime's session with `externalData`) ask here first, and
 * for a registered folder never fall back to the disk.
 */
import {readFile, stat} from 'node:fs/promises'
import {posix} from 'node:path'

const folders = new Map<string, Map<string, Uint8Array>>()

/** The prefix of in-memory model folders (no such folder exists on disk). */
export const MEMORY_ROOT = '/nle-memory-model'

export function registerMemoryModel(dir: string, files: ReadonlyMap<string, Uint8Array> | Record<string, Uint8Array>): void {
  folders.set(posix.normalize(dir), new Map(files instanceof Map ? files : Object.entries(files)))
}

export function unregisterMemoryModel(dir: string): void {
  folders.delete(posix.normalize(dir))
}

/** The files of a registered folder (undefined when `dir` is not one). */
export function memoryModelFiles(dir: string): ReadonlyMap<string, Uint8Array> | undefined {
  return folders.get(posix.normalize(dir))
}

/** For a path inside a registered folder: its folder's files and the path relative to it. */
export function inMemory(path: string): {dir: string; rel: string; files: ReadonlyMap<string, Uint8Array>} | undefined {
  const p = posix.normalize(path)
  for (const [dir, files] of folders) if (p.startsWith(dir + '/')) return {dir, rel: p.slice(dir.length + 1), files}
  return undefined
}

function missing(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such file in the in-memory model, '${path}'`), {code: 'ENOENT'})
}

/** A model file's bytes: from memory for a registered folder, else from the disk. */
export async function readModelFile(path: string): Promise<Buffer> {
  const m = inMemory(path)
  if (m === undefined) return readFile(path)
  const bytes = m.files.get(m.rel)
  if (bytes === undefined) throw missing(path)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

export async function readModelText(path: string): Promise<string> {
  return (await readModelFile(path)).toString('utf8')
}

/** Whether a model file exists (a regular file on disk, or one of a registered folder). */
export async function isModelFile(path: string): Promise<boolean> {
  const m = inMemory(path)
  if (m !== undefined) return m.files.has(m.rel)
  return stat(path).then((s) => s.isFile(), () => false)
}

/** Whether `dir` is a model folder (a registered one, or a folder on disk). */
export async function isModelFolder(dir: string): Promise<boolean> {
  if (memoryModelFiles(dir) !== undefined) return true
  return stat(dir).then((s) => s.isDirectory(), () => false)
}

/** A file's size, or undefined when it does not exist. */
export async function modelFileSize(path: string): Promise<number | undefined> {
  const m = inMemory(path)
  if (m !== undefined) return m.files.get(m.rel)?.byteLength
  return stat(path).then((s) => s.size, () => undefined)
}

/** A positional reader over bytes in memory, in the shape of the FileHandle methods the ONNX readers use. */
export function memoryHandle(bytes: Uint8Array): {read(buffer: Buffer, offset: number, length: number, position: number): Promise<{bytesRead: number; buffer: Buffer}>; stat(): Promise<{size: number}>; close(): Promise<void>} {
  return {
    async read(buffer, offset, length, position) {
      const n = Math.max(0, Math.min(length, bytes.byteLength - position))
      if (n > 0) buffer.set(bytes.subarray(position, position + n), offset)
      return {bytesRead: n, buffer}
    },
    async stat() {
      return {size: bytes.byteLength}
    },
    async close() {},
  }
}
