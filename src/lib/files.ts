/** Writing files so that a reader never sees half of one, nor one with looser permissions. */
import {randomBytes} from 'node:crypto'
import {open, rename, rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

/**
 * Replace `path` with `data`: a new temporary file in the same folder, created exclusively (never
 * a file or link someone placed there) with `mode` (default 0644, less the umask), written and
 * fsynced, then renamed over `path`, and the folder fsynced. The result has the new file's mode
 * whatever the old one had (a key once written 0644 becomes 0600). Throws the fs error; the
 * temporary file is removed on failure.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: {mode?: number} = {}): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  let handle: Awaited<ReturnType<typeof open>> | undefined
  try {
    handle = await open(tmp, 'wx', options.mode ?? 0o644)
    await handle.writeFile(data)
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
}
