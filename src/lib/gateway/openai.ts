/**
 * OpenAI's HTTP shapes on the gateway side: validating an incoming chat / completions request into
 * the enclave's chat request, and turning the enclave's (opened) answers into OpenAI's chat and
 * text-completion responses and stream chunks. Validation messages name a field, never its value.
 */
import {z} from 'zod'

import type {ChatRequest} from '../client/index.js'
import type {ChatCompletion, ChatCompletionChunk} from '../protocol/chat.js'
import {gatewayError} from './errors.js'

/** OpenAI's way of naming a field in `param`: `messages.[0].content`. */
export function paramPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.')
}

function bad(message: string, param: string | null = null): never {
  throw gatewayError('GATEWAY_BAD_REQUEST', message, {details: {param}})
}

/** A parameter the enclave cannot honour: refused with its name, never silently ignored. */
export function unsupported(param: string, message: string): never {
  throw gatewayError('GATEWAY_UNSUPPORTED_PARAMETER', message, {details: {param}})
}

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    return bad('The request body is not JSON.')
  }
}

export function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    const param = issue && issue.path.length > 0 ? paramPath(issue.path) : null
    bad(`Invalid ${what} request at ${param ?? '(root)'}: ${issue?.message ?? 'invalid'}.`, param)
  }
  return r.data
}

/**
 * Parameters OpenAI defines that change nothing here when left at these values (absent and null
 * always do). Any other value is refused: the answer would not be what the client asked for.
 */
type Neutral = (value: unknown) => boolean
const isFalse: Neutral = (v) => v === false
const isZero: Neutral = (v) => v === 0
const isEmpty: Neutral = (v) => (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)
const isNone: Neutral = (v) => v === 'none'
const any: Neutral = () => true

/** Refuse every field that is not honoured: unknown ones, and known ones set to a value that would change the answer. */
export function refuseUnhonoured(body: Record<string, unknown>, honoured: ReadonlySet<string>, neutral: Readonly<Record<string, Neutral>>, what: string): void {
  for (const [name, value] of Object.entries(body)) {
    if (honoured.has(name) || value === undefined || value === null) continue
    const ok = neutral[name]
    if (ok === undefined) unsupported(name, `Unrecognized request argument supplied: ${name} (not part of the ${what} API this gateway serves).`)
    if (!ok(value)) unsupported(name, `${name} is not supported by this enclave: its answer could not honour it.`)
  }
}

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
  stream_options: z.strictObject({include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional()}).nullable().optional(),
}

const SAMPLING = new Set(Object.keys(sampling))

/** OpenAI chat parameters that change nothing at these values (metadata: the gateway stores nothing). */
const CHAT_NEUTRAL: Record<string, Neutral> = {
  user: any,
  safety_identifier: any,
  prompt_cache_key: any,
  metadata: any,
  service_tier: (v) => v === 'auto' || v === 'default',
  store: isFalse,
  parallel_tool_calls: any, // only says how tools may be called: there are none
  tools: isEmpty,
  functions: isEmpty,
  tool_choice: isNone,
  function_call: isNone,
  logprobs: isFalse,
  top_logprobs: isZero,
  logit_bias: isEmpty,
  presence_penalty: isZero,
  frequency_penalty: isZero,
  response_format: (v) => typeof v === 'object' && v !== null && (v as {type?: unknown}).type === 'text',
  modalities: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text',
  verbosity: any,
}

const chatMessage = z.object({
  role: z.string(),
  content: z.unknown().optional(),
  name: z.string().optional(),
  tool_calls: z.array(z.object({id: z.string().optional(), type: z.string().optional(), function: z.object({name: z.string(), arguments: z.string()}).optional()})).nullable().optional(),
  tool_call_id: z.string().optional(),
  function_call: z.object({name: z.string(), arguments: z.string()}).nullable().optional(),
  refusal: z.string().nullable().optional(),
})

const chatSchema = z.object({
  ...sampling,
  messages: z.array(chatMessage).min(1).max(1024),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
})

const CHAT_HONOURED = new Set([...SAMPLING, 'messages', 'max_completion_tokens'])

const completionSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).length(1)]),
})

const COMPLETION_HONOURED = new Set([...SAMPLING, 'prompt'])
const COMPLETION_NEUTRAL: Record<string, Neutral> = {
  user: any,
  echo: isFalse,
  suffix: (v) => v === '',
  logprobs: isZero,
  best_of: (v) => v === 1,
  logit_bias: isEmpty,
  presence_penalty: isZero,
  frequency_penalty: isZero,
}

