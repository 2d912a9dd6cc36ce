// Continuous batching: one scheduler owns a model's session and runs steps over every active
// sequence at once. A step is either one prefill chunk of one joining sequence (batch 1, its own
// cache) or one decode step over the batch (one token per row, the rows left-padded to a shared
// past length, each with its own attention mask and position ids). Sequences join between steps and
// leave as soon as they finish or are cancelled; each keeps its own sampler, seed, stop strings,
// token limit and metrics, so its output is what it would be alone.
import {performance} from 'node:perf_hooks'

import type * as ort from 'onnxruntime-node'

import {assembleBatch, type BatchCache, layoutOf, type RowSource} from './kv-batch.js'
import type {Sampler} from './sampling.js'
import type {DecoderSession} from './session.js'
import type {IncrementalDecoder, StopMatcher} from './stream.js'

export type FinishReason = 'stop' | 'length' | 'cancelled'

export interface GenerationMetrics {
  promptTokens: number
  generatedTokens: number
  /** Request start to the first generated token (tokenization + queueing + prefill + sampling). */
  ttftMs: number
  prefillMs: number
  decodeMs: number
  totalMs: number
  prefillTokensPerSecond: number
  /** Tokens after the first, per second of decoding. */
  decodeTokensPerSecond: number
  /** Mean time between tokens after the first (ms; 0 with fewer than two tokens). */
  interTokenMs: number
}

export interface StreamChunk {
  /** New text: never part of a UTF-8 character nor of a stop string. May be '' when only ids advanced. */
  text: string
  /** Ids generated since the previous chunk. */
  tokenIds: number[]
}

export interface GenerateResult {
  text: string
  tokenIds: number[]
  finishReason: FinishReason
  /** Which stop string or token ended generation, when finishReason is "stop". */
  stoppedBy?: {string: string} | {tokenId: number}
  /** The sampling seed used (drawn at random when none was given). */
  seed: number
  metrics: GenerationMetrics
}

/** Where a sequence's output goes. */
export interface SequenceSink {
  chunk(chunk: StreamChunk): void
  done(result: GenerateResult): void
  fail(error: unknown): void
}

export interface SequenceSpec {
  prompt: readonly number[]
  /** Most tokens to generate (already bounded by the context). */
  limit: number
  stopIds: ReadonlySet<number>
  seed: number
  sampler: Sampler
  textDecoder: IncrementalDecoder
  matcher: StopMatcher
  signal?: AbortSignal | undefined
  /** When the request started (performance.now()), for its metrics. */
  t0: number
  sink: SequenceSink
}

/** One request's state inside the scheduler. */
class Sequence {
  prefilled = 0
  rowCache: BatchCache | undefined
  pad = 0
  lastId = -1
  readonly generated: number[] = []
  text = ''
  finishReason: FinishReason = 'length'
  stoppedBy: GenerateResult['stoppedBy']
  prefillMs = 0
  ttft = 0
  decodeStart = 0
  finished = false

  constructor(readonly spec: SequenceSpec) {}

  get cancelled(): boolean {
    return this.spec.signal?.aborted === true
  }

  /** Takes the logits of its last position; returns true when the sequence is done (and reported). */
  accept(row: Float32Array): boolean {
    const s = this.spec
    const id = s.sampler.next(row)
    if (this.generated.length === 0) {
      this.ttft = performance.now() - s.t0
      this.decodeStart = performance.now()
    }
    if (s.stopIds.has(id)) {
      this.finishReason = 'stop'
      this.stoppedBy = {tokenId: id}
      return this.finish()
    }
    this.generated.push(id)
    this.lastId = id
    const {text: safe, stop} = s.matcher.push(s.textDecoder.push(id))
    this.text += safe
    s.sink.chunk({text: safe, tokenIds: [id]})
    if (stop !== undefined) {
      this.finishReason = 'stop'
      this.stoppedBy = {string: stop}
      return this.finish()
    }
    if (this.generated.length >= s.limit) return this.finish()
    if (this.cancelled) {
      this.finishReason = 'cancelled'
      return this.finish()
    }
    return false
  }

