/**
 * The client's limits on what comes back: the proxy and the host are hostile, so an answer that
 * stalls, trickles or floods must end in a typed error, never in a hang or in unbounded memory.
 *
 * - time to the response headers (`timeoutMs`, ./transport.ts);
 * - idle: the longest wait for the next sealed chunk that opens (a stream), or for the rest of a body
 *   once its headers came; bytes that do not complete a chunk are not progress, so a trickle of one
 *   byte a second ends as surely as silence;
 * - an overall deadline per request, from the call to the last chunk;
 * - the largest SSE event and the largest whole body.
 */
import {clientError} from './errors.js'
import type {NleError} from '../errors.js'

export interface ResponseLimits {
  /** Longest wait for the next sealed chunk (or a whole body after its headers). */
  idleTimeoutMs: number
  /** Longest time one request may take, in all. */
  deadlineMs: number
  /** Largest SSE event accepted (bytes). */
  maxEventBytes: number
  /** Largest whole answer accepted (bytes). */
  maxResponseBytes: number
}

/**
 * Defaults for a model on CPU: a big one can take tens of seconds to its first token (prefill) and
 * minutes for a long answer; a sealed chunk is a few hundred bytes.
 */
export const DEFAULT_LIMITS: ResponseLimits = {
  idleTimeoutMs: 120_000,
  deadlineMs: 30 * 60_000,
  maxEventBytes: 64 * 1024,
  maxResponseBytes: 16 * 1024 * 1024,
}

export type TimeoutPhase = 'headers' | 'idle' | 'deadline'

export function timeoutError(phase: TimeoutPhase, ms: number): NleError {
  const what = {headers: 'for the response headers', idle: 'for the next part of the answer', deadline: 'for the whole answer'}[phase]
  return clientError('CLIENT_UPSTREAM_TIMEOUT', `No answer in time: waited ${Math.round(ms / 100) / 10} s ${what}.`, {
    hint: phase === 'deadline' ? 'The answer took longer than the deadline: ask for fewer tokens, or raise it.' : 'The proxy or the enclave stalled. Retry; if a big model is slow to its first token, raise the idle timeout.',
    details: {phase, ms},
  })
}

/** Something that can be cut when a limit is hit (a response stream). */
interface Destroyable {
  destroy(error?: Error): void
}

/**
 * The timers of one request. `signal` aborts when the caller's does or when the deadline passes;
 * after `attach`, the response is destroyed with CLIENT_UPSTREAM_TIMEOUT when no `progress()` comes
 * within the idle timeout (`pause()` while the caller holds a chunk: a slow reader is not a stall).
 */
export class RequestWatch {
  readonly signal: AbortSignal
  private readonly controller = new AbortController()
  private failure: NleError | null = null
  private idle: NodeJS.Timeout | undefined
  private readonly deadline: NodeJS.Timeout
  private target: Destroyable | undefined
  private readonly onCallerAbort = (): void => this.controller.abort()

  constructor(
    private readonly limits: ResponseLimits,
    private readonly caller?: AbortSignal,
  ) {
    this.signal = this.controller.signal
    this.deadline = setTimeout(() => this.expire(timeoutError('deadline', limits.deadlineMs)), limits.deadlineMs).unref()
    if (caller?.aborted) this.controller.abort()
    else caller?.addEventListener('abort', this.onCallerAbort, {once: true})
  }

  /** The timeout that ended the request, if one did. */
  get expired(): NleError | null {
    return this.failure
  }

  private expire(error: NleError): void {
    if (this.failure) return
    this.failure = error
    this.controller.abort()
    this.target?.destroy(error)
  }

  attach(target: Destroyable): void {
    this.target = target
    this.progress()
  }

  progress(): void {
    clearTimeout(this.idle)
    this.idle = setTimeout(() => this.expire(timeoutError('idle', this.limits.idleTimeoutMs)), this.limits.idleTimeoutMs).unref()
  }

  pause(): void {
    clearTimeout(this.idle)
  }

  done(): void {
    clearTimeout(this.idle)
    clearTimeout(this.deadline)
    this.caller?.removeEventListener('abort', this.onCallerAbort)
  }
}
