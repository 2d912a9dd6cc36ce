/**
 * Keeping a chat conversation within the model's context window. When the enclave says the
 * conversation is too long (CLIENT_CONTEXT_TOO_LONG, with the context size and the prompt's token
 * count when it knows them), the chat drops its oldest turns — never the system prompt, never the
 * question being asked — and retries. Pure functions: the TUI does the retrying and the telling.
 */
import type {ChatMessage} from './types.js'

export interface ContextInfo {
  /** The model's context, in tokens. */
  context?: number
  /** How many tokens the refused prompt had. */
  promptTokens?: number
}

export type FitResult =
  | {ok: true; messages: ChatMessage[]; droppedTurns: number}
  /** Nothing is left to drop: the system prompt and the question alone are too long. */
  | {ok: false}

/** Share of the context the shortened conversation aims at, leaving room for the answer. */
const TARGET_SHARE = 0.75

/** The context numbers an NleError's details carry (CLIENT_CONTEXT_TOO_LONG), when they are sane. */
export function contextInfo(details: Record<string, unknown> | undefined): ContextInfo {
  const count = (v: unknown): number | undefined => (Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : undefined)
  const context = count(details?.context)
  const promptTokens = count(details?.promptTokens)
  return {...(context === undefined ? {} : {context}), ...(promptTokens === undefined ? {} : {promptTokens})}
}

interface Split {
  system: ChatMessage[]
  /** Earlier turns, oldest first: a user message and the answers that followed it. */
  turns: ChatMessage[][]
  question: ChatMessage
}

function split(messages: readonly ChatMessage[]): Split | undefined {
  const question = messages.at(-1)
  if (!question || question.role !== 'user') return undefined
  let i = 0
  const system: ChatMessage[] = []
  while (i < messages.length - 1 && messages[i]!.role === 'system') system.push(messages[i++]!)
  const turns: ChatMessage[][] = []
  for (; i < messages.length - 1; i++) {
    const m = messages[i]!
    if (m.role === 'user' || turns.length === 0) turns.push([m])
    else turns.at(-1)!.push(m)
  }
  return {system, turns, question}
}

const chars = (ms: readonly ChatMessage[]): number => ms.reduce((n, m) => n + m.content.length, 0)

/**
 * The conversation without its oldest turns, short enough to fit (estimated), or `{ok: false}`
 * when only the system prompt and the question are left. Drops at least one turn. With the
 * prompt's token count and the context size, it drops as many as it takes for the rest to be about
 * TARGET_SHARE of the context (tokens estimated in proportion to characters); without them, the
 * older half.
 */
export function fitToContext(messages: readonly ChatMessage[], info: ContextInfo): FitResult {
  const parts = split(messages)
  if (!parts || parts.turns.length === 0) return {ok: false}
  const {system, turns, question} = parts
  let drop: number
  if (info.context !== undefined && info.promptTokens !== undefined && info.promptTokens > 0) {
    const total = chars(messages)
    const budget = (total * info.context * TARGET_SHARE) / info.promptTokens
    let kept = total
    drop = 0
    while (drop < turns.length && (drop === 0 || kept > budget)) kept -= chars(turns[drop++]!)
  } else {
    drop = Math.ceil(turns.length / 2)
  }
  return {ok: true, droppedTurns: drop, messages: [...system, ...turns.slice(drop).flat(), question]}
}

/** What the transcript says after dropping turns. */
export function droppedNotice(droppedTurns: number, info: ContextInfo): string {
  const size = info.context === undefined ? "the model's context" : `the model's context of ${info.context} tokens`
  return `dropped ${droppedTurns} oldest turn${droppedTurns === 1 ? '' : 's'} to fit ${size}`
}

/** What the transcript says when the question alone does not fit. */
export function tooLongNotice(info: ContextInfo): string {
  const size = info.context === undefined ? "the model's context" : `the model's context of ${info.context} tokens`
  const tokens = info.promptTokens === undefined ? '' : ` (${info.promptTokens} tokens)`
  return `This question alone${tokens} is too long for ${size}, even with no earlier turns. Shorten it, or split it into several questions.`
}
