/** Replacing a system file (allocator.yaml) so that the old one is kept and no reader sees half a file. */
import {constants} from 'node:fs'
import {copyFile, stat} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

import {writeAtomically} from '../files.js'
import {hostError} from './errors.js'

/**
 * Replace `path` with `text` atomically: the old file is copied to a timestamped backup, the new
 * one written beside it (same mode) and renamed over it (`writeAtomically`). Returns the backup's path.
 */
export async function writeFileAtomicWithBackup(path: string, text: string, now: Date = new Date()): Promise<{backup: string | undefined}> {
  const stamp = now.toISOString().replaceAll(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
  const backup = join(dirname(path), `${basename(path)}.${stamp}.bak`)
  let mode = 0o644
  let existed = false
  try {
    mode = (await stat(path)).mode & 0o7777
    existed = true
  } catch {
    // a new file
  }
  try {
    if (existed) await copyFile(path, backup, constants.COPYFILE_EXCL)
    await writeAtomically(path, async (file) => {
      await file.writeFile(text)
      await file.chmod(mode) // the old file's mode exactly, whatever the umask
    })
    return {backup: existed ? backup : undefined}
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw hostError('ALLOCATOR_WRITE_FAILED', `Cannot write ${path}: ${code ?? String(error)}`, {
      hint: code === 'EACCES' || code === 'EPERM' ? `${path} belongs to root: run \`sudo nle allocator --apply\`.` : undefined,
      details: {path, errno: code},
      cause: error,
    })
  }
}
