import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {hasCode} from '../errors.js'
import {rejection} from '../../test-support/rejection.js'
import {tempDir} from '../../test-support/tmp.js'
import {acquireDevLock, devLockFile, ownerRuns} from './lock.js'

const tmp = tempDir('nle-devlock-')
afterAll(() => tmp.cleanup())
let n = 0
const project = (): string => {
  const dir = join(tmp.dir, `p${n++}`)
  mkdirSync(dir)
  return dir
}
const holder = (dir: string): {pid: number} => JSON.parse(readFileSync(devLockFile(dir), 'utf8')) as {pid: number}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], {stdio: 'ignore'})
  await new Promise((resolve) => child.once('exit', resolve))
  return child.pid!
}

describe('the nle dev lock (one per folder)', () => {
  it('is taken once; a second taker is refused with the holder\'s pid and the lock is left as it was', async () => {
    const dir = project()
    const lock = await acquireDevLock(dir, {pid: 4101, running: async () => true})
    expect(holder(dir).pid).toBe(4101)
    const refused = await rejection(acquireDevLock(dir, {pid: 4102, running: async (pid) => pid === 4101}))
    expect(hasCode(refused, 'DEV_ALREADY_RUNNING') && refused.details).toMatchObject({pid: 4101})
    expect((refused as Error).message).toContain('4101')
    expect(holder(dir).pid).toBe(4101)
    await lock.release()
    expect(existsSync(devLockFile(dir))).toBe(false)
  })

  it('recovers a stale lock whose process is gone, and one whose pid now runs something that is not nle dev', async () => {
    const dir = project()
    mkdirSync(join(dir, '.nle', 'dev'), {recursive: true})
    writeFileSync(devLockFile(dir), JSON.stringify({pid: await deadPid(), startedAt: 'then'}))
    const first = await acquireDevLock(dir)
    expect(holder(dir).pid).toBe(process.pid)
    await first.release()
    // This test process is alive but is not `nle dev` of the folder: a reused pid.
    writeFileSync(devLockFile(dir), JSON.stringify({pid: process.pid, startedAt: 'then'}))
    const second = await acquireDevLock(dir, {pid: 4201})
    expect(holder(dir).pid).toBe(4201)
    await second.release()
    // Unreadable content is stale too (a lock is written whole, so only damage makes it so).
    writeFileSync(devLockFile(dir), '{"pid":')
    await (await acquireDevLock(dir)).release()
  })

  it('judges a live `nle dev` of this folder as running, and one of another folder as not', async () => {
    const dir = project()
    const other = project()
    const entry = join(tmp.dir, 'run.js')
    writeFileSync(entry, 'setInterval(() => {}, 1000)\n')
    const child = spawn(process.execPath, [entry, 'dev', '--config', 'nle.yaml'], {cwd: dir, stdio: 'ignore'})
    try {
      await new Promise((resolve) => child.once('spawn', resolve))
      // The command line is the node binary's until exec completes: ask until it is ours.
      for (;;) {
        const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8')
        if (cmdline.includes(entry)) break
        await new Promise((r) => setImmediate(r))
      }
      expect(await ownerRuns(child.pid!, dir)).toBe(true)
      expect(await ownerRuns(child.pid!, other)).toBe(false)
      expect(await ownerRuns(await deadPid(), dir)).toBe(false)
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('of starters racing for a free folder, exactly one wins', async () => {
    const dir = project()
    const pids = [4301, 4302, 4303, 4304, 4305]
    const results = await Promise.allSettled(pids.map((pid) => acquireDevLock(dir, {pid, running: async (p) => pids.includes(p)})))
    const won = results.filter((r) => r.status === 'fulfilled')
    expect(won).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect(hasCode(r.reason, 'DEV_ALREADY_RUNNING')).toBe(true)
    expect(pids).toContain(holder(dir).pid)
  })

  it('release leaves a lock that is no longer its own', async () => {
    const dir = project()
    const lock = await acquireDevLock(dir, {pid: 4401})
    writeFileSync(devLockFile(dir), JSON.stringify({pid: 4402, startedAt: 'later'}))
    await lock.release()
    expect(holder(dir).pid).toBe(4402)
  })
})
