// One onnxruntime-node session over a KV-cache decoder, and one forward step of it.
import {createRequire} from 'node:module'
import {availableParallelism} from 'node:os'
import {posix} from 'node:path'

import {ort} from './ort.js'

import {type DecoderIo, type DecoderExpectation, checkDecoderIo, firstLine} from '../model/inspect.js'
import {type NBitsReport, planModel} from '../model/last-logits.js'
import {isExternalDataOf} from '../model/layout.js'
import {inMemory, modelFileSize} from '../model/memory.js'
import {EngineError} from './errors.js'
import {halfToFloat} from './half.js'

export interface SessionOptions {
  /** Intra-op threads: the vCPUs the engine may use (default: all of this machine's). */
  threads?: number
  /** ORT's CPU memory arena for activations (default on: decode steps reuse its buffers). */
  arena?: boolean
  /**
   * Let ORT pre-pack MatMul/Gemm weights at load (default: on for models of PREPACK_MIN_BYTES or
   * more): each weight is repacked once into
   * the layout MLAS multiplies from, instead of packing panels again at every token (about 10-20%
   * less CPU per decoded token in our measurements; transformers.js runs with it on too). The
   * original of a packed weight is freed; the tied embedding stays (Gather reads it), so steady
   * memory grows by one packed copy of it (~0.2 GB for gpt2-medium). See mapLargeAllocations for why
   * the freed originals do not stay in the process.
   */
  prepack?: boolean
  /**
   * Let ORT's worker threads busy-wait between operators (default off). Spinning shaves the wake-up
   * of each operator on an idle machine, but the spinning threads take the cores from everything
   * else in the enclave — the Node thread that parses HTTP, opens sealed requests and seals chunks,
   * and other requests' sessions.
   */
  spin?: boolean
  /**
   * Feed the LM head the last position only (default on, when the graph ends in a recognisable LM
   * head; see model/last-logits.ts): prefill then skips the vocabulary product for every other prompt
   * position, and returns one row of logits instead of one per prompt token.
   */
  lastLogitsOnly?: boolean
  /**
   * ORT's graph optimisation level (default "all"). `nle model save` checks a model at "basic", which
   * loads fast; "disabled" is not offered: ORT then cannot run float16 graphs on the CPU (the casts
   * it inserts for kernels that have no float16 version are only typed after optimisation).
   */
  optimization?: 'basic' | 'all'
  /**
   * Quantized products (com.microsoft MatMulNBits) the file leaves at accuracy level 0 (fp32 compute)
   * run at this level instead (default 4: int8 compute, about 5× faster for 4-bit weights and 35× for
   * 8-bit on the CPU); 'file' keeps the file's levels. The levels used are reported (`nbits`).
   */
  nbitsAccuracy?: number | 'file'
}

/** The accuracy level quantized products run at when the file leaves it unset (see SessionOptions.nbitsAccuracy). */
export const DEFAULT_NBITS_ACCURACY = 4

/**
 * Below this much weight, pre-packing is off by default: on the tiny test model (a few MB) packing
 * costs CPU per token instead of saving it (≈3.8 vs 1.0 ms per token measured), while on
 * gpt2-medium (1.4 GB) it saves 10–20%.
 */
export const PREPACK_MIN_BYTES = 100 * 1024 * 1024

/** Bytes of the ONNX file and of its external data file (`<file>_data`, as Optimum writes it), if any. */
async function weightBytes(path: string): Promise<number> {
  let total = 0
  for (const p of [path, `${path}_data`]) total += (await modelFileSize(p)) ?? 0
  return total
}

/**
 * For an ONNX file of an in-memory model folder (../model/memory.ts): its bytes, and every file an
 * initializer may name as external data — the file itself (the rewritten graph points its large
 * initializers back into the original) and its `_data` companions — for onnxruntime's `externalData`.
 */
