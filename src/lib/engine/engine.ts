// The generation loop: tokenize (or apply the chat template), prefill the prompt, then decode one
// token at a time through the KV cache, choosing each with the sampler, until a stop token, a stop
// string, max tokens, the context size or cancellation. Text is streamed as an async iterator.
import {randomInt} from 'node:crypto'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import type {DecoderIo} from '../model/inspect.js'
import {ModelError} from '../model/errors.js'
import {isModelFile, isModelFolder} from '../model/memory.js'
import type {KvShape} from '../model/kv-size.js'
import {type DecoderConfig, type Dtype, findOnnxFile, onnxCandidates, readDecoderConfig} from '../model/layout.js'
import {EngineError} from './errors.js'
import {Sampler, type SamplingOptions, validateSampling} from './sampling.js'
import {type GenerateResult, Scheduler, type StreamChunk} from './scheduler.js'
import {DecoderSession, type SessionOptions} from './session.js'
import {IncrementalDecoder, StopMatcher, toEnd} from './stream.js'
import {type TemplateMessage, TextTokenizer} from './tokenizer.js'

export interface EngineOptions extends SessionOptions {
  /** Most sequences generated together (continuous batching; default 8). */
  maxBatch?: number
  /** Prompt tokens fed per prefill step (default 128): a long prompt stalls the batch one chunk at a time. */
  prefillChunk?: number
  /** Which ONNX variant to run (default fp32), found under its transformers.js file names. */
  dtype?: Dtype
  /** The ONNX file to run, relative to the model folder (a manifest's `onnx.file`); overrides the dtype's names. */
  onnxFile?: string
}

/** What to continue: a plain prompt, chat messages (through the chat template), or token ids. */
export type GenerateInput = {prompt: string} | {messages: readonly TemplateMessage[]} | {inputIds: readonly number[]}

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 256; also bounded by the model's context). */
  maxTokens?: number
  /** Generation ends before the first of these strings; it is not part of the text. */
  stop?: readonly string[]
  /** Token ids that end generation, besides the model's end-of-sequence tokens. */
  stopTokenIds?: readonly number[]
  /**
   * Aborting ends the stream at the next step boundary with finishReason "cancelled" (the scheduler
   * runs ahead of a slow reader, so the result may hold a few tokens past the one read when aborting).
   */
  signal?: AbortSignal
}

export type {FinishReason, GenerateResult, GenerationMetrics, StreamChunk} from './scheduler.js'

/** Model types whose graphs derive positions from the attention mask (cumulative sum), so left padding is exact without position_ids. */
const POSITIONS_FROM_MASK = new Set(['bloom', 'opt'])

/** Why a model's layout cannot be batched exactly (then it runs one sequence at a time), or undefined. */
export function unbatchableReason(io: DecoderIo, modelType: string): string | undefined {
  if (!io.hasAttentionMask) return 'the graph has no attention_mask input, so padding cannot be masked'
  if (!io.hasPositionIds && !POSITIONS_FROM_MASK.has(modelType)) return 'the graph has no position_ids input and counts positions from the past length'
  return undefined
}

/** How the engine batches this model. */
/** The KV cache's shape as the session's graph declares it. */
export function kvShapeOf(io: DecoderIo): KvShape {
  return {numLayers: io.numLayers, kvHeads: io.kvHeads, headDim: io.headDim, bytesPerValue: io.cacheType === 'float16' ? 2 : 4}
}

export interface BatchingInfo {
  maxBatch: number
  prefillChunk: number
  /** Why the model runs one sequence at a time, when it does. */
  unbatchable?: string
}