export interface ParsedRequest {
  /** What is sealed to the enclave. */
  request: ChatRequest
  stream: boolean
  includeUsage: boolean
}

/** Limits the gateway knows of the enclave it fronts (from the project), checked before anything is sent. */
export interface RequestLimits {
  /** The runtime's cap on generated tokens (nle.yaml runtime.maxTokens); a larger max_tokens is refused, not cut. */
  maxTokens?: number
}

type Sampling = {[K in keyof typeof sampling]?: z.infer<(typeof sampling)[K]>}

function common(r: Sampling, limits: RequestLimits): Omit<ChatRequest, 'messages'> {
  if (r.n !== undefined && r.n !== null && r.n !== 1) unsupported('n', 'Only n = 1 is supported.')
  const out: Omit<ChatRequest, 'messages'> = {}
  if (r.model != null) out.model = r.model
  if (r.max_tokens != null) out.max_tokens = checkMaxTokens('max_tokens', r.max_tokens, limits)
  if (r.temperature != null) out.temperature = r.temperature
  if (r.top_p != null) out.top_p = r.top_p
  if (r.top_k != null) out.top_k = r.top_k
  if (r.stop != null) out.stop = r.stop
  if (r.seed != null) out.seed = r.seed
  return out
}

export function checkMaxTokens(param: string, value: number, limits: RequestLimits): number {
  if (limits.maxTokens !== undefined && value > limits.maxTokens) {
    bad(`${param} is too large: this enclave generates at most ${limits.maxTokens} tokens per answer.`, param)
  }
  return value
}

const ROLES: Record<string, 'system' | 'user' | 'assistant'> = {system: 'system', developer: 'system', user: 'user', assistant: 'assistant'}

/** A message's content as text: a string, or text parts only (an image or audio part is refused by name). */
function contentText(content: unknown, at: string, partTypes: ReadonlySet<string>): string {
  if (content === undefined || content === null) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) bad(`Invalid request at ${at}: content must be a string or a list of parts.`, at)
  let text = ''
  content.forEach((part: unknown, j) => {
    const p = part as {type?: unknown; text?: unknown} | null
    const where = `${at}.[${j}]`
    if (typeof p !== 'object' || p === null || typeof p.type !== 'string') bad(`Invalid request at ${where}: a content part needs a type.`, `${where}.type`)
    if (!partTypes.has(p.type)) unsupported(`${where}.type`, `Content parts of type ${p.type} are not supported by this enclave: only text.`)
    if (typeof p.text !== 'string') bad(`Invalid request at ${where}.text: text must be a string.`, `${where}.text`)
    text += p.text
  })
  return text
}

const CHAT_TEXT_PARTS = new Set(['text'])

/**
 * A tool call the assistant made earlier in the conversation, as plain text. With no tools on
 * offer a conversation can still carry them (an agent's history): they are rendered as text the
 * model reads, since its chat template has no tool syntax.
 */
function renderToolCalls(calls: readonly {function?: {name: string; arguments: string} | undefined}[]): string {
  return calls.map((c) => (c.function ? `[called ${c.function.name}(${c.function.arguments})]` : '[called a tool]')).join('\n')
}

/** POST /v1/chat/completions. */
export function parseChatBody(body: Buffer, limits: RequestLimits = {}): ParsedRequest {
  const json = parseJson(body)
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('The request body must be a JSON object.')
  refuseUnhonoured(json as Record<string, unknown>, CHAT_HONOURED, CHAT_NEUTRAL, 'chat completions')
  const r = check(chatSchema, json, 'chat completion')
  const messages = r.messages.map((m, i) => {
    const at = `messages.[${i}]`
    if (m.role === 'tool' || m.role === 'function') {
      // A tool's result, from an earlier turn: the model reads it as a user message naming the call.
      const text = contentText(m.content, `${at}.content`, CHAT_TEXT_PARTS)
      const label = m.role === 'function' ? m.name : m.tool_call_id
      return {role: 'user' as const, content: `[result of tool call${label ? ` ${label}` : ''}]\n${text}`}
    }
    const role = ROLES[m.role]
    if (!role) bad(`Invalid chat completion request at ${at}.role: only system, developer, user, assistant and tool are supported.`, `${at}.role`)
    let text = contentText(m.content, `${at}.content`, role === 'assistant' ? new Set(['text', 'refusal']) : CHAT_TEXT_PARTS)
    if (role === 'assistant') {
      const calls = [...(m.tool_calls ?? []), ...(m.function_call ? [{function: m.function_call}] : [])]
      if (calls.length > 0) text = text ? `${text}\n${renderToolCalls(calls)}` : renderToolCalls(calls)
    } else if (m.tool_calls?.length || m.function_call) {
      bad(`Invalid chat completion request at ${at}.tool_calls: only assistant messages carry tool calls.`, `${at}.tool_calls`)
    }
    return {role, content: text}
  })
  const request: ChatRequest = {...common(r, limits), messages}
  if (r.max_completion_tokens != null) request.max_completion_tokens = checkMaxTokens('max_completion_tokens', r.max_completion_tokens, limits)
  return {request, stream: r.stream === true, includeUsage: r.stream_options?.include_usage === true}
}