  cancel(): void {
    this.finishReason = 'cancelled'
    this.finish()
  }

  finish(): true {
    if (this.finished) return true
    this.finished = true
    this.rowCache = undefined
    const s = this.spec
    if (this.stoppedBy === undefined || !('string' in this.stoppedBy)) {
      const {text: rest, stop} = s.matcher.push(s.textDecoder.flush())
      const tail = stop === undefined ? rest + s.matcher.flush() : rest
      if (stop !== undefined) {
        this.finishReason = 'stop'
        this.stoppedBy = {string: stop}
      }
      if (tail.length > 0) {
        this.text += tail
        s.sink.chunk({text: tail, tokenIds: []})
      }
    }
    const end = performance.now()
    const n = this.generated.length
    const decodeMs = n > 0 ? end - this.decodeStart : 0
    const promptTokens = s.prompt.length
    s.sink.done({
      text: this.text,
      tokenIds: this.generated,
      finishReason: this.finishReason,
      ...(this.stoppedBy === undefined ? {} : {stoppedBy: this.stoppedBy}),
      seed: s.seed,
      metrics: {
        promptTokens,
        generatedTokens: n,
        ttftMs: this.ttft,
        prefillMs: this.prefillMs,
        decodeMs,
        totalMs: end - s.t0,
        prefillTokensPerSecond: this.prefillMs > 0 ? (promptTokens * 1000) / this.prefillMs : 0,
        decodeTokensPerSecond: decodeMs > 0 && n > 1 ? ((n - 1) * 1000) / decodeMs : 0,
        interTokenMs: n > 1 ? decodeMs / (n - 1) : 0,
      },
    })
    return true
  }
}

export interface SchedulerOptions {
  /** Most sequences decoded together (prefilling ones count). 1 when the model's layout cannot be batched exactly. */
  maxBatch: number
  /** Prompt tokens per prefill step: a long prompt is fed in chunks, with decode steps for the others between them. */
  prefillChunk: number
}

/** What the scheduler is doing, content-free. */
export interface SchedulerStats {
  /** Sequences in the decode batch. */
  active: number
  /** Sequences admitted and prefilling. */
  prefilling: number
  /** Sequences waiting for a place in the batch. */
  waiting: number
  maxBatch: number
  /** Steps run so far, and the rows they carried (occupancy = rows / steps over decode steps). */
  decodeSteps: number
  decodeRows: number
  prefillSteps: number
}

export class Scheduler {
  private readonly waiting: Sequence[] = []
  private readonly prefilling: Sequence[] = []
  private active: Sequence[] = []
  private batch: BatchCache | undefined
  private running = false
  private idle: Promise<void> = Promise.resolve()
  private decodeSteps = 0
  private decodeRows = 0
  private prefillSteps = 0

  constructor(
    private readonly decoder: DecoderSession,
    private readonly options: SchedulerOptions,
  ) {}

  stats(): SchedulerStats {
    return {
      active: this.active.length,
      prefilling: this.prefilling.length,
      waiting: this.waiting.length,
      maxBatch: this.options.maxBatch,
      decodeSteps: this.decodeSteps,
      decodeRows: this.decodeRows,
      prefillSteps: this.prefillSteps,
    }
  }

  /** Queues a sequence; it joins the batch between steps. */
  submit(spec: SequenceSpec): void {
    const seq = new Sequence(spec)
    if (seq.cancelled) {
      seq.cancel()
      return
    }
    this.waiting.push(seq)
    if (!this.running) {
      this.running = true
      this.idle = this.loop()
    }
  }

  /** Resolves when no sequence is left (after cancelling none: callers abort their own). */
  async drain(): Promise<void> {
    await this.idle
  }

