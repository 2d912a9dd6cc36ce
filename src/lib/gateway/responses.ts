/**
 * OpenAI's Responses API on the gateway (`POST /v1/responses`), text in and text out: the request
 * becomes the enclave's chat request; the answer becomes a `response` object, or — streamed — the
 * Responses event sequence (response.created, response.in_progress, response.output_item.added,
 * response.content_part.added, response.output_text.delta…, response.output_text.done,
 * response.content_part.done, response.output_item.done, then response.completed or
 * response.incomplete; `error` and response.failed when the answer fails midway). Nothing is stored:
 * `store: true` and `previous_response_id` are refused, as is every parameter that is not honoured.
 */
import {z} from 'zod'

import type {ChatRequest} from '../client/index.js'
import type {ChatCompletion, ChatCompletionChunk} from '../protocol/chat.js'
import type {HttpFailure} from './errors.js'
import {type AnswerStamp, type ParsedRequest, type RequestLimits, check, checkMaxTokens, parseJson, refuseUnhonoured, unsupported} from './openai.js'
import {sseEvent} from '../protocol/sse.js'

const sampling = {
  model: z.string().max(256).optional(),
  instructions: z.string().nullable().optional(),
  max_output_tokens: z.number().int().min(1).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.strictObject({include_obfuscation: z.boolean().optional()}).nullable().optional(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  user: z.string().optional(),
}

const item = z.object({type: z.string().optional(), role: z.string().optional(), content: z.unknown().optional(), name: z.string().optional(), arguments: z.string().optional(), call_id: z.string().optional(), output: z.unknown().optional()})

const schema = z.object({...sampling, input: z.union([z.string(), z.array(item).min(1).max(1024)])})

const HONOURED = new Set([...Object.keys(sampling), 'input'])
const NEUTRAL: Record<string, (v: unknown) => boolean> = {
  safety_identifier: () => true,
  prompt_cache_key: () => true,
  service_tier: (v) => v === 'auto' || v === 'default',
  store: (v) => v === false,
  background: (v) => v === false,
  parallel_tool_calls: () => true,
  tools: (v) => Array.isArray(v) && v.length === 0,
  tool_choice: (v) => v === 'none' || v === 'auto',
  include: (v) => Array.isArray(v) && v.length === 0,
  truncation: (v) => v === 'disabled',
  top_logprobs: (v) => v === 0,
  text: (v) => {
    const t = v as {format?: {type?: unknown} | null; verbosity?: unknown} | null
    return typeof t === 'object' && t !== null && Object.keys(t).every((k) => k === 'format' || k === 'verbosity') && (t.format == null || t.format.type === 'text') && (t.verbosity == null || t.verbosity === 'medium')
  },
}

const TEXT_PARTS = new Set(['input_text', 'output_text', 'text'])

function itemText(content: unknown, at: string): string {
  if (content === undefined || content === null) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) unsupported(at, 'content must be a string or a list of input_text parts.')
  return content
    .map((part: unknown, j) => {
      const p = part as {type?: unknown; text?: unknown} | null
      if (typeof p !== 'object' || p === null || typeof p.type !== 'string' || !TEXT_PARTS.has(p.type) || typeof p.text !== 'string') {
        unsupported(`${at}.[${j}].type`, `Content parts of type ${String(p?.type)} are not supported by this enclave: only input_text.`)
      }
      return p.text
    })
    .join('')
}

const ROLES: Record<string, 'system' | 'user' | 'assistant'> = {system: 'system', developer: 'system', user: 'user', assistant: 'assistant'}

export interface ParsedResponsesRequest extends ParsedRequest {
  /** Echoed in the response object. */
  echo: {instructions: string | null; max_output_tokens: number | null; temperature: number | null; top_p: number | null; metadata: Record<string, string>; user: string | null}
}

