// The engine in a worker thread: the same async API as Engine (stream, generate, promptIds, close),
// with the onnxruntime session and the batching scheduler off the main event loop, so HTTP parsing,
// sealing and health checks go on while tokens are computed. Cancellation (an AbortSignal, or a
// reader that stops) is posted to the worker, which ends the sequence at the next step.
import {Worker} from 'node:worker_threads'

import type {DecoderConfig} from '../model/layout.js'
import {type BatchingInfo, type EngineOptions, type GenerateInput, type GenerateOptions, promptIdsFor, readModelFolder} from './engine.js'
import {EngineError} from './errors.js'
import type {GenerateResult, SchedulerStats, StreamChunk} from './scheduler.js'
import {memoryModelFiles, unregisterMemoryModel} from '../model/memory.js'
import {TextTokenizer} from './tokenizer.js'
import {type DecoderInfo, deserializeError, type MainToWorker, type WorkerReadyInfo, type WorkerToMain} from './worker-protocol.js'
import {toEnd} from './stream.js'

interface Pending {
  chunks: StreamChunk[]
  result?: GenerateResult
  error?: Error
  wake?: () => void
}

/**
 * Starts the worker beside this module: the compiled engine-worker.js, or under tsx/vitest (this
 * module is .ts) the .ts source, imported through tsx's API (a worker does not inherit loaders).
 */
/** Whether `b` is the whole of its ArrayBuffer (so transferring it takes nothing else along). */
export function ownsBuffer(b: Uint8Array): boolean {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
}

function startWorker(workerData: unknown, transferList: ArrayBuffer[] = []): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./engine-worker.js', import.meta.url), {workerData, transferList})
  const entry = new URL('./engine-worker.ts', import.meta.url).href // runtime-graph: dev-only (tests and tsx run the .ts sources)
  const code = `import('tsx/esm/api').then((api) => api.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(entry)}))` // runtime-graph: dev-only
  return new Worker(code, {eval: true, workerData, transferList})
}

export class WorkerEngine {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly statsWaiters = new Map<number, (s: SchedulerStats) => void>()
  private closing: Promise<void> | undefined
  private dead: Error | undefined

  private constructor(
    readonly dir: string,
    readonly tokenizer: TextTokenizer,
    readonly config: DecoderConfig,
    private readonly worker: Worker,
    private readonly info: WorkerReadyInfo,
  ) {
    worker.on('message', (m: WorkerToMain) => this.onMessage(m))
    worker.on('error', (error) => this.failAll(error))
    worker.on('exit', () => this.failAll(new EngineError('ENGINE_CLOSED', 'The engine worker stopped.')))
  }

