/**
 * The chat's input line as a pure state machine over keys (src/lib/chat/keys.ts), so that what a
 * chunk of terminal input does is tested without a terminal. The TUI feeds it every key and acts
 * on what it returns.
 *
 * Multi-line questions: a pasted text (bracketed paste) keeps its line breaks; Alt+Enter, or a
 * trailing `\` then Enter, starts a new line; Enter alone sends the whole question.
 */
import type {Key} from './keys.js'
import {History} from './state.js'

export type EditorAction =
  /** Enter with a non-blank question: send it (slash commands included). */
  | {kind: 'submit'; line: string}
  /** Esc or Ctrl-C while an answer streams: cancel it. */
  | {kind: 'cancel'}
  /** Ctrl-C (or Ctrl-D on an empty line) at the prompt: leave the chat. */
  | {kind: 'quit'}

/** The longest question the editor holds; keys beyond it are dropped (a paste of a whole file). */
export const MAX_INPUT_CHARS = 64 * 1024

export class LineEditor {
  private value = ''
  private readonly history: History

  constructor(history = new History()) {
    this.history = history
  }

  /** The question being typed. */
  get text(): string {
    return this.value
  }

  /**
   * Applies one key. `busy`: an answer is streaming; then only cancel keys act and everything
   * else is dropped (typing ahead would be sent to a conversation the user has not read yet).
   */
  apply(key: Key, busy: boolean): EditorAction | undefined {
    if (busy) return key.kind === 'escape' || key.kind === 'interrupt' ? {kind: 'cancel'} : undefined
    switch (key.kind) {
      case 'text':
        this.value = (this.value + key.text).slice(0, MAX_INPUT_CHARS)
        return undefined
      case 'newline':
        this.value = (this.value + '\n').slice(0, MAX_INPUT_CHARS)
        return undefined
      case 'backspace':
        this.value = [...this.value].slice(0, -1).join('')
        return undefined
      case 'submit': {
        // A trailing backslash continues the question on a new line.
        if (this.value.endsWith('\\')) {
          this.value = this.value.slice(0, -1) + '\n'
          return undefined
        }
        const line = this.value
        this.value = ''
        if (!line.trim()) return undefined
        this.history.push(line)
        return {kind: 'submit', line}
      }
      case 'up':
        if (!this.value.includes('\n')) this.value = this.history.previous(this.value)
        return undefined
      case 'down':
        if (!this.value.includes('\n')) this.value = this.history.next()
        return undefined
      case 'interrupt':
        return {kind: 'quit'}
      case 'eof':
        return this.value === '' ? {kind: 'quit'} : undefined
      case 'escape':
        return undefined
    }
  }
}
