// Choosing the next token from one row of logits: greedy, or temperature / top-k / top-p sampling
// with a seeded generator, after an optional repetition penalty (as in HF transformers).
import {EngineError} from './errors.js'
import {Rng} from './rng.js'

export interface SamplingOptions {
  /** 0 (the default) means greedy. */
  temperature?: number
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number
  /** Keep the smallest set of tokens whose probability adds up to p (1 = off). */
  topP?: number
  /** > 1 discourages tokens already in the prompt or output (1 = off). */
  repetitionPenalty?: number
  /** Seed of the sampling generator; the same seed, model, prompt and options give the same output. */
  seed?: number
}

export function validateSampling(o: SamplingOptions): void {
  const bad = (msg: string): never => {
    throw new EngineError('ENGINE_BAD_OPTIONS', msg, {hint: 'Check the sampling settings: temperature 0 to 2 (0 is greedy), top-p in (0, 1], top-k an integer >= 0, an integer seed.'})
  }
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad('temperature must be a number >= 0.')
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('topK must be an integer >= 0.')
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('topP must be in (0, 1].')
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad('repetitionPenalty must be > 0.')
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad('seed must be an integer.')
}

export function argmax(row: Float32Array): number {
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number
    if (v > bestValue) {
      bestValue = v
      best = i
    }
  }
  return best
}

/** HF's RepetitionPenaltyLogitsProcessor, in place on `row`. */
export function applyRepetitionPenalty(row: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return
  for (const id of seen) {
    const v = row[id]
    if (v === undefined) continue
    row[id] = v < 0 ? v * penalty : v / penalty
  }
}

export class Sampler {
  private readonly rng: Rng
  private readonly seen = new Set<number>()

  constructor(
    private readonly options: SamplingOptions,
    contextIds: readonly number[],
  ) {
    validateSampling(options)
    this.rng = new Rng(options.seed ?? 0)
    for (const id of contextIds) this.seen.add(id)
  }

  get greedy(): boolean {
    return !this.options.temperature
  }

  /** Picks the next token. `row` may be modified. */
  next(row: Float32Array): number {
    const penalty = this.options.repetitionPenalty ?? 1
    if (penalty !== 1) applyRepetitionPenalty(row, this.seen, penalty)
    const id = this.greedy ? argmax(row) : this.sample(row)
    this.seen.add(id)
    return id
  }

  private sample(row: Float32Array): number {
    const t = this.options.temperature as number
    const n = row.length
    let max = -Infinity
    for (let i = 0; i < n; i++) {
      const v = (row[i] as number) / t
      row[i] = v
      if (v > max) max = v
    }
    const topK = this.options.topK ?? 0
    let floor = -Infinity
    if (topK > 0 && topK < n) {
      const sorted = Float32Array.from(row).sort()
      floor = sorted[n - topK] as number
    }
    // Softmax over the kept tokens.
    const probs = new Float64Array(n)
    let sum = 0
    for (let i = 0; i < n; i++) {
      const v = row[i] as number
      if (v >= floor) {
        const e = Math.exp(v - max)
        probs[i] = e
        sum += e
      }
    }
    for (let i = 0; i < n; i++) probs[i] = (probs[i] as number) / sum
    const topP = this.options.topP ?? 1
    if (topP < 1) {
      // The smallest probability still inside the nucleus: walk the sorted probabilities down.
      const sorted = Float64Array.from(probs).sort()
      let acc = 0
      let cutoff = 0
      for (let i = n - 1; i >= 0; i--) {
        const p = sorted[i] as number
        acc += p
        cutoff = p
        if (acc >= topP) break
      }
      sum = 0
      for (let i = 0; i < n; i++) {
        if ((probs[i] as number) < cutoff) probs[i] = 0
        else sum += probs[i] as number
      }
      for (let i = 0; i < n; i++) probs[i] = (probs[i] as number) / sum
    }
    const r = this.rng.next()
    let acc = 0
    let last = 0
    for (let i = 0; i < n; i++) {
      const p = probs[i] as number
      if (p === 0) continue
      acc += p
      last = i
      if (r < acc) return i
    }
    return last
  }
}