/** The prompt's token ids as an engine for this tokenizer and config feeds them. */
export function promptIdsFor(tokenizer: TextTokenizer, config: DecoderConfig, input: GenerateInput): number[] {
  if ('inputIds' in input) {
    // An id outside the embedding table would fail inside onnxruntime's Gather (or read out of bounds).
    const vocab = config.vocabSize
    const bad = input.inputIds.find((id) => !Number.isInteger(id) || id < 0 || (vocab !== undefined && id >= vocab))
    if (bad !== undefined) {
      throw new EngineError('ENGINE_BAD_OPTIONS', `Token id ${bad} is not in the model's vocabulary${vocab === undefined ? '' : ` (0 to ${vocab - 1})`}.`, {
        hint: 'Pass ids made by this model\'s tokenizer.',
        details: {tokenId: bad, vocabSize: vocab ?? null},
      })
    }
    return [...input.inputIds]
  }
  // A rendered chat template already holds its special tokens (as in transformers).
  if ('messages' in input) return tokenizer.encode(tokenizer.applyChatTemplate(input.messages), false)
  return tokenizer.encode(input.prompt)
}

export class Engine {
  private closed = false
  private readonly scheduler: Scheduler

  private constructor(
    readonly dir: string,
    readonly tokenizer: TextTokenizer,
    readonly decoder: DecoderSession,
    readonly config: DecoderConfig,
    private readonly eosIds: ReadonlySet<number>,
    /** The ONNX file it runs, relative to the model folder. */
    readonly onnxFile: string,
    readonly batching: BatchingInfo,
  ) {
    this.scheduler = new Scheduler(decoder, batching)
  }

  /** What the scheduler is doing (content-free counts). */
  stats(): ReturnType<Scheduler['stats']> {
    return this.scheduler.stats()
  }

  /** Loads a model folder in the HF ONNX layout (as `nle model save` / `nle model synth` write it). */
  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    const config = await readModelFolder(dir)
    if (config.unsupported !== undefined) {
      throw new EngineError('ENGINE_MODEL_UNSUPPORTED', `${dir} holds ${config.unsupported}, which this engine cannot run.`, {
        hint: 'Use a decoder-only text model (text-generation-with-past export).',
        details: {dir},
      })
    }
    const tokenizer = await TextTokenizer.load(dir)
    const dtype = options.dtype ?? 'fp32'
    const onnxFile = options.onnxFile ?? (await findOnnxFile(dir, dtype))
    if (onnxFile === undefined) {
      throw new EngineError('ENGINE_MODEL_NOT_FOUND', `${dir} has no ${dtype} ONNX file (${onnxCandidates(dtype).join(' or ')}).`, {
        hint: 'Pass the dtype the model was saved with (`nle model save --dtype`).',
        details: {dir, dtype},
      })
    }
    const onnxPath = join(dir, onnxFile)
    if (options.onnxFile !== undefined && !(await isModelFile(onnxPath))) {
      throw new EngineError('ENGINE_MODEL_NOT_FOUND', `${onnxPath} does not exist.`, {details: {path: onnxPath}})
    }
    for (const [name, v] of [['maxBatch', options.maxBatch], ['prefillChunk', options.prefillChunk]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new EngineError('ENGINE_BAD_OPTIONS', `${name} must be an integer >= 1.`)
    }
    let decoder: DecoderSession
    try {
      decoder = await DecoderSession.create(
        onnxPath,
        {numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim, vocabSize: config.vocabSize},
        options,
      )
    } catch (cause) {
      if (cause instanceof ModelError) {
        throw new EngineError('ENGINE_SESSION_FAILED', cause.message, {cause, hint: cause.hint, details: cause.details})
      }
      throw cause
    }
    const eos = new Set(config.eosTokenIds)
    const fromTokenizer = tokenizer.specialTokenId('eos_token')
    if (eos.size === 0 && fromTokenizer !== undefined) eos.add(fromTokenizer)
    const unbatchable = unbatchableReason(decoder.io, config.modelType)
    const batching: BatchingInfo = {
      maxBatch: unbatchable === undefined ? (options.maxBatch ?? 8) : 1,
      prefillChunk: options.prefillChunk ?? 128,
      ...(unbatchable === undefined ? {} : {unbatchable}),
    }
    return new Engine(dir, tokenizer, decoder, config, eos, onnxFile, batching)
  }

  get threads(): number {
    return this.decoder.threads
  }