  private async loop(): Promise<void> {
    try {
      while (this.waiting.length + this.prefilling.length + this.active.length > 0) await this.step()
    } catch (error) {
      // A failed run fails every sequence in flight: the batch's cache is no longer trustworthy.
      for (const seq of [...this.waiting, ...this.prefilling, ...this.active]) {
        seq.finished = true
        seq.spec.sink.fail(error)
      }
      this.waiting.length = 0
      this.prefilling.length = 0
      this.active = []
      this.batch = undefined
    } finally {
      this.running = false
    }
  }

  private async step(): Promise<void> {
    // Cancelled sequences leave before any more work is done for them.
    for (const list of [this.waiting, this.prefilling]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const seq = list[i] as Sequence
        if (seq.cancelled) {
          list.splice(i, 1)
          seq.cancel()
        }
      }
    }
    const leaving = this.active.filter((s) => s.cancelled)
    for (const seq of leaving) seq.cancel()
    if (leaving.length > 0) this.regroup([])
    // Admit while there is room.
    while (this.waiting.length > 0 && this.active.length + this.prefilling.length < this.options.maxBatch) {
      this.prefilling.push(this.waiting.shift() as Sequence)
    }
    const joining: Sequence[] = []
    const seq = this.prefilling[0]
    if (seq !== undefined) {
      if (await this.prefillChunk(seq)) {
        this.prefilling.shift()
        if (!seq.finished) joining.push(seq)
      }
    }
    if (joining.length > 0) this.regroup(joining)
    if (this.active.length > 0) await this.decode()
  }

  /** Feeds the next chunk of a sequence's prompt; true when its prompt is all in (and its first token chosen). */
  private async prefillChunk(seq: Sequence): Promise<boolean> {
    const prompt = seq.spec.prompt
    const start = seq.prefilled
    const end = Math.min(prompt.length, start + this.options.prefillChunk)
    const past = seq.rowCache ?? {...this.decoder.emptyCache(), batch: 1}
    const {rows, present} = await this.decoder.forwardBatch([prompt.slice(start, end)], past.tensors, past.length, [0])
    this.prefillSteps++
    seq.prefilled = end
    seq.rowCache = {tensors: present, length: end, batch: 1}
    if (end < prompt.length) return false
    seq.prefillMs = performance.now() - seq.spec.t0
    seq.accept(rows[0] as Float32Array)
    return true
  }

  /** Rebuilds the batch from the rows that stay (finished ones dropped) and the ones joining. */
  private regroup(joining: readonly Sequence[]): void {
    const stay = this.active.filter((s) => !s.finished)
    const sources: RowSource[] = []
    const batch = this.batch
    if (batch !== undefined) {
      this.active.forEach((s, row) => {
        if (!s.finished) sources.push({cache: batch, row, pad: s.pad})
      })
    }
    for (const s of joining) sources.push({cache: s.rowCache as BatchCache, row: 0, pad: 0})
    const next = [...stay, ...joining]
    for (const s of joining) s.rowCache = undefined
    if (next.length === 0) {
      this.active = []
      this.batch = undefined
      return
    }
    const io = this.decoder.io
    const {cache, pads} = assembleBatch(sources, (name) => layoutOf(name, io.key, io.value))
    next.forEach((s, i) => {
      s.pad = pads[i] as number
    })
    this.active = next
    this.batch = cache
  }

  private async decode(): Promise<void> {
    const batch = this.batch as BatchCache
    const rows = this.active
    const {rows: logits, present} = await this.decoder.forwardBatch(
      rows.map((s) => [s.lastId]),
      batch.tensors as Record<string, ort.Tensor>,
      batch.length,
      rows.map((s) => s.pad),
    )
    this.decodeSteps++
    this.decodeRows += rows.length
    this.batch = {tensors: present, length: batch.length + 1, batch: rows.length}
    let done = false
    rows.forEach((s, i) => {
      if (s.accept(logits[i] as Float32Array)) done = true
    })
    // Finished sequences leave at once, so the next step does not compute their rows.
    if (done) this.regroup([])
  }
}
