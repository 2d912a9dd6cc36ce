/**
 * The chat layer of the enclave server: the OpenAI chat-completions request it accepts, the
 * response / stream-chunk shapes it answers with, and the `ChatEngine` seam between the server and
 * an inference engine (the onnxruntime engine of src/lib/engine, or the echo engine for tests).
 */
import {setTimeout as sleep} from 'node:timers/promises'

import {z} from 'zod'

import type {GenerateInput, GenerateOptions, GenerateResult, StreamChunk} from '../engine/index.js'
import type {SchedulerStats} from '../engine/scheduler.js'
import type {DecoderConfig} from '../model/layout.js'
import {serverError} from './errors.js'

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant'
  content: string
}

export interface ChatOptions {
  maxTokens: number
  temperature: number
  topP: number
  topK: number
  stop: string[]
  seed?: number
  signal?: AbortSignal
}

export type ChatFinishReason = 'stop' | 'length'

export interface ChatResult {
  finishReason: ChatFinishReason
  promptTokens: number
  completionTokens: number
  /** Request start to the first token, and the mean time between the following ones (ms), when the engine measures them. */
  ttftMs?: number
  interTokenMs?: number
}

/** What the server needs of an inference engine. */
export interface ChatEngine {
  /** The model name answered in responses (e.g. the manifest's model type or repo). */
  readonly model: string
  stream(messages: readonly ChatMessage[], options: ChatOptions): AsyncGenerator<{text: string}, ChatResult, void>
  close(): Promise<void>
  /** KV-cache bytes this request's sequence can grow to (prompt + maxTokens, at most the context); absent: the engine keeps no cache. */
  kvBytes?(messages: readonly ChatMessage[], maxTokens: number): number
  /** What the engine's batch is doing (content-free counts). */
  stats?(): Promise<SchedulerStats>
}

/** What engineChat needs of an engine: the in-process Engine or the WorkerEngine (engine in a worker thread). */
export interface StreamingEngine {
  readonly config: DecoderConfig
  stream(input: GenerateInput, options?: GenerateOptions): AsyncGenerator<StreamChunk, GenerateResult, void>
  promptIds(input: GenerateInput): number[]
  close(): Promise<void>
  schedulerStats?(): Promise<SchedulerStats>
}

/**
 * Adapts the onnxruntime engine (src/lib/engine) to the server. With `kvBytesPerToken` the server
 * can budget each request's cache (./kv-budget.ts).
 */
export function engineChat(engine: StreamingEngine, model: string, kv?: {bytesPerToken: number}): ChatEngine {
  const context = engine.config.maxPositions
  return {
    model,
    ...(kv === undefined
      ? {}
      : {
          kvBytes: (messages: readonly ChatMessage[], maxTokens: number): number => {
            const tokens = engine.promptIds({messages}).length + maxTokens
            return Math.min(context ?? Infinity, tokens) * kv.bytesPerToken
          },
        }),
    ...(engine.schedulerStats === undefined ? {} : {stats: () => (engine.schedulerStats as () => Promise<SchedulerStats>).call(engine)}),
    async *stream(messages, options) {
      const it = engine.stream(
        {messages},
        {maxTokens: options.maxTokens, temperature: options.temperature, topP: options.topP, topK: options.topK, stop: options.stop, seed: options.seed, signal: options.signal},
      )
      for (;;) {
        const r = await it.next()
        if (r.done) {
          const v = r.value
          const m = v.metrics
          return {
            finishReason: v.finishReason === 'length' ? 'length' : 'stop',
            promptTokens: m.promptTokens,
            completionTokens: m.generatedTokens,
            ...(m.generatedTokens > 0 ? {ttftMs: m.ttftMs} : {}),
            ...(m.generatedTokens > 1 ? {interTokenMs: m.interTokenMs} : {}),
          }
        }
        if (r.value.text.length > 0) yield {text: r.value.text}
      }
    },
    close: () => engine.close(),
  }
}

