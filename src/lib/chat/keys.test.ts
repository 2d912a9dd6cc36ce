import {describe, expect, it} from 'vitest'

import {DISABLE_BRACKETED_PASTE, ENABLE_BRACKETED_PASTE, type Key, KeyStream} from './keys.js'

/** The keys of `input` fed as the given chunks, with a flush at the end (nothing more came). */
function keysOf(chunks: string[]): Key[] {
  const s = new KeyStream()
  const keys = chunks.flatMap((c) => s.push(c))
  return merge([...keys, ...s.flush()])
}

/** Adjacent text keys joined: how text is split over keys depends on the chunking, not what it says. */
function merge(keys: Key[]): Key[] {
  const out: Key[] = []
  for (const k of keys) {
    const last = out.at(-1)
    if (k.kind === 'text' && last?.kind === 'text') out[out.length - 1] = {kind: 'text', text: last.text + k.text}
    else out.push(k)
  }
  return out
}

/** Every way to cut `input` in two, plus one chunk per character. */
function everySplit(input: string): string[][] {
  const chars = [...input]
  const splits: string[][] = [[input], chars]
  for (let i = 1; i < chars.length; i++) splits.push([chars.slice(0, i).join(''), chars.slice(i).join('')])
  return splits
}

const PASTE = (text: string): string => `\u001B[200~${text}\u001B[201~`

describe('KeyStream', () => {
  it('Enter inside a chunk is a submit, with the text before it', () => {
    expect(keysOf(['hello world\r'])).toEqual([{kind: 'text', text: 'hello world'}, {kind: 'submit'}])
    expect(keysOf(['one\rtwo\r'])).toEqual([{kind: 'text', text: 'one'}, {kind: 'submit'}, {kind: 'text', text: 'two'}, {kind: 'submit'}])
  })

  it('CRLF is one Enter, also when split between two reads; LF alone is Enter too', () => {
    expect(keysOf(['a\r\n'])).toEqual([{kind: 'text', text: 'a'}, {kind: 'submit'}])
    expect(keysOf(['a\r', '\nb'])).toEqual([{kind: 'text', text: 'a'}, {kind: 'submit'}, {kind: 'text', text: 'b'}])
    expect(keysOf(['a\n'])).toEqual([{kind: 'text', text: 'a'}, {kind: 'submit'}])
  })

  it('several backspaces in one read are as many backspaces (DEL and ^H), never text', () => {
    expect(keysOf(['abc\u007F\u007F\bx'])).toEqual([{kind: 'text', text: 'abc'}, {kind: 'backspace'}, {kind: 'backspace'}, {kind: 'backspace'}, {kind: 'text', text: 'x'}])
  })

  it('a bracketed paste is text with real newlines, whatever its line breaks; no submit inside it', () => {
    expect(keysOf([PASTE('first line\r\nsecond line\rthird\nfourth') + '\r'])).toEqual([
      {kind: 'text', text: 'first line\nsecond line\nthird\nfourth'},
      {kind: 'submit'},
    ])
  })

  it('drops control characters and escape sequences inside a paste, keeps tabs', () => {
    expect(keysOf([PASTE('a\tb\u007Fc\u0003d\u001B[31me')])).toEqual([{kind: 'text', text: 'a\tbcde'}])
  })

  it('gives the same keys whatever the chunking, even inside escape sequences and paste markers', () => {
    const input = `typed\u007F\u001B[A${PASTE('p1\r\np2')}\u001B[B end\r\u001BOA`
    const expected: Key[] = [
      {kind: 'text', text: 'typed'},
      {kind: 'backspace'},
      {kind: 'up'},
      {kind: 'text', text: 'p1\np2'},
      {kind: 'down'},
      {kind: 'text', text: ' end'},
      {kind: 'submit'},
      {kind: 'up'},
    ]
    for (const chunks of everySplit(input)) expect(keysOf(chunks), JSON.stringify(chunks)).toEqual(expected)
  })

  it('splits of a paste marker never leak "[200~" or "[201~" into the text', () => {
    const input = PASTE('x\ny')
    for (const chunks of everySplit(input)) {
      const keys = keysOf(chunks)
      expect(keys, JSON.stringify(chunks)).toEqual([{kind: 'text', text: 'x\ny'}])
    }
  })

  it('a lone ESC waits for the next read; flushed with nothing after it, it is the Escape key', () => {
    const s = new KeyStream()
    expect(s.push('\u001B')).toEqual([])
    expect(s.hasPending).toBe(true)
    expect(s.flush()).toEqual([{kind: 'escape'}])
    expect(s.hasPending).toBe(false)
    // …and when the rest comes, it is the sequence, not Escape plus text.
    expect(s.push('\u001B')).toEqual([])
    expect(s.push('[A')).toEqual([{kind: 'up'}])
    // ESC ESC: the first is Escape.
    expect(keysOf(['\u001B\u001B[B'])).toEqual([{kind: 'escape'}, {kind: 'down'}])
  })

  it('Alt+Enter is a newline, Ctrl-C an interrupt, Ctrl-D eof; other sequences and controls are dropped', () => {
    expect(keysOf(['a\u001B\rb'])).toEqual([{kind: 'text', text: 'a'}, {kind: 'newline'}, {kind: 'text', text: 'b'}])
    expect(keysOf(['\u0003'])).toEqual([{kind: 'interrupt'}])
    expect(keysOf(['\u0004'])).toEqual([{kind: 'eof'}])
    expect(keysOf(['a\u001B[3~\u001B[1;5C\u001B[?2004h\tb\u0001'])).toEqual([{kind: 'text', text: 'ab'}])
  })

  it('a sequence that never ends is dropped, not buffered forever', () => {
    const s = new KeyStream()
    const keys = s.push('\u001B[' + '1'.repeat(100) + 'tail')
    expect(merge(keys).filter((k) => k.kind === 'text').map((k) => (k as {text: string}).text).join('')).not.toContain('\u001B')
    expect(s.hasPending).toBe(false)
  })

  it('multi-byte characters pass through whole', () => {
    expect(keysOf(['héllo 日本 🙂\r'])).toEqual([{kind: 'text', text: 'héllo 日本 🙂'}, {kind: 'submit'}])
  })

  it('the bracketed-paste mode switches are the xterm ones', () => {
    expect(ENABLE_BRACKETED_PASTE).toBe('\u001B[?2004h')
    expect(DISABLE_BRACKETED_PASTE).toBe('\u001B[?2004l')
  })
})
