/**
 * Managed background processes for `nle run` (the socat bridge, the parent proxy): started
 * detached in their own process group with output to a log file, recorded by pid, and stopped by
 * signalling the whole group, so that nothing they forked survives `nle stop`.
 *
 * Plain `node:child_process` on purpose, unlike the dev supervisor (src/lib/dev/supervisor.ts, on
 * execa): these processes must outlive the nle that started them, and are stopped by a later nle
 * from the recorded pid. What execa adds — cleanup on exit, forceKillAfterDelay, cancelSignal —
 * lives in the starting process and is off or useless for a detached child, and its output goes
 * straight to a log file descriptor, not through pipes it would read.
 */
import {spawn} from 'node:child_process'
import {closeSync, openSync, readFileSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {hostError} from './errors.js'
import {type ToolName, toolMissing} from './exec.js'

export interface ManagedProcess {
  pid: number
  /** A string its command line must contain, so a reused pid is never signalled. */
  marker: string
  log: string
}

export interface SpawnOptions {
  command: string
  args: readonly string[]
  env: NodeJS.ProcessEnv
  log: string
  marker: string
  /** For a missing-program error that names the package. */
  tool?: ToolName
}

export async function spawnManaged(o: SpawnOptions): Promise<ManagedProcess> {
  const fd = openSync(o.log, 'a')
  try {
    const child = spawn(o.command, [...o.args], {detached: true, stdio: ['ignore', fd, fd], env: o.env})
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve())
      child.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' && o.tool) reject(toolMissing(o.tool, o.args))
        else reject(hostError('RUN_PROCESS_EXITED', `Cannot start ${o.command}: ${error.message}`, {cause: error}))
      })
    })
    child.unref()
    return {pid: child.pid!, marker: o.marker, log: o.log}
  } finally {
    closeSync(fd)
  }
}

/** Alive and not a zombie (a zombie has exited; only its parent has not collected it yet). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) [ZX]/s.test(stat)
  } catch {
    return true
  }
}

/** Whether `pid` still runs the process we started (guards against pid reuse). */
export function isOurs(p: ManagedProcess): boolean {
  if (!isAlive(p.pid)) return false
  try {
    const cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8')
    // Empty while a live process is between two execs (a wrapper script exec'ing the real program):
    // still ours. A reused pid always shows some command line.
    return cmdline.length === 0 || cmdline.includes(p.marker)
  } catch {
    return true // no /proc: trust the pid
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

/** TERM the process group, wait, then KILL it. Resolves true when nothing of it is left. */
export async function stopManaged(p: ManagedProcess, graceMs = 5000): Promise<boolean> {
  if (!isOurs(p)) return true
  signalGroup(p.pid, 'SIGTERM')
  for (const [signal, wait] of [[undefined, graceMs], ['SIGKILL', 2000]] as const) {
    if (signal) signalGroup(p.pid, signal)
    for (let waited = 0; waited < wait; waited += 50) {
      if (!isAlive(p.pid)) return true
      await sleep(50)
    }
  }
  return !isAlive(p.pid)
}

/** The last lines of a managed process's log, for error messages. */
export async function logTail(path: string, lines = 15): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '')
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}
