import {EventEmitter} from 'node:events'

import {describe, expect, it} from 'vitest'

import {DISABLE_BRACKETED_PASTE, ENABLE_BRACKETED_PASTE} from '../lib/chat/keys.js'
import {enableBracketedPaste} from './terminal.js'

function fakes(isTTY = true) {
  const written: string[] = []
  const killed: string[] = []
  const proc = Object.assign(new EventEmitter(), {pid: 4242, kill: (_pid: number, signal: string) => killed.push(signal)})
  return {out: {isTTY, write: (s: string) => written.push(s)}, proc, written, killed}
}

describe('enableBracketedPaste', () => {
  it('turns it on, and off once, however often restore is called', () => {
    const f = fakes()
    const restore = enableBracketedPaste(f.out, f.proc)
    expect(f.written).toEqual([ENABLE_BRACKETED_PASTE])
    restore()
    restore()
    f.proc.emit('exit')
    expect(f.written).toEqual([ENABLE_BRACKETED_PASTE, DISABLE_BRACKETED_PASTE])
    expect(f.proc.listenerCount('exit') + f.proc.listenerCount('SIGTERM')).toBe(0)
  })

  it('turns it off on process exit', () => {
    const f = fakes()
    enableBracketedPaste(f.out, f.proc)
    f.proc.emit('exit')
    expect(f.written.at(-1)).toBe(DISABLE_BRACKETED_PASTE)
  })

  it('on a signal, turns it off and, alone, ends the process with that signal', () => {
    const f = fakes()
    enableBracketedPaste(f.out, f.proc)
    f.proc.emit('SIGHUP')
    expect(f.written.at(-1)).toBe(DISABLE_BRACKETED_PASTE)
    expect(f.killed).toEqual(['SIGHUP'])
  })

  it('on a signal others also handle (Ink), leaves ending the process to them', () => {
    const f = fakes()
    enableBracketedPaste(f.out, f.proc)
    f.proc.on('SIGTERM', () => undefined)
    f.proc.emit('SIGTERM')
    expect(f.written.at(-1)).toBe(DISABLE_BRACKETED_PASTE)
    expect(f.killed).toEqual([])
  })

  it('writes nothing when the output is not a terminal', () => {
    const f = fakes(false)
    enableBracketedPaste(f.out, f.proc)()
    expect(f.written).toEqual([])
  })
})
