/**
 * Writing files so that a reader never sees half of one, nor one with looser permissions. Every
 * single-file write nle makes goes through here; the two exceptions write several files or resume:
 * `model/onnx-file.ts` (a model and its external data, renamed together at the end) and
 * `model/hub.ts` (a download resumed from its `.incomplete` file).
 */
import {randomBytes} from 'node:crypto'
import {type FileHandle, open, rename, rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

/**
 * Replace `path` with what `write` writes into the handle it is given: a new temporary file in the
 * same folder, created exclusively (never a file or link someone placed there) with `mode`
 * (default 0644, less the umask) and opened for reading too, fsynced after `write`, then renamed
 * over `path`, and the folder fsynced. The result has the new file's mode whatever the old one had
 * (a key once written 0644 becomes 0600). Throws what `write` or the file system throws; the
 * temporary file is removed on failure and `path` is left as it was.
 */
export async function writeAtomically<T>(path: string, write: (file: FileHandle) => Promise<T>, options: {mode?: number} = {}): Promise<T> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  let handle: FileHandle | undefined
  let result: T
  try {
    handle = await open(tmp, 'wx+', options.mode ?? 0o644)
    result = await write(handle)
    await handle.sync()
    await handle.close()
    handle = undefined
    await rename(tmp, path)
  } catch (error) {
    await handle?.close().catch(() => undefined)
    await rm(tmp, {force: true}).catch(() => undefined)
    throw error
  }
  // The rename itself durable too (best effort: not every platform fsyncs a folder).
  const dir = await open(dirname(path), 'r').catch(() => undefined)
  await dir?.sync().catch(() => undefined)
  await dir?.close().catch(() => undefined)
  return result
}

/** `writeAtomically` for data already in memory. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: {mode?: number} = {}): Promise<void> {
  await writeAtomically(path, (file) => file.writeFile(data), options)
}
