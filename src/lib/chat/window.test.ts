import {describe, expect, it} from 'vitest'

import type {ChatMessage} from './types.js'
import {contextInfo, droppedNotice, fitToContext, tooLongNotice} from './window.js'

const u = (content: string): ChatMessage => ({role: 'user', content})
const a = (content: string): ChatMessage => ({role: 'assistant', content})
const sys: ChatMessage = {role: 'system', content: 'be brief'}

/** n earlier turns of 100 characters each (50 + 50), then the question. */
function conversation(n: number, system = false): ChatMessage[] {
  const ms: ChatMessage[] = system ? [sys] : []
  for (let i = 0; i < n; i++) ms.push(u(`q${i}`.padEnd(50, '.')), a(`a${i}`.padEnd(50, '.')))
  ms.push(u('the question'))
  return ms
}

describe('fitToContext', () => {
  it('without numbers, drops the older half of the turns, keeps the system prompt and the question', () => {
    const r = fitToContext(conversation(4, true), {})
    expect(r).toMatchObject({ok: true, droppedTurns: 2})
    if (!r.ok) throw new Error('unreachable')
    expect(r.messages[0]).toEqual(sys)
    expect(r.messages.at(-1)).toEqual(u('the question'))
    expect(r.messages.map((m) => m.content.slice(0, 2))).toEqual(['be', 'q2', 'a2', 'q3', 'a3', 'th'])
  })

  it('with the prompt\'s tokens and the context, drops enough for about three quarters of the context', () => {
    // 10 turns of 100 chars + 12: 1012 chars for 1012 tokens; context 400 → budget ~300 chars → keep 2 turns.
    const ms = conversation(10)
    const r = fitToContext(ms, {context: 400, promptTokens: 1012})
    expect(r).toMatchObject({ok: true, droppedTurns: 8})
    if (!r.ok) throw new Error('unreachable')
    expect(r.messages).toHaveLength(5)
    expect(r.messages[0]!.content.startsWith('q8')).toBe(true)
  })

  it('always drops at least one turn, even when the estimate says it would fit', () => {
    expect(fitToContext(conversation(3), {context: 10_000, promptTokens: 10_001})).toMatchObject({ok: true, droppedTurns: 1})
  })

  it('drops every turn when even one is too many, and then says it cannot (the question alone is too long)', () => {
    const r = fitToContext(conversation(3, true), {context: 10, promptTokens: 500})
    expect(r).toMatchObject({ok: true, droppedTurns: 3})
    if (!r.ok) throw new Error('unreachable')
    expect(r.messages).toEqual([sys, u('the question')])
    expect(fitToContext(r.messages, {context: 10, promptTokens: 20})).toEqual({ok: false})
    expect(fitToContext([u('only')], {})).toEqual({ok: false})
  })

  it('a turn is a question with its answer: the kept conversation never starts with an answer', () => {
    const r = fitToContext([u('q0'), a('a0'), a('a0 continued'), u('q1'), a('a1'), u('now')], {})
    if (!r.ok) throw new Error('unreachable')
    expect(r.messages).toEqual([u('q1'), a('a1'), u('now')])
  })
})

describe('contextInfo and the notices', () => {
  it('takes only positive integers from the error details', () => {
    expect(contextInfo({context: 512, promptTokens: 900, serverCode: 'ENGINE_PROMPT_TOO_LONG'})).toEqual({context: 512, promptTokens: 900})
    expect(contextInfo({context: -1, promptTokens: '9'})).toEqual({})
    expect(contextInfo(undefined)).toEqual({})
  })

  it('says how many turns were dropped and the context size when known', () => {
    expect(droppedNotice(3, {context: 512})).toBe("dropped 3 oldest turns to fit the model's context of 512 tokens")
    expect(droppedNotice(1, {})).toBe("dropped 1 oldest turn to fit the model's context")
    expect(tooLongNotice({context: 512, promptTokens: 700})).toContain('(700 tokens) is too long for the model\'s context of 512 tokens')
  })
})