/** POST /v1/responses. */
export function parseResponsesBody(body: Buffer, limits: RequestLimits = {}): ParsedResponsesRequest {
  const json = parseJson(body)
  if (typeof json !== 'object' || json === null || Array.isArray(json)) unsupported('input', 'The request body must be a JSON object.')
  const raw = json as Record<string, unknown>
  if (raw.previous_response_id != null) unsupported('previous_response_id', 'This gateway stores no responses: send the whole conversation in input.')
  if (raw.conversation != null) unsupported('conversation', 'This gateway stores no conversations: send the whole conversation in input.')
  refuseUnhonoured(raw, HONOURED, NEUTRAL, 'Responses')
  const r = check(schema, json, 'responses')
  const messages: ChatRequest['messages'] = []
  if (r.instructions) messages.push({role: 'system', content: r.instructions})
  if (typeof r.input === 'string') messages.push({role: 'user', content: r.input})
  else {
    r.input.forEach((it, i) => {
      const at = `input.[${i}]`
      const type = it.type ?? 'message'
      if (type === 'function_call') {
        // An agent's history: the call as text the model reads (no tools are on offer).
        messages.push({role: 'assistant', content: `[called ${it.name ?? 'a tool'}(${it.arguments ?? ''})]`})
        return
      }
      if (type === 'function_call_output') {
        messages.push({role: 'user', content: `[result of tool call${it.call_id ? ` ${it.call_id}` : ''}]\n${typeof it.output === 'string' ? it.output : itemText(it.output, `${at}.output`)}`})
        return
      }
      if (type !== 'message') unsupported(`${at}.type`, `Input items of type ${type} are not supported by this enclave: only messages.`)
      const role = ROLES[it.role ?? '']
      if (!role) unsupported(`${at}.role`, 'Only user, system, developer and assistant messages are supported.')
      messages.push({role, content: itemText(it.content, `${at}.content`)})
    })
  }
  const request: ChatRequest = {messages}
  if (r.model !== undefined) request.model = r.model
  if (r.max_output_tokens != null) request.max_tokens = checkMaxTokens('max_output_tokens', r.max_output_tokens, limits)
  if (r.temperature != null) request.temperature = r.temperature
  if (r.top_p != null) request.top_p = r.top_p
  return {
    request,
    stream: r.stream === true,
    includeUsage: true,
    echo: {instructions: r.instructions ?? null, max_output_tokens: r.max_output_tokens ?? null, temperature: r.temperature ?? null, top_p: r.top_p ?? null, metadata: r.metadata ?? {}, user: r.user ?? null},
  }
}

type Usage = ChatCompletion['usage']
type Status = 'in_progress' | 'completed' | 'incomplete' | 'failed'

const suffix = (chatId: string): string => chatId.replace(/^chatcmpl-/, '')

function responseUsage(u: Usage | undefined): object | null {
  if (!u) return null
  return {input_tokens: u.prompt_tokens, input_tokens_details: {cached_tokens: 0}, output_tokens: u.completion_tokens, output_tokens_details: {reasoning_tokens: 0}, total_tokens: u.total_tokens}
}

/** One answer as the Responses API shows it, whole or while it streams. */
class ResponseShape {
  text = ''
  status: Status = 'in_progress'
  usage: Usage | undefined
  error: {code: string; message: string} | null = null
  constructor(
    readonly id: string,
    readonly createdAt: number,
    private readonly parsed: ParsedResponsesRequest,
    private readonly stamp: AnswerStamp,
  ) {}

  get messageId(): string {
    return `msg_${this.id.replace(/^resp_/, '')}`
  }

  part(): object {
    return {type: 'output_text', text: this.text, annotations: [], logprobs: []}
  }

  item(): object {
    const status = this.status === 'in_progress' ? 'in_progress' : this.status === 'completed' ? 'completed' : 'incomplete'
    return {type: 'message', id: this.messageId, status, role: 'assistant', content: this.status === 'in_progress' && this.text === '' ? [] : [this.part()]}
  }