/** POST /v1/completions: the prompt becomes one user message. */
export function parseCompletionBody(body: Buffer, limits: RequestLimits = {}): ParsedRequest {
  const json = parseJson(body)
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('The request body must be a JSON object.')
  refuseUnhonoured(json as Record<string, unknown>, COMPLETION_HONOURED, COMPLETION_NEUTRAL, 'completions')
  const r = check(completionSchema, json, 'completion')
  const prompt = typeof r.prompt === 'string' ? r.prompt : r.prompt[0]!
  return {request: {...common(r, limits), messages: [{role: 'user', content: prompt}]}, stream: r.stream === true, includeUsage: r.stream_options?.include_usage === true}
}

// ---- answers ----

/** What the gateway stamps on every answer: its one model id, and the attested image's fingerprint. */
export interface AnswerStamp {
  model: string
  /** `nle-` and the start of the verified PCR0: answers from another image carry another one. */
  systemFingerprint: string
}

export interface OpenAiChatCompletion extends Omit<ChatCompletion, 'choices'> {
  system_fingerprint: string
  choices: (ChatCompletion['choices'][number] & {logprobs: null})[]
}

export function chatCompletion(c: ChatCompletion, stamp: AnswerStamp): OpenAiChatCompletion {
  return {...c, model: stamp.model, system_fingerprint: stamp.systemFingerprint, choices: c.choices.map((ch) => ({...ch, message: {...ch.message, refusal: null}, logprobs: null}))}
}

/**
 * Stream chunks as OpenAI sends them: with include_usage, every chunk has `usage: null` but a last
 * one with no choices that carries the usage.
 */
export function chatChunks(c: ChatCompletionChunk, includeUsage: boolean, stamp: AnswerStamp): object[] {
  const {usage, ...rest} = c
  const base = {...rest, model: stamp.model, system_fingerprint: stamp.systemFingerprint}
  const out: object[] = [{...base, choices: c.choices.map((ch) => ({...ch, logprobs: null})), ...(includeUsage ? {usage: null} : {})}]
  if (includeUsage && usage) out.push({...base, choices: [], usage})
  return out
}

export interface TextCompletion {
  id: string
  object: 'text_completion'
  created: number
  model: string
  system_fingerprint: string
  choices: {text: string; index: 0; logprobs: null; finish_reason: string | null}[]
  usage?: ChatCompletion['usage'] | null
}

const cmplId = (chatId: string): string => `cmpl-${chatId.replace(/^chatcmpl-/, '')}`

export function textCompletion(c: ChatCompletion, stamp: AnswerStamp): TextCompletion {
  const ch = c.choices[0]
  return {
    id: cmplId(c.id),
    object: 'text_completion',
    created: c.created,
    model: stamp.model,
    system_fingerprint: stamp.systemFingerprint,
    choices: [{text: ch?.message.content ?? '', index: 0, logprobs: null, finish_reason: ch?.finish_reason ?? 'stop'}],
    usage: c.usage,
  }
}

/** A chat chunk as text-completion chunks (none for the role-only opening chunk). */
export function textChunks(c: ChatCompletionChunk, includeUsage: boolean, stamp: AnswerStamp): object[] {
  const ch = c.choices[0]
  const text = ch?.delta.content ?? ''
  const finish = ch?.finish_reason ?? null
  const out: object[] = []
  const base = {id: cmplId(c.id), object: 'text_completion' as const, created: c.created, model: stamp.model, system_fingerprint: stamp.systemFingerprint}
  if (text.length > 0 || finish !== null) out.push({...base, choices: [{text, index: 0, logprobs: null, finish_reason: finish}], ...(includeUsage ? {usage: null} : {})})
  if (includeUsage && c.usage) out.push({...base, choices: [], usage: c.usage})
  return out
}

/** A chunk that carries nothing a client shows: the role-only opening, an empty delta. */
export function isEmptyChunk(c: ChatCompletionChunk): boolean {
  return c.usage === undefined && c.choices.every((ch) => !ch.delta.content && ch.finish_reason === null)
}
