/**
 * Runs a set of child processes in the foreground for `nle dev` and `nle demo`: starts each,
 * waits until it says it is ready (a JSON line on stdout), and stops all of them — children
 * first in reverse start order, SIGTERM then SIGKILL — so nothing is left running. A child that
 * dies on its own makes `exited` reject, with the tail of its stderr.
 *
 * On execa: each child is cancelled through its own `cancelSignal` (SIGTERM), `forceKillAfterDelay`
 * sends SIGKILL when the grace period is over, and `cleanup` kills what is left when nle exits.
 * None of that runs when nle is killed with SIGKILL, so each child also gets a stdin pipe that
 * nle never closes: the kernel closes it when nle dies, and a Node child started with
 * `nodeChild()` (preloading ./exit-with-parent-preload.js) stops when it reads the end.
 */
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {pathToFileURL} from 'node:url'

import {execa} from 'execa'

import {tail} from '../errors.js'
import {PACKAGE_ROOT} from '../paths.js'
import {type DevErrorCode, devError} from './errors.js'
import {EXIT_WITH_PARENT_ENV} from './exit-with-parent.js'

/** The compiled preload that makes a Node child exit with its parent (see ./exit-with-parent.ts). */
export const EXIT_WITH_PARENT_PRELOAD = join(PACKAGE_ROOT, 'dist', 'lib', 'dev', 'exit-with-parent-preload.js')

/** The command and arguments that run the Node script `entry` as a child that dies with its parent. */
export function nodeChild(entry: string, args: readonly string[] = []): {command: string; args: string[]} {
  return {command: process.execPath, args: ['--import', pathToFileURL(EXIT_WITH_PARENT_PRELOAD).href, entry, ...args]}
}

export interface ChildSpec {
  name: string
  command: string
  args: readonly string[]
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** How long to wait for the ready line (ms). */
  readyTimeoutMs?: number
  /** Which JSON line (stdout or stderr) means ready; default `{"ready": true}`. */
  readyWhen?: (message: Record<string, unknown>) => boolean
  /** Every JSON log line the child writes (children log no content). */
  onLog?: (name: string, message: Record<string, unknown>) => void
}

/** The JSON line that said the child is ready. */
export type ReadyMessage = Record<string, unknown>

export interface RunningChild {
  name: string
  pid: number
  ready: ReadyMessage
}

export type SupervisorErrorCode = Extract<DevErrorCode, 'DEV_CHILD_FAILED' | 'DEV_CHILD_NOT_READY'>

/** How much of a child's stderr is kept for an error (the last bytes; then the last lines of those). */
export const STDERR_KEEP_BYTES = 16 * 1024
const TAIL_MAX_LINE = 400

/** Not a C0 or C1 control character (tab allowed). */
const printable = (c: string): boolean => {
  const n = c.codePointAt(0)!
  return n === 9 || (n >= 0x20 && n !== 0x7f && (n < 0x80 || n > 0x9f))
}

/**
 * The printable end of a child's stderr: the last lines, each cut to a bounded length, with
 * terminal control characters removed (a child's bytes never drive the user's terminal).
 * Children log no content (questions, answers, keys), so none can be in it.
 */
export function stderrTail(text: string): string {
  return tail(text)
    .split('\n')
    .map((l) => [...l].filter(printable).join('').slice(0, TAIL_MAX_LINE))
    .join('\n')
}

export interface SupervisorOptions {
  /** How long a child may take to exit after SIGTERM before it gets SIGKILL (ms); default 5000. */
  graceMs?: number
}

interface Child {
  spec: ChildSpec
  pid: number | undefined
  cancel: AbortController
  stderr: string
  /** Settles (never rejects) once the child has exited and its output has been read to the end. */
  done: Promise<void>
  finished: boolean
}

export class Supervisor {
  private readonly children: Child[] = []
  private readonly graceMs: number
  private stopping = false
  private rejectExited: ((e: Error) => void) | undefined
  /** Rejects when any child exits while the supervisor is not stopping. */
  readonly exited: Promise<never>