  /**
   * Loads the model in a new worker thread (the same options as Engine.load). A folder registered
   * in memory (../model/memory.ts) moves to the worker: its buffers are transferred, not copied,
   * and the folder is unregistered here, so the plaintext lives once, in the worker.
   */
  static async load(dir: string, options: EngineOptions = {}): Promise<WorkerEngine> {
    // The worker checks everything again as it loads; these two are for promptIds on this side.
    const config = await readModelFolder(dir)
    const tokenizer = await TextTokenizer.load(dir)
    const files = memoryModelFiles(dir)
    let worker: Worker
    if (files === undefined) worker = startWorker({dir, options})
    else {
      // Only a buffer a file owns whole is moved; one that shares its ArrayBuffer (Node's pool for
      // small Buffers, a slice) is copied first. Node marks its pool untransferable: Node 20 then
      // copies it quietly, Node 24 (the enclave's) refuses the whole load with a DataCloneError.
      const memory = Object.fromEntries([...files].map(([name, b]) => [name, ownsBuffer(b) ? b : new Uint8Array(b)]))
      const transfer = [...new Set(Object.values(memory).map((b) => b.buffer))].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer)
      worker = startWorker({dir, options, memory}, transfer)
      unregisterMemoryModel(dir)
    }
    let cleanup = (): void => undefined
    const info = await new Promise<WorkerReadyInfo>((resolve, reject) => {
      const onMessage = (m: WorkerToMain): void => {
        if (m.type === 'ready') resolve(m.info)
        else if (m.type === 'loadError') reject(deserializeError(m.error))
      }
      const onExit = (code: number): void => reject(new EngineError('ENGINE_SESSION_FAILED', `The engine worker exited (${code}) while loading.`))
      worker.on('message', onMessage)
      worker.on('error', reject)
      worker.on('exit', onExit)
      // Only these: the Worker's own listeners (which start its port) must stay.
      cleanup = () => {
        worker.off('message', onMessage)
        worker.off('error', reject)
        worker.off('exit', onExit)
      }
    }).catch(async (error: unknown) => {
      cleanup()
      await worker.terminate()
      throw error
    })
    cleanup()
    return new WorkerEngine(dir, tokenizer, config, worker, info)
  }

  get threads(): number {
    return this.info.threads
  }

  get onnxFile(): string {
    return this.info.onnxFile
  }

  get batching(): BatchingInfo {
    return this.info.batching
  }

  /** How the worker's session runs the model (the facts DecoderSession reports). */
  get decoder(): DecoderInfo {
    return this.info.decoder
  }

  promptIds(input: GenerateInput): number[] {
    return promptIdsFor(this.tokenizer, this.config, input)
  }

  /** What the worker's scheduler is doing (content-free counts). */
  async schedulerStats(): Promise<SchedulerStats> {
    if (this.dead !== undefined) throw this.dead
    const id = this.nextId++
    return new Promise((resolve) => {
      this.statsWaiters.set(id, resolve)
      this.post({type: 'stats', id})
    })
  }

  async *stream(input: GenerateInput, options: GenerateOptions = {}): AsyncGenerator<StreamChunk, GenerateResult, void> {
    if (this.closing !== undefined || this.dead !== undefined) throw new EngineError('ENGINE_CLOSED', 'The engine was closed.')
    const {signal, ...rest} = options
    const id = this.nextId++
    const p: Pending = {chunks: []}
    this.pending.set(id, p)
    const cancel = (): void => this.post({type: 'cancel', id})
    this.post({type: 'generate', id, input, options: rest, aborted: signal?.aborted === true})
    signal?.addEventListener('abort', cancel, {once: true})
    try {
      for (;;) {
        const c = p.chunks.shift()
        if (c !== undefined) {
          yield c
          continue
        }
        if (p.error !== undefined) throw p.error
        if (p.result !== undefined) return p.result
        await new Promise<void>((resolve) => {
          p.wake = resolve
        })
      }
    } finally {
      signal?.removeEventListener('abort', cancel)
      // A reader that stops early frees its place in the batch.
      if (p.result === undefined && p.error === undefined) cancel()
      this.pending.delete(id)
    }
  }

  async generate(input: GenerateInput, options: GenerateOptions = {}): Promise<GenerateResult> {
    return toEnd(this.stream(input, options))
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.dead === undefined) {
        const closed = new Promise<void>((resolve) => {
          const onMessage = (m: WorkerToMain): void => {
            if (m.type === 'closed') resolve()
          }
          this.worker.on('message', onMessage)
          this.worker.once('exit', () => resolve())
        })
        this.post({type: 'close'})
        await closed
      }
      await this.worker.terminate()
    })()
    await this.closing
  }

  private post(m: MainToWorker): void {
    if (this.dead === undefined) this.worker.postMessage(m)
  }

  private onMessage(m: WorkerToMain): void {
    if (m.type === 'stats') {
      this.statsWaiters.get(m.id)?.(m.stats)
      this.statsWaiters.delete(m.id)
      return
    }
    if (m.type !== 'chunk' && m.type !== 'done' && m.type !== 'error') return
    const p = this.pending.get(m.id)
    if (p === undefined) return
    if (m.type === 'chunk') p.chunks.push(m.chunk)
    else if (m.type === 'done') p.result = m.result
    else p.error = deserializeError(m.error)
    const wake = p.wake
    p.wake = undefined
    wake?.()
  }

  private failAll(error: Error): void {
    if (this.dead !== undefined) return
    this.dead = this.closing === undefined ? error : new EngineError('ENGINE_CLOSED', 'The engine was closed.')
    for (const p of this.pending.values()) {
      p.error ??= this.dead
      const wake = p.wake
      p.wake = undefined
      wake?.()
    }
    this.statsWaiters.clear()
  }
}