  response(): object {
    const e = this.parsed.echo
    return {
      id: this.id,
      object: 'response',
      created_at: this.createdAt,
      status: this.status,
      error: this.error,
      incomplete_details: this.status === 'incomplete' ? {reason: 'max_output_tokens'} : null,
      instructions: e.instructions,
      max_output_tokens: e.max_output_tokens,
      model: this.stamp.model,
      output: this.status === 'in_progress' || this.status === 'failed' ? [] : [this.item()],
      parallel_tool_calls: false,
      previous_response_id: null,
      reasoning: {effort: null, summary: null},
      store: false,
      temperature: e.temperature,
      text: {format: {type: 'text'}},
      tool_choice: 'none',
      tools: [],
      top_p: e.top_p,
      truncation: 'disabled',
      usage: responseUsage(this.usage),
      user: e.user,
      metadata: e.metadata,
    }
  }
}

/** The whole answer as a `response` object. */
export function wholeResponse(c: ChatCompletion, parsed: ParsedResponsesRequest, stamp: AnswerStamp): object {
  const shape = new ResponseShape(`resp_${suffix(c.id)}`, c.created, parsed, stamp)
  const choice = c.choices[0]
  shape.text = choice?.message.content ?? ''
  shape.status = choice?.finish_reason === 'length' ? 'incomplete' : 'completed'
  shape.usage = c.usage
  return shape.response()
}

/** The Responses event stream of one answer, as SSE frames (`event:` and `data:` lines). */
export class ResponsesEventStream {
  private seq = 0
  private shape: ResponseShape | null = null
  constructor(
    private readonly parsed: ParsedResponsesRequest,
    private readonly stamp: AnswerStamp,
  ) {}

  private frame(type: string, fields: object): string {
    return sseEvent(JSON.stringify({type, sequence_number: this.seq++, ...fields}), type)
  }

  private opened(c: ChatCompletionChunk): {shape: ResponseShape; frames: string[]} {
    if (this.shape) return {shape: this.shape, frames: []}
    const shape = (this.shape = new ResponseShape(`resp_${suffix(c.id)}`, c.created, this.parsed, this.stamp))
    const frames = [
      this.frame('response.created', {response: shape.response()}),
      this.frame('response.in_progress', {response: shape.response()}),
      this.frame('response.output_item.added', {output_index: 0, item: shape.item()}),
      this.frame('response.content_part.added', {item_id: shape.messageId, output_index: 0, content_index: 0, part: shape.part()}),
    ]
    return {shape, frames}
  }

  /** The frames for one chunk of the chat stream (the opening events come with the first). */
  chunk(c: ChatCompletionChunk): string[] {
    const {shape, frames} = this.opened(c)
    const choice = c.choices[0]
    const delta = choice?.delta.content ?? ''
    if (delta.length > 0) {
      shape.text += delta
      frames.push(this.frame('response.output_text.delta', {item_id: shape.messageId, output_index: 0, content_index: 0, delta, logprobs: []}))
    }
    if (c.usage) shape.usage = c.usage
    if (choice?.finish_reason) {
      shape.status = choice.finish_reason === 'length' ? 'incomplete' : 'completed'
      frames.push(
        this.frame('response.output_text.done', {item_id: shape.messageId, output_index: 0, content_index: 0, text: shape.text, logprobs: []}),
        this.frame('response.content_part.done', {item_id: shape.messageId, output_index: 0, content_index: 0, part: shape.part()}),
        this.frame('response.output_item.done', {output_index: 0, item: shape.item()}),
      )
    }
    return frames
  }

  /** The closing event: response.completed or response.incomplete. */
  end(): string[] {
    const shape = this.shape
    if (!shape) return []
    if (shape.status === 'in_progress') shape.status = 'completed'
    return [this.frame(shape.status === 'incomplete' ? 'response.incomplete' : 'response.completed', {response: shape.response()})]
  }

  /** A failure once events went out: an `error` event, then response.failed; never a completed answer. */
  error(f: HttpFailure): string[] {
    const frames = [this.frame('error', {code: f.body.error.code, message: f.body.error.message, param: f.body.error.param})]
    if (this.shape) {
      this.shape.status = 'failed'
      this.shape.error = {code: f.body.error.code, message: f.body.error.message}
      frames.push(this.frame('response.failed', {response: this.shape.response()}))
    }
    return frames
  }
}