  /** The prompt's token ids as the engine will feed them. */
  promptIds(input: GenerateInput): number[] {
    return promptIdsFor(this.tokenizer, this.config, input)
  }

  /** Generates and streams. The iterator's return value is the full result with metrics. */
  async *stream(input: GenerateInput, options: GenerateOptions = {}): AsyncGenerator<StreamChunk, GenerateResult, void> {
    if (this.closed) throw new EngineError('ENGINE_CLOSED', 'The engine was closed.')
    validateSampling(options)
    const maxTokens = options.maxTokens ?? 256
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new EngineError('ENGINE_BAD_OPTIONS', 'maxTokens must be an integer >= 1.')
    const stops = (options.stop ?? []).filter((s) => s.length > 0)
    const t0 = performance.now()
    const prompt = this.promptIds(input)
    if (prompt.length === 0) {
      throw new EngineError('ENGINE_PROMPT_EMPTY', 'The prompt has no tokens.', {hint: 'Send a non-empty prompt.'})
    }
    const context = this.config.maxPositions
    if (context !== undefined && prompt.length >= context) {
      throw new EngineError('ENGINE_PROMPT_TOO_LONG', `The prompt has ${prompt.length} tokens; the model's context is ${context}.`, {
        hint: 'Shorten the prompt.',
        details: {promptTokens: prompt.length, context},
      })
    }
    const limit = Math.min(maxTokens, context === undefined ? Infinity : context - prompt.length)
    const stopIds = new Set([...this.eosIds, ...(options.stopTokenIds ?? [])])
    // Without a seed, sampling draws one, and the result reports it so the output can be reproduced.
    const seed = options.seed ?? randomInt(2 ** 31)
    const sampler = new Sampler({...options, seed}, prompt)
    // A consumer that stops iterating early frees its place in the batch too.
    const left = new AbortController()
    const signal = options.signal === undefined ? left.signal : AbortSignal.any([options.signal, left.signal])
    const chunks: StreamChunk[] = []
    let result: GenerateResult | undefined
    let failure: {error: unknown} | undefined
    let wake: (() => void) | undefined
    const notify = (): void => {
      const w = wake
      wake = undefined
      w?.()
    }
    this.scheduler.submit({
      prompt,
      limit,
      stopIds,
      seed,
      sampler,
      textDecoder: new IncrementalDecoder(this.tokenizer),
      matcher: new StopMatcher(stops),
      signal,
      t0,
      sink: {
        chunk: (c) => {
          chunks.push(c)
          notify()
        },
        done: (r) => {
          result = r
          notify()
        },
        fail: (error) => {
          failure = {error}
          notify()
        },
      },
    })
    try {
      for (;;) {
        const c = chunks.shift()
        if (c !== undefined) {
          yield c
          continue
        }
        if (failure !== undefined) throw failure.error
        if (result !== undefined) return result
        await new Promise<void>((resolve) => {
          wake = resolve
        })
      }
    } finally {
      if (result === undefined) left.abort()
    }
  }

  /** Generates to the end and returns the result (the stream, consumed). */
  async generate(input: GenerateInput, options: GenerateOptions = {}): Promise<GenerateResult> {
    return toEnd(this.stream(input, options))
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.scheduler.drain()
    await this.decoder.release()
  }
}

/** The model folder's decoder config, or the engine's error saying why there is none (in-process and worker engines alike). */
export async function readModelFolder(dir: string): Promise<DecoderConfig> {
  try {
    if (!(await isModelFolder(dir))) throw new Error('not a folder')
  } catch (cause) {
    throw new EngineError('ENGINE_MODEL_NOT_FOUND', `Model folder ${dir} does not exist.`, {cause, details: {dir}})
  }
  try {
    return await readDecoderConfig(dir)
  } catch (cause) {
    const message = cause instanceof ModelError ? cause.message : `${dir}/config.json could not be read.`
    throw new EngineError('ENGINE_CONFIG_INVALID', message, {cause, details: {dir}})
  }
}