/**
 * DEV/TEST ONLY. Answers "Echo: <last user message>" one word at a time, optionally slowly. It
 * lets end-to-end tests put a known canary in the answer; an enclave image never uses it.
 */
export function echoChat(options: {tokenDelayMs?: number} = {}): ChatEngine {
  return {
    model: 'nle-echo',
    async *stream(messages, o) {
      const last = [...messages].reverse().find((m) => m.role === 'user')?.content ?? ''
      const words = `Echo: ${last}`.split(/(?<=\s)/)
      const prompt = messages.reduce((n, m) => n + m.content.split(/\s+/).filter(Boolean).length, 0)
      let n = 0
      for (const w of words) {
        if (n >= o.maxTokens || o.signal?.aborted) return {finishReason: 'length', promptTokens: prompt, completionTokens: n}
        if (options.tokenDelayMs) await sleep(options.tokenDelayMs)
        n++
        yield {text: w}
      }
      return {finishReason: 'stop', promptTokens: prompt, completionTokens: n}
    },
    async close() {},
  }
}

const message = z.object({role: z.enum(['system', 'user', 'assistant']), content: z.string().max(1_000_000)})

const chatRequest = z.object({
  model: z.string().max(256).optional(),
  messages: z.array(message).min(1).max(1024),
  stream: z.boolean().optional(),
  max_tokens: z.number().int().min(1).optional(),
  max_completion_tokens: z.number().int().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).optional(),
  seed: z.number().int().optional(),
  n: z.literal(1).optional(),
})

export type ChatCompletionRequest = z.infer<typeof chatRequest>

export interface RuntimeDefaults {
  maxTokens: number
  sampling: {temperature: number; topP: number; topK: number}
}

/** Validate an opened request body. Throws SERVER_BAD_REQUEST naming the field, never its value. */
export function parseChatRequest(body: Uint8Array, defaults: RuntimeDefaults): {request: ChatCompletionRequest; messages: ChatMessage[]; options: ChatOptions} {
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(body).toString('utf8'))
  } catch {
    throw serverError('SERVER_BAD_REQUEST', 'The request body is not JSON.')
  }
  const parsed = chatRequest.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw serverError('SERVER_BAD_REQUEST', `Invalid chat completion request at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}.`)
  }
  const r = parsed.data
  const wanted = r.max_completion_tokens ?? r.max_tokens ?? defaults.maxTokens
  return {
    request: r,
    messages: r.messages,
    options: {
      maxTokens: Math.min(wanted, defaults.maxTokens),
      temperature: r.temperature ?? defaults.sampling.temperature,
      topP: r.top_p ?? defaults.sampling.topP,
      topK: r.top_k ?? defaults.sampling.topK,
      stop: r.stop === undefined ? [] : typeof r.stop === 'string' ? [r.stop] : r.stop,
      ...(r.seed === undefined ? {} : {seed: r.seed}),
    },
  }
}

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: {index: 0; message: {role: 'assistant'; content: string}; finish_reason: ChatFinishReason}[]
  usage: {prompt_tokens: number; completion_tokens: number; total_tokens: number}
}

export interface ChatCompletionChunk {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  choices: {index: 0; delta: {role?: 'assistant'; content?: string}; finish_reason: ChatFinishReason | null}[]
  usage?: {prompt_tokens: number; completion_tokens: number; total_tokens: number}
}

/** An error answered inside the sealed channel (only the client can read it). */
export interface SealedErrorBody {
  /**
   * `context` and `promptTokens` (ENGINE_PROMPT_TOO_LONG only): the model's context and the
   * prompt's size in tokens, so that the client can say so and keep a conversation within it.
   */
  error: {code: string; message: string; context?: number; promptTokens?: number}
}

export function usage(r: ChatResult): ChatCompletion['usage'] {
  return {prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens}
}
