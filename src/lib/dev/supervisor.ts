/**
 * Runs a set of child processes in the foreground for `nle dev` and `nle demo`: starts each,
 * waits until it says it is ready (a JSON line on stdout), and stops all of them — children
 * first in reverse start order, SIGTERM then SIGKILL — so nothing is left running. A child that
 * dies on its own makes `exited` reject, with the tail of its stderr.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {createInterface} from 'node:readline'

import {tail} from '../errors.js'
import {type DevErrorCode, devError} from './errors.js'

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

export class Supervisor {
  private readonly children: {spec: ChildSpec; proc: ChildProcess; stderr: string}[] = []
  private stopping = false
  private rejectExited: ((e: Error) => void) | undefined
  /** Rejects when any child exits while the supervisor is not stopping. */
  readonly exited: Promise<never>

  constructor() {
    this.exited = new Promise<never>((_, reject) => {
      this.rejectExited = reject
    })
    this.exited.catch(() => undefined)
  }

  async start(spec: ChildSpec): Promise<RunningChild> {
    const proc = spawn(spec.command, [...spec.args], {
      cwd: spec.cwd,
      env: {...process.env, ...spec.env},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const entry = {spec, proc, stderr: ''}
    this.children.push(entry)
    // Keep only a bounded tail of stderr, for error messages. Children never log content.
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
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
      createInterface({input: proc.stdout!}).on('line', onLine)
      createInterface({input: proc.stderr!}).on('line', onLine)
      // 'close', not 'exit': by then its stderr has been read to the end, so the tail is whole.
      proc.once('close', (code, signal) => {
        clearTimeout(timer)
        const lines = stderrTail(entry.stderr)
        const error = devError('DEV_CHILD_FAILED', `${spec.name} exited (${signal ?? `code ${code}`})${this.stopping ? '' : ' unexpectedly'}`, {
          hint: lines ? 'The end of its stderr is shown above; fix the cause and start again.' : 'It wrote nothing on stderr; re-run with --logs to see its log, fix the cause and start again.',
          details: {child: spec.name, exit: signal ?? code, stderrTail: lines},
        })
        reject(error)
        if (!this.stopping) this.rejectExited?.(error)
      })
      proc.once('error', (err) => {
        clearTimeout(timer)
        reject(devError('DEV_CHILD_FAILED', `${spec.name} could not start: ${err.message}`, {cause: err, hint: `Check that ${spec.command} exists and can be run.`, details: {child: spec.name}}))
      })
    })
    try {
      return {name: spec.name, pid: proc.pid ?? -1, ready: await ready}
    } catch (error) {
      await this.stopAll()
      throw error
    }
  }

  /** Stop every child, newest first. Resolves when all have exited. */
  async stopAll(graceMs = 5000): Promise<void> {
    this.stopping = true
    for (const {proc} of [...this.children].reverse()) {
      if (proc.exitCode !== null || proc.signalCode !== null) continue
      const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
      await gone
      clearTimeout(timer)
    }
    this.children.length = 0
  }

  get pids(): number[] {
    return this.children.map((c) => c.proc.pid ?? -1)
  }
}
