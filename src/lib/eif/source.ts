/**
 * Where EIF bytes come from. The reader only ever asks for ranges it has already checked against
 * `size`, so a source never has to allocate more than the file holds.
 */
import {open, type FileHandle} from 'node:fs/promises'

import {eifError} from './errors.js'

export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number
  /** Read exactly `length` bytes at `position` into `into` (at offset 0); fewer only at end of file. Returns the count read. */
  readInto(into: Buffer, position: number, length: number): Promise<number>
  close(): Promise<void>
}

/** An in-memory image (tests, fuzzing). */
export function bufferSource(buf: Buffer): ByteSource {
  return {
    size: buf.length,
    async readInto(into, position, length) {
      const end = Math.min(buf.length, position + length)
      if (position >= end) return 0
      return buf.copy(into, 0, position, end)
    },
    async close() {},
  }
}

/** A file on disk, opened read-only; its size is taken once at open. */
export async function fileSource(path: string): Promise<ByteSource> {
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code
    if (errno === 'ENOENT') throw eifError('EIF_NOT_FOUND', `No such file: ${path}`, {details: {path}, cause: error})
    throw eifError('EIF_UNREADABLE', `Cannot open ${path}: ${(error as Error).message}`, {details: {path, errno}, cause: error})
  }
  let size: number
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), {code: 'EISDIR'})
    size = st.size
  } catch (error) {
    await fh.close().catch(() => undefined)
    throw eifError('EIF_UNREADABLE', `Cannot read ${path}: ${(error as Error).message}`, {details: {path}, cause: error})
  }
  return {
    size,
    async readInto(into, position, length) {
      let done = 0
      while (done < length) {
        let n: number
        try {
          ;({bytesRead: n} = await fh.read(into, done, length - done, position + done))
        } catch (error) {
          throw eifError('EIF_UNREADABLE', `Cannot read ${path}: ${(error as Error).message}`, {details: {path}, cause: error})
        }
        if (n === 0) break
        done += n
      }
      return done
    },
    async close() {
      await fh.close()
    },
  }
}

/** Run `fn` with a source opened on `path`, closing it afterwards. */
export async function withFileSource<T>(path: string, fn: (src: ByteSource) => Promise<T>): Promise<T> {
  const src = await fileSource(path)
  try {
    return await fn(src)
  } finally {
    await src.close().catch(() => undefined)
  }
}