function memoryModel(path: string): {bytes: Uint8Array; externalData: {path: string; data: Uint8Array}[]} | undefined {
  const m = inMemory(path)
  if (m === undefined) return undefined
  const bytes = m.files.get(m.rel)
  if (bytes === undefined) throw new EngineError('ENGINE_MODEL_NOT_FOUND', `${path} is not in the in-memory model.`, {details: {path}})
  const folder = posix.dirname(m.rel)
  const externalData = [{path: posix.basename(m.rel), data: bytes}]
  for (const [rel, data] of m.files) {
    if (posix.dirname(rel) === folder && isExternalDataOf(posix.basename(m.rel), posix.basename(rel))) externalData.push({path: posix.basename(rel), data})
  }
  return {bytes, externalData}
}

const M_TRIM_THRESHOLD = -1
const M_MMAP_THRESHOLD = -3
/** glibc's ceiling for its dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit). */
const GLIBC_MMAP_THRESHOLD_MAX = 32 << 20
let mallopt: ((param: number, value: number) => number) | null | undefined
let loading = 0

/**
 * While sessions load, serve every allocation of 1 MiB or more with its own mmap (glibc only; a no-op
 * elsewhere). Pre-packing allocates a packed copy of each weight and frees the original; glibc's
 * dynamic mmap threshold rises to the size of the first large chunk freed, so most originals would
 * come from, and be freed back into, the heap, where their pages stay resident: the process kept
 * ~0.8 GB of dead weights for gpt2-medium. Mapped, each freed original goes back to the kernel at
 * once, and peak RSS with pre-packing stays near the model's size. Afterwards the threshold is set to
 * glibc's own dynamic ceiling (32 MiB; trim at twice that), which is where the dynamic threshold
 * settles after a load anyway, so per-token buffers (KV cache, logits) keep coming from the heap.
 * Returns the function that ends the loading phase.
 */
