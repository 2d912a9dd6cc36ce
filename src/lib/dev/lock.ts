/**
 * One `nle dev` per project folder: `.nle/dev/lock` names the process that owns the folder's dev
 * stack (its sockets, its endpoints file, its KMS state). A second `nle dev` refuses with that
 * pid instead of taking the folder over.
 *
 * Taking the lock is atomic: the content is written to a file of our own first and then hard-
 * linked to the lock's name, which fails when the name exists, so a reader never sees a half-
 * written lock and two starters never both win. A lock whose process is gone (or whose pid now
 * belongs to something that is not `nle dev` of this folder) is stale: it is moved aside under a
 * name of our own, re-read there to be sure it is the stale one we judged, and removed; then the
 * lock is taken again.
 */
import {link, mkdir, readFile, realpath, rename, rm, unlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isAlive} from '../host/processes.js'
import {devError} from './errors.js'
import {devProjectOf, processInfo} from './endpoints.js'

export interface DevLockOwner {
  pid: number
  startedAt: string
}

export interface DevLock {
  file: string
  owner: DevLockOwner
  /** Remove the lock if it is still ours. */
  release(): Promise<void>
}

export function devLockFile(projectDir: string): string {
  return join(projectDir, '.nle', 'dev', 'lock')
}

/** Whether the lock's pid is a live `nle dev` of this project (where /proc can tell; else: alive). */
export async function ownerRuns(pid: number, projectDir: string): Promise<boolean> {
  if (!isAlive(pid)) return false
  const info = await processInfo(pid)
  if (info === undefined) return true // cannot inspect it: assume it is what the lock says
  const project = devProjectOf(info.argv, info.cwd)
  if (project === undefined) return false // the pid was reused by another program
  const [a, b] = await Promise.all([realpath(project).catch(() => project), realpath(projectDir).catch(() => projectDir)])
  return a === b
}

async function readOwner(file: string): Promise<DevLockOwner | undefined> {
  try {
    const v = JSON.parse(await readFile(file, 'utf8')) as Partial<DevLockOwner>
    return Number.isSafeInteger(v.pid) && (v.pid as number) > 0 ? {pid: v.pid as number, startedAt: String(v.startedAt ?? '')} : undefined
  } catch {
    return undefined
  }
}

export interface AcquireOptions {
  /** Who takes the lock (default: this process). */
  pid?: number
  /** Whether a lock's owner still runs (default: ownerRuns). */
  running?: (pid: number, projectDir: string) => Promise<boolean>
}

/** Take the project's dev lock, or throw DEV_ALREADY_RUNNING naming the pid that holds it. */
export async function acquireDevLock(projectDir: string, options: AcquireOptions = {}): Promise<DevLock> {
  const file = devLockFile(projectDir)
  const pid = options.pid ?? process.pid
  const running = options.running ?? ownerRuns
  const owner: DevLockOwner = {pid, startedAt: new Date().toISOString()}
  const fail = (cause: unknown): never => {
    throw devError('DEV_LOCK_FAILED', `Cannot take the dev lock ${file}: ${(cause as Error).message}`, {cause, hint: `Check that ${join(projectDir, '.nle')} is writable by you.`, details: {file}})
  }
  await mkdir(join(projectDir, '.nle', 'dev'), {recursive: true, mode: 0o700}).catch(fail)
  const mine = `${file}.${pid}.new`
  await writeFile(mine, JSON.stringify(owner) + '\n', {mode: 0o600}).catch(fail)
  try {
    // A new round only after a stale lock was cleared.
    for (let round = 0; round < 3; round++) {
      try {
        await link(mine, file)
        return {
          file,
          owner,
          release: async () => {
            const now = await readOwner(file)
            if (now?.pid === owner.pid && now.startedAt === owner.startedAt) await rm(file, {force: true})
          },
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') fail(error)
      }
      const held = await readOwner(file)
      if (held !== undefined && (await running(held.pid, projectDir))) {
        throw devError('DEV_ALREADY_RUNNING', `nle dev already runs for this folder (pid ${held.pid}, since ${held.startedAt}).`, {
          hint: `Use that one (\`nle chat\` in this folder finds it), or stop it first (Ctrl-C in its terminal, or \`kill ${held.pid}\`).`,
          details: {pid: held.pid, startedAt: held.startedAt, lock: file},
        })
      }
      // Stale (or unreadable): move it aside under our own name, so only one starter removes it.
      const aside = `${file}.${pid}.stale`
      try {
        await rename(file, aside)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue // someone else cleared it
        fail(error)
      }
      const moved = await readOwner(aside)
      if (moved !== undefined && (moved.pid !== held?.pid || moved.startedAt !== held.startedAt) && (await running(moved.pid, projectDir))) {
        // Another starter took the lock between our read and our rename: give it back and refuse.
        await link(aside, file).catch(() => undefined)
        await rm(aside, {force: true})
        throw devError('DEV_ALREADY_RUNNING', `nle dev already runs for this folder (pid ${moved.pid}).`, {
          hint: `Use that one, or stop it first (\`kill ${moved.pid}\`).`,
          details: {pid: moved.pid, startedAt: moved.startedAt, lock: file},
        })
      }
      await rm(aside, {force: true})
    }
    throw devError('DEV_LOCK_FAILED', `Cannot take the dev lock ${file}: it keeps changing.`, {hint: 'Another nle dev is starting in this folder; wait for it, then try again.', details: {file}})
  } finally {
    await unlink(mine).catch(() => undefined)
  }
}
