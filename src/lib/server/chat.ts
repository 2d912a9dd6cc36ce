/**
 * The chat layer of the enclave server: the OpenAI chat-completions request it accepts, the
 * response / stream-chunk shapes it answers with, and the `ChatEngine` seam between the server and
 * an inference engine (the onnxruntime engine of src/lib/engine, or the echo engine for tests).
 */
import {setTimeout as sleep} from 'node:timers/promises'

import type {GenerateInput, GenerateOptions, GenerateResult, StreamChunk} from '../engine/index.js'
import type {SchedulerStats} from '../engine/scheduler.js'
import type {DecoderConfig} from '../model/layout.js'
import {serverError} from './errors.js'
import {type ChatCompletion, type ChatCompletionRequest, type ChatFinishReason, type ChatMessage, chatRequestSchema} from '../protocol/chat.js'

export interface ChatOptions {
  maxTokens: number
  temperature: number
  topP: number
  topK: number
  stop: string[]
  seed?: number
  signal?: AbortSignal
}

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
  const parsed = chatRequestSchema.safeParse(json)
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

export function usage(r: ChatResult): ChatCompletion['usage'] {
  return {prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens}
}