export function mapLargeAllocations(): () => void {
  if (mallopt === undefined) {
    mallopt = null
    if (process.platform === 'linux') {
      try {
        const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
        mallopt = koffi.load('libc.so.6').func('int mallopt(int param, int value)') as (param: number, value: number) => number
      } catch {
        // Not glibc (musl has no libc.so.6 and ignores mallopt): nothing to tune.
      }
    }
  }
  const set = mallopt
  if (set === null) return () => undefined
  if (loading++ === 0) set(M_MMAP_THRESHOLD, 1 << 20)
  let done = false
  return () => {
    if (done) return
    done = true
    if (--loading === 0) {
      set(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
      set(M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD_MAX)
    }
  }
}

/** The KV cache: one key and one value tensor per layer, and how many positions it holds. */
export interface KvCache {
  readonly tensors: Readonly<Record<string, ort.Tensor>>
  readonly length: number
}

export interface ForwardResult {
  /** Logits of the last position: one row of vocab size. */
  lastLogits: Float32Array
  cache: KvCache
}

export class DecoderSession {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly io: DecoderIo,
    readonly threads: number,
    /** Why the LM head runs over every position (the original graph was loaded); undefined when it sees the last one only. */
    readonly fullHeadReason: string | undefined,
    /** The quantized products: how many, the file's accuracy levels and the ones they run at. */
    readonly nbits: NBitsReport,
  ) {}

  /** Whether the loaded graph computes logits for the last position only (see model/last-logits.ts). */
  get lastLogitsOnly(): boolean {
    return this.fullHeadReason === undefined
  }

  static async create(path: string, expect: DecoderExpectation, options: SessionOptions = {}): Promise<DecoderSession> {
    const threads = options.threads ?? availableParallelism()
    if (!Number.isInteger(threads) || threads < 1) throw new EngineError('ENGINE_BAD_OPTIONS', 'threads must be an integer >= 1.')
    // The graph rewritten at load (a last-position LM head, the accuracy level of quantized products),
    // its weights read from the original file (external data).
    const level = options.nbitsAccuracy ?? DEFAULT_NBITS_ACCURACY
    const plan = await planModel(path, {lastLogitsOnly: options.lastLogitsOnly !== false, ...(level === 'file' ? {} : {accuracyLevel: level})})
    // MatMulNBits runs its int8-compute kernel (accuracy level 4) only on pre-packed weights; without
    // pre-packing it falls back to fp32 compute whatever the level says. So quantized graphs pre-pack.
    const prepack = options.prepack ?? (plan.nbits.nodes > 0 || (await weightBytes(path)) >= PREPACK_MIN_BYTES)
    const config = {disable_prepacking: prepack ? '0' : '1', intra_op: {allow_spinning: options.spin === true ? '1' : '0'}}
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: options.optimization ?? 'all',
      enableCpuMemArena: options.arena ?? true,
      enableMemPattern: true,
      logSeverityLevel: 3,
      extra: {session: config},
    }
    const restore = prepack ? mapLargeAllocations() : (): void => undefined
    let session: ort.InferenceSession | undefined
    let fullHead = plan.fullHeadReason
    let nbits = plan.nbits
    // An in-memory model: onnxruntime gets the bytes and its external data as buffers, never a path.
    const memory = memoryModel(path)
    try {
      if (plan.model !== undefined) {
        const extra = {session: {...config, model_external_initializers_file_folder_path: plan.model.folder}}
        const options = memory === undefined ? {...sessionOptions, extra} : {...sessionOptions, externalData: memory.externalData}
        // Not loadable this way (an ORT without external data for in-memory models, say): the original is.
        session = await ort.InferenceSession.create(plan.model.bytes, options).catch((error: unknown) => {
          fullHead = `onnxruntime refused the rewritten graph: ${firstLine(error)}`
          nbits = {...nbits, runLevels: nbits.fileLevels}
          return undefined
        })
      }
      session ??= memory === undefined ? await ort.InferenceSession.create(path, sessionOptions) : await ort.InferenceSession.create(memory.bytes, {...sessionOptions, externalData: memory.externalData})
    } catch (cause) {
      restore()
      throw new EngineError('ENGINE_SESSION_FAILED', `onnxruntime could not load ${path}.`, {
        cause,
        hint: 'The ONNX file is damaged or not ONNX: run `nle model save` again.',
        details: {path, reason: firstLine(cause)},
      })
    }
    restore()
    try {
      return new DecoderSession(session, checkDecoderIo(session, expect, path), threads, fullHead, nbits)
    } catch (error) {
      await session.release()
      throw error
    }
  }

  /** An empty cache (0 past positions) in the shapes and the element type the model declares. */
  emptyCache(): KvCache {
    const tensors: Record<string, ort.Tensor> = {}
    const empty = (dims: number[]): ort.Tensor =>
      this.io.cacheType === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims)
    for (let i = 0; i < this.io.numLayers; i++) {
      tensors[`past_key_values.${i}.key`] = empty(this.io.key.emptyDims)
      tensors[`past_key_values.${i}.value`] = empty(this.io.value.emptyDims)
    }
    return {tensors, length: 0}
  }

  /** Runs `ids` after the positions already in `cache`; returns the last logits and the grown cache. */
  async forward(ids: readonly number[], cache: KvCache): Promise<ForwardResult> {
    const n = ids.length
    const total = cache.length + n
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, n]),
      ...cache.tensors,
    }
    if (this.io.hasAttentionMask) feeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total])
    if (this.io.hasPositionIds) {
      const pos = new BigInt64Array(n)
      for (let i = 0; i < n; i++) pos[i] = BigInt(cache.length + i)
      feeds.position_ids = new ort.Tensor('int64', pos, [1, n])
    }
    if (this.io.hasTokenTypeIds) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(n), [1, n])
    // The merged decoder's first step takes the branch without a cache (its past inputs are empty).
    if (this.io.hasCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([cache.length > 0 ? 1 : 0]), [1])
    const out = await this.run(feeds)
    const logits = out.logits as ort.Tensor
    const vocab = logits.dims[logits.dims.length - 1] as number
    const data = logits.data as Float32Array | Uint16Array
    const last = data.subarray(data.length - vocab)
    const lastLogits = widen(last)
    const tensors: Record<string, ort.Tensor> = {}
    for (let i = 0; i < this.io.numLayers; i++) {
      tensors[`past_key_values.${i}.key`] = out[`present.${i}.key`] as ort.Tensor
      tensors[`past_key_values.${i}.value`] = out[`present.${i}.value`] as ort.Tensor
    }
    return {lastLogits, cache: {tensors, length: total}}
  }

  private async run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    try {
      return await this.session.run(feeds)
    } catch (cause) {
      throw new EngineError('ENGINE_INFERENCE_FAILED', 'onnxruntime failed to run the model.', {cause, details: {reason: firstLine(cause)}})
    }
  }

  /**
   * One step over a batch of rows that share a left-padded cache of `past` positions: row b's ids
   * [b][0..n) follow its own `past - pads[b]` real positions (the first pads[b] of the cache are
   * padding, masked out). All rows feed the same number of ids. Returns each row's last logits and
   * the grown batched cache (onnxruntime's own present tensors: nothing is copied here).
   */
  async forwardBatch(ids: readonly (readonly number[])[], past: Readonly<Record<string, ort.Tensor>>, pastLength: number, pads: readonly number[]): Promise<{rows: Float32Array[]; present: Record<string, ort.Tensor>}> {
    const b = ids.length
    const n = (ids[0] as readonly number[]).length
    const total = pastLength + n
    const input = new BigInt64Array(b * n)
    const mask = new BigInt64Array(b * total)
    const pos = new BigInt64Array(b * n)
    for (let r = 0; r < b; r++) {
      const row = ids[r] as readonly number[]
      const pad = pads[r] as number
      for (let i = 0; i < n; i++) {
        input[r * n + i] = BigInt(row[i] as number)
        pos[r * n + i] = BigInt(pastLength - pad + i)
      }
      mask.fill(1n, r * total + pad, (r + 1) * total)
    }
    const feeds: Record<string, ort.Tensor> = {input_ids: new ort.Tensor('int64', input, [b, n]), ...past}
    if (this.io.hasAttentionMask) feeds.attention_mask = new ort.Tensor('int64', mask, [b, total])
    if (this.io.hasPositionIds) feeds.position_ids = new ort.Tensor('int64', pos, [b, n])
    if (this.io.hasTokenTypeIds) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(b * n), [b, n])
    if (this.io.hasCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([pastLength > 0 ? 1 : 0]), [1])
    const out = await this.run(feeds)
    const logits = out.logits as ort.Tensor
    const vocab = logits.dims[logits.dims.length - 1] as number
    const perRow = logits.dims.length === 3 ? (logits.dims[1] as number) : 1
    const data = logits.data as Float32Array | Uint16Array
    const rows: Float32Array[] = []
    for (let r = 0; r < b; r++) {
      const end = (r * perRow + perRow) * vocab
      const last = data.subarray(end - vocab, end)
      rows.push(widen(last))
    }
    const present: Record<string, ort.Tensor> = {}
    for (let i = 0; i < this.io.numLayers; i++) {
      present[`past_key_values.${i}.key`] = out[`present.${i}.key`] as ort.Tensor
      present[`past_key_values.${i}.value`] = out[`present.${i}.value`] as ort.Tensor
    }
    return {rows, present}
  }

  async release(): Promise<void> {
    await this.session.release()
  }
}

/** Logits as float32: float16 ones arrive as raw half bits (src/lib/engine/ort.ts keeps them so) and are widened, never sampled as integers. */
function widen(logits: Float32Array | Uint16Array): Float32Array {
  return logits instanceof Float32Array ? logits : logits instanceof Uint16Array ? halfToFloat(logits) : Float32Array.from(logits as ArrayLike<number>)
}
