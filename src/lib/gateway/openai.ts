/**
 * OpenAI's HTTP shapes on the gateway side: validating an incoming chat / completions request into
 * the enclave's chat request, and turning the enclave's (opened) answers into OpenAI's chat and
 * text-completion responses and stream chunks. Validation messages name a field, never its value.
 */
import {z} from 'zod'

import type {ChatRequest} from '../client/index.js'
import type {ChatCompletion, ChatCompletionChunk} from '../server/chat.js'
import {gatewayError} from './errors.js'

const textPart = z.object({type: z.literal('text'), text: z.string()})
const content = z.union([z.string(), z.array(z.union([textPart, z.object({type: z.string()})])), z.null()])

const message = z.object({
  role: z.string(),
  content: content.optional(),
})

const sampling = {
  model: z.string().max(256).optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  top_k: z.number().int().min(0).nullable().optional(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  n: z.number().int().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({include_usage: z.boolean().optional()}).nullable().optional(),
}

const chatSchema = z.object({
  ...sampling,
  messages: z.array(message).min(1).max(1024),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  tools: z.array(z.unknown()).nullable().optional(),
  functions: z.array(z.unknown()).nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
})

const completionSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).length(1)]),
  echo: z.boolean().nullable().optional(),
  suffix: z.string().nullable().optional(),
  logprobs: z.number().nullable().optional(),
  best_of: z.number().int().nullable().optional(),
})

export interface ParsedRequest {
  /** What is sealed to the enclave. */
  request: ChatRequest
  stream: boolean
  includeUsage: boolean
}

function bad(message: string): never {
  throw gatewayError('GATEWAY_BAD_REQUEST', message)
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    return bad('The request body is not JSON.')
  }
}

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    bad(`Invalid ${what} request at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}.`)
  }
  return r.data
}

type Sampling = {[K in keyof typeof sampling]?: z.infer<(typeof sampling)[K]>}

function common(r: Sampling): Omit<ChatRequest, 'messages'> {
  if (r.n !== undefined && r.n !== null && r.n !== 1) bad('Only n = 1 is supported.')
  const out: Omit<ChatRequest, 'messages'> = {}
  if (r.model != null) out.model = r.model
  if (r.max_tokens != null) out.max_tokens = r.max_tokens
  if (r.temperature != null) out.temperature = r.temperature
  if (r.top_p != null) out.top_p = r.top_p
  if (r.top_k != null) out.top_k = r.top_k
  if (r.stop != null) out.stop = r.stop
  if (r.seed != null) out.seed = r.seed
  return out
}

const ROLES: Record<string, 'system' | 'user' | 'assistant'> = {system: 'system', developer: 'system', user: 'user', assistant: 'assistant'}

/** POST /v1/chat/completions. */
export function parseChatBody(body: Buffer): ParsedRequest {
  const r = check(chatSchema, parseJson(body), 'chat completion')
  if (r.tools?.length || r.functions?.length) bad('Tools and function calling are not supported by this enclave.')
  if (r.logprobs) bad('logprobs are not supported by this enclave.')
  const messages = r.messages.map((m, i) => {
    const role = ROLES[m.role]
    if (!role) bad(`Invalid chat completion request at messages.${i}.role: only system, developer, user and assistant are supported.`)
    let text = ''
    if (typeof m.content === 'string') text = m.content
    else if (Array.isArray(m.content)) {
      for (const part of m.content) {
        if (part.type !== 'text' || typeof (part as {text?: unknown}).text !== 'string') bad(`Invalid chat completion request at messages.${i}.content: only text parts are supported.`)
        text += (part as {text: string}).text
      }
    }
    return {role, content: text}
  })
  const request: ChatRequest = {...common(r), messages}
  if (r.max_completion_tokens != null) request.max_completion_tokens = r.max_completion_tokens
  return {request, stream: r.stream === true, includeUsage: r.stream_options?.include_usage === true}
}

/** POST /v1/completions: the prompt becomes one user message. */
export function parseCompletionBody(body: Buffer): ParsedRequest {
  const r = check(completionSchema, parseJson(body), 'completion')
  if (r.echo) bad('echo is not supported by this enclave.')
  if (r.suffix) bad('suffix is not supported by this enclave.')
  if (r.logprobs != null) bad('logprobs are not supported by this enclave.')
  if (r.best_of != null && r.best_of !== 1) bad('Only best_of = 1 is supported.')
  const prompt = typeof r.prompt === 'string' ? r.prompt : r.prompt[0]!
  return {request: {...common(r), messages: [{role: 'user', content: prompt}]}, stream: r.stream === true, includeUsage: r.stream_options?.include_usage === true}
}

// ---- answers ----

export interface OpenAiChatCompletion extends Omit<ChatCompletion, 'choices'> {
  choices: (ChatCompletion['choices'][number] & {logprobs: null})[]
}

export function chatCompletion(c: ChatCompletion): OpenAiChatCompletion {
  return {...c, choices: c.choices.map((ch) => ({...ch, logprobs: null}))}
}

/** Stream chunks as OpenAI sends them: usage only in a last chunk with no choices, when asked for. */
export function chatChunks(c: ChatCompletionChunk, includeUsage: boolean): object[] {
  const {usage, ...rest} = c
  const out: object[] = [{...rest, choices: c.choices.map((ch) => ({...ch, logprobs: null}))}]
  if (includeUsage && usage) out.push({id: c.id, object: c.object, created: c.created, model: c.model, choices: [], usage})
  return out
}

export interface TextCompletion {
  id: string
  object: 'text_completion'
  created: number
  model: string
  choices: {text: string; index: 0; logprobs: null; finish_reason: string | null}[]
  usage?: ChatCompletion['usage']
}

const cmplId = (chatId: string): string => `cmpl-${chatId.replace(/^chatcmpl-/, '')}`

export function textCompletion(c: ChatCompletion): TextCompletion {
  const ch = c.choices[0]
  return {
    id: cmplId(c.id),
    object: 'text_completion',
    created: c.created,
    model: c.model,
    choices: [{text: ch?.message.content ?? '', index: 0, logprobs: null, finish_reason: ch?.finish_reason ?? 'stop'}],
    usage: c.usage,
  }
}

/** A chat chunk as text-completion chunks (none for the role-only opening chunk). */
export function textChunks(c: ChatCompletionChunk, includeUsage: boolean): object[] {
  const ch = c.choices[0]
  const text = ch?.delta.content ?? ''
  const finish = ch?.finish_reason ?? null
  const out: object[] = []
  const base = {id: cmplId(c.id), object: 'text_completion' as const, created: c.created, model: c.model}
  if (text.length > 0 || finish !== null) out.push({...base, choices: [{text, index: 0, logprobs: null, finish_reason: finish}]})
  if (includeUsage && c.usage) out.push({...base, choices: [], usage: c.usage})
  return out
}
