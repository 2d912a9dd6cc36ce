/**
 * Waiting on a file a test's child processes append to (a fake's argv log, a recorded call list):
 * the check runs again on every change the kernel reports for the file's folder, so the wait ends
 * when the record is written, not after a guessed sleep. The deadline only turns a record that
 * never comes into a readable failure; it is generous because a busy machine is slow, not wrong.
 */
import {readFileSync, watch} from 'node:fs'
import {basename, dirname} from 'node:path'

/** The default deadline: longer than any real wait, shorter than vitest's hook timeout. */
export const FILE_WAIT_MS = 25_000

/**
 * Resolves with `read(text)` once `done` holds for it (text is '' while the file is absent);
 * rejects with `describe(last)` when the deadline passes first.
 */
export async function untilFile<T>(
  path: string,
  read: (text: string) => T,
  done: (value: T) => boolean,
  options: {timeoutMs?: number; describe?: (last: T) => string} = {},
): Promise<T> {
  const current = (): T => {
    let text = ''
    try {
      text = readFileSync(path, 'utf8')
    } catch {
      // not written yet
    }
    return read(text)
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false
    const check = (): boolean => {
      if (settled) return true
      const value = current()
      if (!done(value)) return false
      settled = true
      watcher.close()
      clearTimeout(timer)
      resolve(value)
      return true
    }
    // Watch first, then look: a write between the two is then seen by one or the other.
    const watcher = watch(dirname(path), (_event, name) => {
      if (name === null || name === basename(path)) check()
    })
    const timer = setTimeout(() => {
      if (check()) return
      settled = true
      watcher.close()
      reject(new Error(options.describe?.(current()) ?? `${path}: the awaited record was not written within ${options.timeoutMs ?? FILE_WAIT_MS} ms`))
    }, options.timeoutMs ?? FILE_WAIT_MS)
    check()
  })
}
