/** A counting semaphore with a bounded wait queue (used by the server and the proxy). */
export class Semaphore {
  private active = 0
  private readonly waiters: (() => void)[] = []

  constructor(
    readonly limit: number,
    readonly maxQueue: number,
  ) {}

  get inFlight(): number {
    return this.active
  }

  get queued(): number {
    return this.waiters.length
  }

  /** Take a slot now if one is free. */
  tryAcquire(): boolean {
    if (this.active < this.limit) {
      this.active++
      return true
    }
    return false
  }

  /**
   * Take a slot, waiting in the queue when none is free. Resolves false (without a slot) when the
   * queue is full or the signal aborts first.
   */
  async acquire(signal?: AbortSignal): Promise<boolean> {
    if (this.tryAcquire()) return true
    if (this.waiters.length >= this.maxQueue || signal?.aborted) return false
    return new Promise<boolean>((resolve) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort)
        this.active++
        resolve(true)
      }
      const onAbort = (): void => {
        const i = this.waiters.indexOf(wake)
        if (i !== -1) this.waiters.splice(i, 1)
        resolve(false)
      }
      signal?.addEventListener('abort', onAbort, {once: true})
      this.waiters.push(wake)
    })
  }

  release(): void {
    this.active--
    const next = this.waiters.shift()
    if (next) next()
  }
}
