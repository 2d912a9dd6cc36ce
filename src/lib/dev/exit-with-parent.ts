/**
 * Preloaded (`node --import` of ./exit-with-parent-preload.js) into every child of the dev
 * supervisor, so that a child never
 * outlives `nle dev` / `nle demo` — not even when nle is killed with SIGKILL and none of its own
 * cleanup runs.
 *
 * The supervisor gives each child a stdin pipe that it never writes to and never closes. Only nle
 * holds the write end, so the kernel closes it when nle dies, however it dies, and the child reads
 * end-of-file at once. The child then stops as if it had been sent SIGTERM (its usual graceful
 * drain), and kills itself if that drain has not ended the process within EXIT_GRACE_MS.
 *
 * It acts only when the supervisor asked for it (EXIT_WITH_PARENT_ENV, removed at once so the
 * child's own children do not inherit it) and stdin really is a pipe: the same entry points run
 * in production with stdin on /dev/null, where an immediate end-of-file means nothing.
 */
import {fstatSync} from 'node:fs'

export const EXIT_WITH_PARENT_ENV = 'NLE_EXIT_WITH_PARENT'
/** How long the child's own drain may take after its parent is gone. */
export const EXIT_GRACE_MS = 10_000

function stdinIsPipe(): boolean {
  try {
    const s = fstatSync(0)
    return s.isFIFO() || s.isSocket()
  } catch {
    return false
  }
}

/** Stop this process when its stdin pipe closes (the parent is gone). Returns whether it watches. */
export function exitWithParent(): boolean {
  if (process.env[EXIT_WITH_PARENT_ENV] !== '1') return false
  delete process.env[EXIT_WITH_PARENT_ENV]
  if (!stdinIsPipe()) return false
  let gone = false
  const parentGone = (): void => {
    if (gone) return
    gone = true
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), EXIT_GRACE_MS).unref()
    process.kill(process.pid, 'SIGTERM')
  }
  const stdin = process.stdin
  // Whatever arrives is discarded (the supervisor writes nothing); reading is what sees the end.
  stdin.on('data', () => undefined)
  stdin.once('end', parentGone)
  stdin.once('close', parentGone)
  stdin.once('error', parentGone)
  // The watch never keeps the process alive on its own.
  ;(stdin as unknown as {unref?: () => void}).unref?.()
  return true
}