  constructor(options: SupervisorOptions = {}) {
    this.graceMs = options.graceMs ?? 5000
    this.exited = new Promise<never>((_, reject) => {
      this.rejectExited = reject
    })
    this.exited.catch(() => undefined)
  }

  async start(spec: ChildSpec): Promise<RunningChild> {
    const cancel = new AbortController()
    const proc = execa(spec.command, [...spec.args], {
      ...(spec.cwd ? {cwd: spec.cwd} : {}),
      env: {...process.env, ...spec.env, [EXIT_WITH_PARENT_ENV]: '1'},
      extendEnv: false,
      // stdin: a pipe nle never writes to or closes; its end tells the child that nle is gone.
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      cleanup: true,
      cancelSignal: cancel.signal,
      killSignal: 'SIGTERM',
      forceKillAfterDelay: this.graceMs,
    })
    const entry: Child = {spec, pid: proc.pid, cancel, stderr: '', done: Promise.resolve(), finished: false}
    this.children.push(entry)
    // Keep only a bounded tail of stderr, for error messages. Children never log content.
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      entry.stderr = (entry.stderr + chunk).slice(-STDERR_KEEP_BYTES)
    })
    const readyWhen = spec.readyWhen ?? ((m: Record<string, unknown>) => m.ready === true)
    const ready = new Promise<ReadyMessage>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            devError('DEV_CHILD_NOT_READY', `${spec.name} did not become ready within ${spec.readyTimeoutMs ?? 30_000} ms`, {
              hint: 'The end of its stderr is shown above; re-run with --logs to see all of its (content-free) log.',
              details: {child: spec.name, stderrTail: stderrTail(entry.stderr)},
            }),
          ),
        spec.readyTimeoutMs ?? 30_000,
      )
      const onLine = (line: string): void => {
        let msg: unknown
        try {
          msg = JSON.parse(line)
        } catch {
          return // not a JSON line
        }
        if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return
        spec.onLog?.(spec.name, msg as Record<string, unknown>)
        if (readyWhen(msg as Record<string, unknown>)) {
          clearTimeout(timer)
          resolve(msg as ReadyMessage)
        }
      }
      createInterface({input: proc.stdout}).on('line', onLine)
      createInterface({input: proc.stderr}).on('line', onLine)
      // execa settles once the child has exited and its output has been read to the end, so the
      // stderr tail is whole.
      entry.done = proc.then((result) => {
        entry.finished = true
        clearTimeout(timer)
        if (result.exitCode === undefined && result.signal === undefined) {
          // It never ran (no such program, not executable, bad cwd).
          const cause = result.cause instanceof Error ? result.cause : undefined
          reject(devError('DEV_CHILD_FAILED', `${spec.name} could not start: ${cause?.message ?? result.shortMessage}`, {...(cause ? {cause} : {}), hint: `Check that ${spec.command} exists and can be run.`, details: {child: spec.name}}))
          return
        }
        const lines = stderrTail(entry.stderr)
        const how = result.signal ?? `code ${result.exitCode}`
        const error = devError('DEV_CHILD_FAILED', `${spec.name} exited (${how})${this.stopping ? '' : ' unexpectedly'}`, {
          hint: lines ? 'The end of its stderr is shown above; fix the cause and start again.' : 'It wrote nothing on stderr; re-run with --logs to see its log, fix the cause and start again.',
          details: {child: spec.name, exit: result.signal ?? result.exitCode, stderrTail: lines},
        })
        reject(error)
        if (!this.stopping) this.rejectExited?.(error)
      })
    })
    try {
      return {name: spec.name, pid: proc.pid ?? -1, ready: await ready}
    } catch (error) {
      await this.stopAll()
      throw error
    }
  }

  /** Stop every child, newest first: SIGTERM, then SIGKILL after the grace period. Resolves when all have exited. */
  async stopAll(): Promise<void> {
    this.stopping = true
    for (const child of [...this.children].reverse()) {
      if (!child.finished) child.cancel.abort()
      await child.done
    }
    this.children.length = 0
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid ?? -1)
  }
}
