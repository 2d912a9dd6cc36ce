/**
 * The chat session's state machine, kept free of any UI so it is tested alone. The Ink TUI
 * (src/ui/) renders it; `nle chat --once` uses only the backend.
 */
import type {AttestationSummary, ChatMessage, ChatMode} from './types.js'

export type AttestState =
  | {status: 'pending'}
  | {status: 'verified'; summary: AttestationSummary; at: Date}
  | {status: 'failed'; code: string; message: string}
  /** A request found the enclave gone (unreachable, unavailable): not verified until /attest succeeds. */
  | {status: 'lost'; code: string; message: string}

export interface Turn {
  id: number
  question: string
  answer: string
  /** Set when the turn ended in an error (the answer may be partial). */
  error?: string
}

export type Notice = {id: number; kind: 'info' | 'error'; text: string}

export interface ChatState {
  mode: ChatMode
  attest: AttestState
  /** Finished turns and notices, oldest first, in the order they happened. */
  log: ({type: 'turn'} & Turn | {type: 'notice'} & Notice)[]
  /** The turn being answered, if any. */
  current?: Turn
  nextId: number
  /** How many of the oldest successful turns are left out of the conversation sent (to fit the context). */
  dropped: number
}

export type ChatEvent =
  | {type: 'attest-start'}
  | {type: 'attest-ok'; summary: AttestationSummary; at: Date}
  | {type: 'attest-failed'; code: string; message: string}
  | {type: 'ask'; question: string}
  | {type: 'delta'; text: string}
  | {type: 'done'}
  | {type: 'failed'; message: string}
  | {type: 'notice'; kind: Notice['kind']; text: string}
  | {type: 'mode'; mode: ChatMode}
  | {type: 'clear'}
  /** A request found the enclave gone. */
  | {type: 'lost'; code: string; message: string}
  /** The oldest `turns` turns still in the conversation leave it (they stay on screen). */
  | {type: 'drop'; turns: number}

export function initialState(mode: ChatMode): ChatState {
  return {mode, attest: {status: 'pending'}, log: [], nextId: 1, dropped: 0}
}

export function reduce(state: ChatState, event: ChatEvent): ChatState {
  switch (event.type) {
    case 'attest-start':
      return {...state, attest: {status: 'pending'}}
    case 'attest-ok':
      return {...state, attest: {status: 'verified', summary: event.summary, at: event.at}}
    case 'attest-failed':
      return {...state, attest: {status: 'failed', code: event.code, message: event.message}}
    case 'ask':
      return {...state, current: {id: state.nextId, question: event.question, answer: ''}, nextId: state.nextId + 1}
    case 'delta':
      return state.current ? {...state, current: {...state.current, answer: state.current.answer + event.text}} : state
    case 'done':
    case 'failed': {
      if (!state.current) return state
      const turn: Turn = event.type === 'failed' ? {...state.current, error: event.message} : state.current
      return {...state, current: undefined, log: [...state.log, {type: 'turn', ...turn}]}
    }
    case 'notice':
      return {...state, log: [...state.log, {type: 'notice', id: state.nextId, kind: event.kind, text: event.text}], nextId: state.nextId + 1}
    case 'mode':
      return {...state, mode: event.mode, attest: {status: 'pending'}}
    case 'clear':
      return {...state, log: [], current: undefined, dropped: 0}
    case 'lost':
      return {...state, attest: {status: 'lost', code: event.code, message: event.message}}
    case 'drop':
      return {...state, dropped: state.dropped + event.turns}
  }
}

/**
 * The conversation sent to the model: every finished, successful turn (but the `dropped` oldest
 * ones), then the new question.
 */
export function conversation(state: ChatState, question: string): ChatMessage[] {
  const messages: ChatMessage[] = []
  let skip = state.dropped
  for (const entry of state.log) {
    if (entry.type !== 'turn' || entry.error) continue
    if (skip > 0) {
      skip--
      continue
    }
    messages.push({role: 'user', content: entry.question}, {role: 'assistant', content: entry.answer})
  }
  messages.push({role: 'user', content: question})
  return messages
}

/**
 * Errors that mean the enclave is gone (not reachable, no enclave behind the proxy, the stream cut):
 * after one, the chat treats the attestation as no longer standing and attests again before the
 * next question is sent.
 */
const LOST_CODES: ReadonlySet<string> = new Set(['CLIENT_UNREACHABLE', 'CLIENT_ENCLAVE_UNAVAILABLE', 'CLIENT_STREAM_INTERRUPTED'])

export function isEnclaveLost(code: string | undefined): boolean {
  return code !== undefined && LOST_CODES.has(code)
}

export type SlashCommand =
  | {name: 'attest'}
  | {name: 'clear'}
  | {name: 'quit'}
  | {name: 'mode'; mode?: ChatMode}
  /** `/mode` with a mode that does not exist. */
  | {name: 'bad-mode'; mode: string}
  | {name: 'help'}
  | {name: 'unknown'; input: string}

export const SLASH_HELP = '/attest · /mode attested|kms · /clear · /quit · /help'

/** What /help prints: every command and key, one a line. */
export const HELP_TEXT = [
  'Commands:',
  '  /attest          fetch and verify a fresh attestation of the enclave',
  '  /mode            show the mode; /mode attested or /mode kms switches (and attests again)',
  '  /clear           forget the conversation (the model gets no earlier turns)',
  '  /quit            leave (also /exit, Ctrl-C or Ctrl-D at an empty prompt)',
  'Keys:',
  '  Enter            send the question',
  '  Alt+Enter, \\ then Enter   new line in the question (a pasted text keeps its lines)',
  '  ↑ ↓              walk the history',
  '  Esc, Ctrl-C      cancel the answer being streamed',
].join('\n')

/** Parses a line starting with "/"; returns undefined for ordinary text. */
export function parseSlash(line: string): SlashCommand | undefined {
  const trimmed = line.trim()
  if (!trimmed.startsWith('/')) return undefined
  const [cmd, arg] = trimmed.slice(1).split(/\s+/, 2)
  switch (cmd) {
    case 'attest':
      return {name: 'attest'}
    case 'clear':
      return {name: 'clear'}
    case 'quit':
    case 'exit':
    case 'q':
      return {name: 'quit'}
    case 'help':
    case '?':
      return {name: 'help'}
    case 'mode':
      return arg === undefined ? {name: 'mode'} : arg === 'attested' || arg === 'kms' ? {name: 'mode', mode: arg} : {name: 'bad-mode', mode: arg}
    default:
      return {name: 'unknown', input: trimmed}
  }
}

/** Input history with up/down navigation; the draft being typed is kept while browsing. */
export class History {
  private readonly entries: string[] = []
  private index = 0
  private draft = ''

  constructor(private readonly limit = 200) {}

  push(entry: string): void {
    if (entry.trim() && this.entries.at(-1) !== entry) this.entries.push(entry)
    if (this.entries.length > this.limit) this.entries.shift()
    this.index = this.entries.length
    this.draft = ''
  }

  /** Older entry (up arrow). `current` is what is in the input box now. */
  previous(current: string): string {
    if (this.index === this.entries.length) this.draft = current
    if (this.index > 0) this.index--
    return this.entries[this.index] ?? current
  }

  /** Newer entry (down arrow); past the newest, the draft comes back. */
  next(): string {
    if (this.index < this.entries.length) this.index++
    return this.index === this.entries.length ? this.draft : (this.entries[this.index] ?? '')
  }
}
