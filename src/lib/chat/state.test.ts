import {describe, expect, it} from 'vitest'

import {History, conversation, initialState, parseSlash, reduce} from './state.js'

const summary = {moduleId: 'i-1-enc1', pcr0: 'ab'.repeat(48), debug: false, timestamp: new Date(0), root: 'nle dev root'}

describe('reduce', () => {
  it('streams a turn and files it when done', () => {
    let s = initialState('attested')
    s = reduce(s, {type: 'attest-ok', summary, at: new Date(1)})
    s = reduce(s, {type: 'ask', question: 'q1'})
    s = reduce(s, {type: 'delta', text: 'Hel'})
    s = reduce(s, {type: 'delta', text: 'lo'})
    expect(s.current?.answer).toBe('Hello')
    s = reduce(s, {type: 'done'})
    expect(s.current).toBeUndefined()
    expect(s.log).toEqual([{type: 'turn', id: 1, question: 'q1', answer: 'Hello'}])
  })

  it('keeps a partial answer with its error, and leaves failed turns out of the conversation', () => {
    let s = initialState('attested')
    s = reduce(s, {type: 'ask', question: 'q1'})
    s = reduce(s, {type: 'delta', text: 'par'})
    s = reduce(s, {type: 'failed', message: 'enclave down'})
    expect(s.log[0]).toMatchObject({question: 'q1', answer: 'par', error: 'enclave down'})
    s = reduce(s, {type: 'ask', question: 'q2'})
    s = reduce(s, {type: 'delta', text: 'a2'})
    s = reduce(s, {type: 'done'})
    expect(conversation(s, 'q3')).toEqual([
      {role: 'user', content: 'q2'},
      {role: 'assistant', content: 'a2'},
      {role: 'user', content: 'q3'},
    ])
  })

  it('a mode switch requires a new attestation; clear empties the log', () => {
    let s = reduce(initialState('attested'), {type: 'attest-ok', summary, at: new Date()})
    s = reduce(s, {type: 'notice', kind: 'info', text: 'x'})
    s = reduce(s, {type: 'mode', mode: 'kms'})
    expect(s).toMatchObject({mode: 'kms', attest: {status: 'pending'}})
    expect(reduce(s, {type: 'clear'}).log).toEqual([])
  })

  it('a lost enclave is not verified any more; the next attestation makes it verified again', () => {
    let s = reduce(initialState('attested'), {type: 'attest-ok', summary, at: new Date()})
    s = reduce(s, {type: 'lost', code: 'CLIENT_UNREACHABLE', message: 'gone'})
    expect(s.attest).toEqual({status: 'lost', code: 'CLIENT_UNREACHABLE', message: 'gone'})
    expect(reduce(s, {type: 'attest-ok', summary, at: new Date()}).attest.status).toBe('verified')
  })

  it('dropped turns leave the conversation but stay on screen; clear starts over', () => {
    let s = initialState('attested')
    for (const q of ['q1', 'q2', 'q3']) {
      s = reduce(s, {type: 'ask', question: q})
      s = reduce(s, {type: 'delta', text: `a${q}`})
      s = reduce(s, {type: 'done'})
    }
    s = reduce(s, {type: 'drop', turns: 2})
    expect(s.log).toHaveLength(3)
    expect(conversation(s, 'q4').map((m) => m.content)).toEqual(['q3', 'aq3', 'q4'])
    s = reduce(s, {type: 'clear'})
    expect(s.dropped).toBe(0)
  })
})

describe('parseSlash', () => {
  it.each([
    ['/attest', {name: 'attest'}],
    ['/quit', {name: 'quit'}],
    ['/exit', {name: 'quit'}],
    ['/mode kms', {name: 'mode', mode: 'kms'}],
    ['/mode', {name: 'mode'}],
    ['/mode gpu', {name: 'bad-mode', mode: 'gpu'}],
    ['/nope', {name: 'unknown', input: '/nope'}],
    ['  /clear ', {name: 'clear'}],
  ])('%s', (line, expected) => expect(parseSlash(line)).toEqual(expected))

  it('ordinary text is not a command', () => expect(parseSlash('what is /dev/nsm?')).toBeUndefined())
})

describe('History', () => {
  it('walks back and forth and restores the draft', () => {
    const h = new History()
    h.push('one')
    h.push('two')
    h.push('two')
    expect(h.previous('dra')).toBe('two')
    expect(h.previous('two')).toBe('one')
    expect(h.previous('one')).toBe('one')
    expect(h.next()).toBe('two')
    expect(h.next()).toBe('dra')
  })
})
