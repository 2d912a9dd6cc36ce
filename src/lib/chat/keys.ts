/**
 * Terminal input as a stream of keys, whatever the chunking. A terminal delivers what it has in
 * one read: a paste, fast typing over SSH or `tmux send-keys "text" Enter` arrive as one chunk
 * ("text\r"), several backspaces as "\x7f\x7f\x7f", an escape sequence possibly split over two
 * reads. `KeyStream.push(chunk)` turns each chunk into the keys it holds, in order, and keeps an
 * unfinished escape sequence for the next chunk.
 *
 * Bracketed paste (the TUI turns it on with ENABLE_BRACKETED_PASTE): the terminal wraps a paste in
 * ESC[200~ … ESC[201~, and inside it a line break (CR, LF or CRLF) is a newline of the question,
 * never a submit; control characters of the paste are dropped. Outside a paste, CR (Enter) submits
 * (CRLF counts once), Alt+Enter inserts a newline.
 */

export type Key =
  | {kind: 'text'; text: string}
  /** Enter: send the question. */
  | {kind: 'submit'}
  /** A newline inside the question (a pasted line break, or Alt+Enter). */
  | {kind: 'newline'}
  | {kind: 'backspace'}
  | {kind: 'up'}
  | {kind: 'down'}
  | {kind: 'escape'}
  /** Ctrl-C. */
  | {kind: 'interrupt'}
  /** Ctrl-D. */
  | {kind: 'eof'}

export const ENABLE_BRACKETED_PASTE = '\u001B[?2004h'
export const DISABLE_BRACKETED_PASTE = '\u001B[?2004l'

const ESC = '\u001B'
const PASTE_START = '[200~'
const PASTE_END = '[201~'
/** An escape sequence longer than this is not one: it is dropped rather than buffered forever. */
const MAX_SEQUENCE = 32

export class KeyStream {
  private pending = ''
  private pasting = false
  /** The last character seen was a CR: an LF right after it is the same line break. */
  private afterCr = false

  /** Whether the stream is inside a bracketed paste. */
  get inPaste(): boolean {
    return this.pasting
  }

  /** Whether an unfinished escape sequence waits for more input (call `flush()` if none comes). */
  get hasPending(): boolean {
    return this.pending !== ''
  }

  /**
   * Nothing more came after an unfinished sequence: a lone ESC was the Escape key (outside a
   * paste); anything longer was a broken sequence and is dropped.
   */
  flush(): Key[] {
    const pending = this.pending
    this.pending = ''
    return pending === ESC && !this.pasting ? [{kind: 'escape'}] : []
  }

  push(chunk: string): Key[] {
    const keys: Key[] = []
    const input = this.pending + chunk
    this.pending = ''
    let text = ''
    const flush = (): void => {
      if (text) keys.push({kind: 'text', text})
      text = ''
    }
    const emit = (key: Key): void => {
      flush()
      keys.push(key)
    }
    const chars = [...input]
    for (let i = 0; i < chars.length; i++) {
      const c = chars[i]!
      const wasCr = this.afterCr
      this.afterCr = c === '\r'
      if (c === ESC) {
        const rest = chars.slice(i + 1)
        const seq = escapeSequence(rest)
        if (seq === 'pending') {
          // An unfinished sequence (a lone ESC included) waits for the next read: the rest of
          // it may be on its way. `flush()` settles it when nothing follows.
          flush()
          this.pending = ESC + rest.join('')
          break
        }
        i += seq.length
        const body = seq.join('')
        if (body === PASTE_START) {
          flush()
          this.pasting = true
        } else if (body === PASTE_END) {
          flush()
          this.pasting = false
        } else if (!this.pasting) {
          const key = escapeKey(body)
          if (key) emit(key)
        }
        continue
      }
      if (c === '\r' || c === '\n') {
        if (c === '\n' && wasCr) continue // CRLF: one line break
        if (this.pasting) text += '\n'
        else emit({kind: 'submit'})
        continue
      }
      if (this.pasting) {
        if (c === '\t' || c >= ' ') text += c === '\u007F' ? '' : c
        continue
      }
      if (c === '\u007F' || c === '\b') emit({kind: 'backspace'})
      else if (c === '\u0003') emit({kind: 'interrupt'})
      else if (c === '\u0004') emit({kind: 'eof'})
      else if (c >= ' ') text += c
      // other control characters (tab included) are not part of a question typed at a prompt
    }
    flush()
    return keys
  }
}

/**
 * The characters after an ESC that belong to its sequence: CSI (`[` params final), SS3 (`O` X),
 * or one character (Alt+key); 'pending' when the input ends before the sequence does.
 */
function escapeSequence(rest: string[]): string[] | 'pending' {
  const first = rest[0]
  if (first === undefined) return 'pending'
  if (first === ESC) return [] // ESC ESC: the first one is the Escape key on its own
  if (first === '[') {
    for (let j = 1; j < rest.length && j < MAX_SEQUENCE; j++) {
      const code = rest[j]!.codePointAt(0)!
      if (code >= 0x40 && code <= 0x7e && !(j === 1 && rest[j] === '[')) return rest.slice(0, j + 1)
      if (code < 0x20 || code > 0x7e) return rest.slice(0, j) // broken sequence: stop before it
    }
    return rest.length >= MAX_SEQUENCE ? rest.slice(0, MAX_SEQUENCE) : 'pending'
  }
  if (first === 'O') return rest.length < 2 ? 'pending' : rest.slice(0, 2)
  return [first]
}

function escapeKey(body: string): Key | undefined {
  if (body === '') return {kind: 'escape'}
  if (body === '[A' || body === 'OA') return {kind: 'up'}
  if (body === '[B' || body === 'OB') return {kind: 'down'}
  if (body === '\r' || body === '\n') return {kind: 'newline'} // Alt+Enter
  if (body === '\u007F' || body === '\b') return {kind: 'backspace'} // Alt+Backspace: as one
  return undefined
}
