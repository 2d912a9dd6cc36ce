import {describe, expect, it} from 'vitest'

import {type EditorAction, LineEditor, MAX_INPUT_CHARS} from './editor.js'
import {KeyStream} from './keys.js'

/** Feeds terminal input (one chunk each) through a KeyStream into an editor; returns the actions. */
function drive(editor: LineEditor, chunks: string[], busy = false): EditorAction[] {
  const keys = new KeyStream()
  const actions: EditorAction[] = []
  for (const chunk of chunks) {
    for (const key of keys.push(chunk)) {
      const a = editor.apply(key, busy)
      if (a) actions.push(a)
    }
  }
  return actions
}

describe('LineEditor', () => {
  it('"text\\r" in one chunk submits the text', () => {
    const e = new LineEditor()
    expect(drive(e, ['hello there\r'])).toEqual([{kind: 'submit', line: 'hello there'}])
    expect(e.text).toBe('')
  })

  it('several backspaces in one chunk each delete one character (a whole character, not half of one)', () => {
    const e = new LineEditor()
    drive(e, ['abc🙂d\u007F\u007F\u007F'])
    expect(e.text).toBe('ab')
    drive(e, ['\u007F\u007F\u007F\u007F'])
    expect(e.text).toBe('')
  })

  it('a pasted multi-line text is one question with real newlines, sent by the Enter after it', () => {
    const e = new LineEditor()
    expect(drive(e, ['\u001B[200~first pasted line\r\nsecond pasted line\u001B[201~'])).toEqual([])
    expect(e.text).toBe('first pasted line\nsecond pasted line')
    expect(drive(e, ['\r'])).toEqual([{kind: 'submit', line: 'first pasted line\nsecond pasted line'}])
  })

  it('Alt+Enter and a trailing backslash start a new line', () => {
    const e = new LineEditor()
    expect(drive(e, ['one\u001B\rtwo\\\rthree\r'])).toEqual([{kind: 'submit', line: 'one\ntwo\nthree'}])
  })

  it('blank lines are not sent; up/down walk the history', () => {
    const e = new LineEditor()
    expect(drive(e, ['   \r', '\r'])).toEqual([])
    drive(e, ['first\r', 'second\r', 'draft'])
    drive(e, ['\u001B[A'])
    expect(e.text).toBe('second')
    drive(e, ['\u001B[A\u001B[A'])
    expect(e.text).toBe('first')
    drive(e, ['\u001B[B\u001B[B'])
    expect(e.text).toBe('draft')
  })

  it('while an answer streams, only Esc and Ctrl-C act (cancel); typing is dropped', () => {
    const e = new LineEditor()
    const keys = new KeyStream()
    const actions = keys.push('abc\r\u0003').map((k) => e.apply(k, true))
    expect(actions.filter(Boolean)).toEqual([{kind: 'cancel'}])
    expect(e.apply({kind: 'escape'}, true)).toEqual({kind: 'cancel'})
    expect(e.text).toBe('')
  })

  it('Ctrl-C quits at the prompt; Ctrl-D quits only on an empty line', () => {
    const e = new LineEditor()
    expect(drive(e, ['x\u0004'])).toEqual([])
    expect(drive(e, ['\u007F\u0004'])).toEqual([{kind: 'quit'}])
    expect(drive(e, ['abc\u0003'])).toEqual([{kind: 'quit'}])
  })

  it('holds at most MAX_INPUT_CHARS', () => {
    const e = new LineEditor()
    drive(e, ['\u001B[200~' + 'x'.repeat(MAX_INPUT_CHARS + 10) + '\u001B[201~'])
    expect(e.text).toHaveLength(MAX_INPUT_CHARS)
  })
})
