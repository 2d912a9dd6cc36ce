// One onnxruntime-node session over a KV-cache decoder, and one forward step of it.
import {availableParallelism} from 'node:os'

import * as ort from 'onnxruntime-node'

import {type DecoderIo, type DecoderExpectation, checkDecoderIo, firstLine} from '../model/inspect.js'
import {EngineError} from './errors.js'

export interface SessionOptions {
  /** Intra-op threads: the vCPUs the engine may use (default: all of this machine's). */
  threads?: number
  /** ORT's CPU memory arena for activations (default on: decode steps reuse its buffers). */
  arena?: boolean
  /**
   * Let ORT pre-pack MatMul weights at load (default off). Pre-packing keeps a second, packed copy
   * of every weight while the session starts, so peak memory is up to twice the weights; without it
   * MLAS packs each weight panel as it multiplies, which costs some CPU per token (about 15% in our
   * measurements) but keeps peak RSS near the model size. Enclave memory is the scarcer resource.
   */
  prepack?: boolean
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
  ) {}

  static async create(path: string, expect: DecoderExpectation, options: SessionOptions = {}): Promise<DecoderSession> {
    const threads = options.threads ?? availableParallelism()
    if (!Number.isInteger(threads) || threads < 1) throw new EngineError('ENGINE_BAD_OPTIONS', 'threads must be an integer >= 1.')
    let session: ort.InferenceSession
    try {
      session = await ort.InferenceSession.create(path, {
        executionProviders: ['cpu'],
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        enableCpuMemArena: options.arena ?? true,
        enableMemPattern: true,
        logSeverityLevel: 3,
        extra: {session: {disable_prepacking: options.prepack === true ? '0' : '1'}},
      })
    } catch (cause) {
      throw new EngineError('ENGINE_SESSION_FAILED', `onnxruntime could not load ${path}.`, {
        cause,
        hint: 'The ONNX file is damaged or not ONNX: run `nle model save` again.',
        details: {path, reason: firstLine(cause)},
      })
    }
    try {
      return new DecoderSession(session, checkDecoderIo(session, expect, path), threads)
    } catch (error) {
      await session.release()
      throw error
    }
  }

  /** An empty cache (0 past positions) in the shapes the model declares. */
  emptyCache(numHeads: number | undefined): KvCache {
    const tensors: Record<string, ort.Tensor> = {}
    const dims = (shape: (number | string)[]): number[] =>
      shape.map((d, i) => {
        if (typeof d === 'number') return d
        if (/past|sequence|seq/i.test(d)) return 0
        // A 3-D cache (Bloom) folds batch and heads into its first dimension.
        if (shape.length === 3 && i === 0) return numHeads ?? 1
        return 1
      })
    const keyDims = dims(this.io.pastKeyShape)
    const valueDims = dims(this.io.pastValueShape)
    const type = this.pastType
    for (let i = 0; i < this.io.numLayers; i++) {
      tensors[`past_key_values.${i}.key`] = new ort.Tensor(type, type === 'float16' ? new Uint16Array(0) : new Float32Array(0), keyDims)
      tensors[`past_key_values.${i}.value`] = new ort.Tensor(type, type === 'float16' ? new Uint16Array(0) : new Float32Array(0), valueDims)
    }
    return {tensors, length: 0}
  }

  private get pastType(): 'float32' | 'float16' {
    return this.io.inputs.find((i) => i.name === 'past_key_values.0.key')?.type === 'float16' ? 'float16' : 'float32'
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
    let out: ort.InferenceSession.ReturnType
    try {
      out = await this.session.run(feeds)
    } catch (cause) {
      throw new EngineError('ENGINE_INFERENCE_FAILED', 'onnxruntime failed to run the model.', {cause, details: {reason: firstLine(cause)}})
    }
    const logits = out.logits as ort.Tensor
    const vocab = logits.dims[logits.dims.length - 1] as number
    const data = logits.data as Float32Array
    const lastLogits = data.subarray(data.length - vocab)
    const tensors: Record<string, ort.Tensor> = {}
    for (let i = 0; i < this.io.numLayers; i++) {
      tensors[`past_key_values.${i}.key`] = out[`present.${i}.key`] as ort.Tensor
      tensors[`past_key_values.${i}.value`] = out[`present.${i}.value`] as ort.Tensor
    }
    return {lastLogits, cache: {tensors, length: total}}
  }

  async release(): Promise<void> {
    await this.session.release()
  }
}
