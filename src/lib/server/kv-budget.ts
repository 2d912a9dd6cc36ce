/**
 * The enclave server's KV-cache memory budget, and the batch limit it implies.
 *
 * A sequence's cache grows to (prompt + max_tokens) × per-token KV bytes; the server reserves that
 * before the sequence starts and gives it back when it ends. A request that could never fit is
 * refused (SERVER_KV_BUDGET); one that fits once others finish waits for them, in order.
 */
import {serverError} from './errors.js'

export const MIB = 1024 * 1024
/** Kept free for the runtime's own allocations (tensors of a step, the HTTP side) when the budget is automatic. */
export const KV_RESERVE_BYTES = 256 * MIB
/** Largest automatic batch (the engine's default batch). */
export const MAX_AUTO_BATCH = 8

export class KvBudget {
  private reserved = 0
  private readonly waiters: {bytes: number; wake: () => void}[] = []

  constructor(readonly budgetBytes: number) {}

  get reservedBytes(): number {
    return this.reserved
  }

  /**
   * Reserves `bytes`, waiting for running sequences to give memory back when it does not fit now.
   * Throws SERVER_KV_BUDGET when it cannot fit even alone; resolves false when the signal aborts first.
   */
  async acquire(bytes: number, signal?: AbortSignal): Promise<boolean> {
    if (bytes > this.budgetBytes) {
      throw serverError('SERVER_KV_BUDGET', 'The request needs more KV-cache memory than the enclave server has.', {
        details: {neededBytes: bytes, budgetBytes: this.budgetBytes},
      })
    }
    if (this.waiters.length === 0 && this.reserved + bytes <= this.budgetBytes) {
      this.reserved += bytes
      return true
    }
    if (signal?.aborted) return false
    return new Promise<boolean>((resolve) => {
      const waiter = {
        bytes,
        wake: (): void => {
          signal?.removeEventListener('abort', onAbort)
          this.reserved += bytes
          resolve(true)
        },
      }
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter)
        if (i !== -1) this.waiters.splice(i, 1)
        resolve(false)
        this.admit()
      }
      signal?.addEventListener('abort', onAbort, {once: true})
      this.waiters.push(waiter)
    })
  }

  release(bytes: number): void {
    this.reserved = Math.max(0, this.reserved - bytes)
    this.admit()
  }

  /** Wakes waiters in order while the first one fits. */
  private admit(): void {
    for (;;) {
      const next = this.waiters[0]
      if (next === undefined || this.reserved + next.bytes > this.budgetBytes) return
      this.waiters.shift()
      next.wake()
    }
  }
}

export interface AutoSizing {
  /** Memory free for the cache once the model is loaded (bytes). */
  freeBytes: number
  vcpus: number
  bytesPerToken: number
  /** The model's context (tokens), when known. */
  contextTokens: number | undefined
  /** The configured answer length limit (runtime.maxTokens). */
  maxTokens: number
}

/**
 * The automatic KV budget: half of the memory left after the model loaded, less a reserve (a
 * batch's cache is copied once when rows join or leave, so up to twice the live cache exists then).
 */
export function autoKvBudgetBytes(freeBytes: number): number {
  return Math.max(0, Math.floor((freeBytes - KV_RESERVE_BYTES) / 2))
}

/**
 * The automatic batch limit: as many sequences of a typical length (1024 prompt tokens + maxTokens,
 * at most the context) as the budget holds, at most 4 per vCPU and MAX_AUTO_BATCH, at least 1.
 */
export function autoBatchLimit(budgetBytes: number, s: AutoSizing): number {
  const typical = Math.min(s.contextTokens ?? Infinity, 1024 + s.maxTokens)
  const fit = Math.floor(budgetBytes / Math.max(1, typical * s.bytesPerToken))
  return Math.max(1, Math.min(fit, 4 * Math.max(1, s.vcpus), MAX_AUTO_BATCH))
}
