import {render} from 'ink-testing-library'
import React from 'react'
import {afterEach, describe, expect, it} from 'vitest'

import {NleError} from '../lib/errors.js'
import type {AttestationSummary, ChatBackend, ChatMessage, ChatMode} from '../lib/chat/types.js'
import {ChatApp} from './ChatApp.js'

const summary: AttestationSummary = {moduleId: 'i-0abc-enc0def', pcr0: '0123456789abcdef'.repeat(6), debug: false, timestamp: new Date(0), root: 'nle dev root'}

interface FakeOptions {
  answer?: string[]
  attest?: () => Promise<AttestationSummary>
  failAfter?: number
  /** Refuse (CLIENT_CONTEXT_TOO_LONG) a conversation of more characters than this, like an enclave with a small context. */
  contextChars?: number
  /** Throw this on send, before any text. */
  sendError?: () => NleError | undefined
  setMode?: (mode: ChatMode) => Promise<void>
}

/** A backend that replays a recorded answer token by token, and records what was sent. */
function fakeBackend(options: FakeOptions = {}): ChatBackend & {sent: ChatMessage[][]; finished: () => number} {
  const sent: ChatMessage[][] = []
  let finished = 0
  return {
    mode: 'attested',
    target: 'unix:/tmp/test.sock',
    sent,
    finished: () => finished,
    attest: options.attest ?? (async () => summary),
    ...(options.setMode ? {setMode: options.setMode} : {}),
    async *send(messages) {
      sent.push([...messages])
      try {
        yield* answer(messages)
      } finally {
        finished++
      }
    },
  }
  async function* answer(messages: readonly ChatMessage[]): AsyncGenerator<string> {
      const failure = options.sendError?.()
      if (failure) throw failure
      const chars = messages.reduce((n, m) => n + m.content.length, 0)
      if (options.contextChars !== undefined && chars > options.contextChars) {
        // One token a character: what the enclave's error details carry.
        throw new NleError('CLIENT_CONTEXT_TOO_LONG', 'too long', {details: {serverCode: 'ENGINE_PROMPT_TOO_LONG', context: options.contextChars, promptTokens: chars}})
      }
      const tokens = options.answer ?? ['Hello', ' there', ', friend.']
      for (const [i, t] of tokens.entries()) {
        if (options.failAfter !== undefined && i === options.failAfter) throw new NleError('CLIENT_STREAM_INTERRUPTED', 'the enclave closed the stream')
        await new Promise((r) => setTimeout(r, 2))
        yield t
      }
  }
}

const tick = (ms = 10): Promise<void> => new Promise((r) => setTimeout(r, ms))
/** Waits (bounded) until `frame()` contains `text`. */
async function until(frame: () => string | undefined, text: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(frame() ?? '').includes(text)) {
    if (Date.now() > end) throw new Error(`"${text}" never appeared in:\n${frame()}`)
    await tick()
  }
}
/** Waits (bounded) until `check()` holds. */
async function until2(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`never: ${what}`)
    await tick()
  }
}

let instance: ReturnType<typeof render> | undefined
afterEach(() => instance?.unmount())

const all = (): string => instance!.frames.join('\n')
const last = (): string => instance!.lastFrame() ?? ''
const count = (haystack: string, needle: string): number => haystack.split(needle).length - 1

/** Starts the app and waits for its first attestation. */
async function start(backend: ChatBackend): Promise<ReturnType<typeof render>> {
  instance = render(<ChatApp backend={backend} flushMs={5} />)
  await until(last, 'attestation verified')
  return instance
}

/** Sends one chunk of terminal input, then waits until request `n` has ended and the prompt is back. */
async function ask(chunk: string, backend: {finished: () => number}, n: number): Promise<void> {
  instance!.stdin.write(chunk)
  await until2(() => backend.finished() >= n, `request ${n} ended`)
  await until2(() => !last().includes('answering…') && !last().includes('verifying'), 'the prompt is back')
}

describe('ChatApp', () => {
  it('verifies first, then streams an answer and keeps the finished turn', async () => {
    const backend = fakeBackend()
    await start(backend)
    expect(last()).toContain('PCR0 0123456789abcdef…')
    instance!.stdin.write('what is my deductible?')
    await tick()
    await ask('\r', backend, 1)
    await until(all, 'Hello there, friend.')
    expect(backend.sent).toEqual([[{role: 'user', content: 'what is my deductible?'}]])
    // A second question carries the first turn as context.
    await ask('and then?\r', backend, 2)
    expect(backend.sent[1]).toHaveLength(3)
  })

  it('sends nothing when attestation fails and says why', async () => {
    const backend = fakeBackend({attest: async () => Promise.reject(new NleError('ATTEST_PCR_MISMATCH', 'PCR0 differs from nle.lock.json'))})
    instance = render(<ChatApp backend={backend} />)
    await until(last, 'attestation failed: nothing will be sent')
    expect(last()).toContain('[ATTEST_PCR_MISMATCH] PCR0 differs')
    instance.stdin.write('secret question\r')
    await until(all, 'Not sent')
    expect(backend.sent).toEqual([])
  })

  it('warns loudly about a debug-mode enclave', async () => {
    instance = render(<ChatApp backend={fakeBackend({attest: async () => ({...summary, debug: true, pcr0: '0'.repeat(96)})})} />)
    await until(last, 'DEBUG-MODE ENCLAVE')
  })

  it('shows a stream error inline with the partial answer', async () => {
    await start(fakeBackend({failAfter: 1}))
    instance!.stdin.write('hi\r')
    await until(all, '✗ [CLIENT_STREAM_INTERRUPTED] the enclave closed the stream')
    expect(all()).toContain('Hello')
  })
})

describe('ChatApp input arriving in one chunk (paste, fast typing, tmux send-keys)', () => {
  it('Enter inside the chunk submits the text before it', async () => {
    const backend = fakeBackend()
    await start(backend)
    await ask('hello from one read\r', backend, 1)
    expect(backend.sent[0]).toEqual([{role: 'user', content: 'hello from one read'}])
    await until(all, '› hello from one read')
  })

  it('a bracketed paste of several lines is one question with real newlines, sent by Enter', async () => {
    const backend = fakeBackend()
    await start(backend)
    instance!.stdin.write('\u001B[200~first pasted line\r\nsecond pasted line\u001B[201~')
    await until(last, 'second pasted line')
    expect(backend.sent).toEqual([])
    await ask('\r', backend, 1)
    expect(backend.sent[0]![0]!.content).toBe('first pasted line\nsecond pasted line')
  })

  it('several backspaces in one chunk each delete one character; no DEL lands in the question', async () => {
    const backend = fakeBackend()
    await start(backend)
    await ask('helxx\u007F\u007Flo\r', backend, 1)
    expect(backend.sent[0]![0]!.content).toBe('hello')
  })

  it('escape sequences (arrows, Delete, a split sequence) never land in the question', async () => {
    const backend = fakeBackend()
    await start(backend)
    // Two reads, the second finishing the sequence the first began (back to back, as a terminal
    // sends them: a gap longer than the escape wait would make the ESC the Escape key).
    instance!.stdin.write('a\u001B[Cb\u001B[3~c\u001B')
    instance!.stdin.write('[Dd')
    await tick()
    await ask('\r', backend, 1)
    expect(backend.sent[0]![0]!.content).toBe('abcd')
  })

  it('"q1\\rq2\\r" in one read sends q1 only (typing while an answer streams is dropped), never two at once', async () => {
    const backend = fakeBackend()
    await start(backend)
    await ask('q1\rq2\r', backend, 1)
    await tick(50)
    expect(backend.sent).toHaveLength(1)
  })

  it('Alt+Enter and a trailing backslash make multi-line questions; history recalls them', async () => {
    const backend = fakeBackend()
    await start(backend)
    await ask('line one\\\rline two\u001B\rline three\r', backend, 1)
    expect(backend.sent[0]![0]!.content).toBe('line one\nline two\nline three')
    instance!.stdin.write('\u001B[A')
    await tick()
    // A multi-line entry comes back whole.
    await until(last, 'line three')
  })
})

describe('ChatApp keeps the conversation within the context', () => {
  it('drops the oldest turns and retries, and says so in the transcript', async () => {
    // Answers of 20 chars; questions of 30: one turn is 50 characters; the context holds 120.
    const backend = fakeBackend({answer: ['a'.repeat(20)], contextChars: 120})
    await start(backend)
    await ask(`${'1'.repeat(30)}\r`, backend, 1)
    await ask(`${'2'.repeat(30)}\r`, backend, 2)
    // Third question: 2 turns (100) + 30 > 120 → refused, then sent without the oldest turn.
    await ask(`${'3'.repeat(30)}\r`, backend, 4)
    await until(all, "dropped 1 oldest turn to fit the model's context of 120 tokens")
    expect(backend.sent).toHaveLength(4)
    expect(backend.sent[3]!.map((m) => m.content[0])).toEqual(['2', 'a', '3'])
    expect(all()).not.toContain('CLIENT_CONTEXT_TOO_LONG')
    // The dropped turn stays out: the next question does not need another refusal first.
    await ask(`${'4'.repeat(10)}\r`, backend, 5)
    expect(backend.sent).toHaveLength(5)
    expect(backend.sent[4]!.map((m) => m.content[0])).toEqual(['2', 'a', '3', 'a', '4'])
  })

  it('a question too long on its own is said clearly, with what to do', async () => {
    const backend = fakeBackend({contextChars: 50})
    await start(backend)
    await ask(`${'x'.repeat(20)}\r`, backend, 1)
    await ask(`${'y'.repeat(80)}\r`, backend, 3)
    // (The frame wraps at 100 columns: compare without the line breaks.)
    const flat = (): string => all().replaceAll('\n', ' ')
    await until(flat, "This question alone (80 tokens) is too long for the model's context of 50 tokens")
    expect(flat()).toContain('Shorten it, or split it into several questions')
    expect(all()).toContain('dropped 1 oldest turn')
    expect(last()).toContain('› ')
  })
})

describe('ChatApp rough edges', () => {
  it('/help lists commands and keys without repeating the header', async () => {
    await start(fakeBackend())
    instance!.stdin.write('/help\r')
    await until(last, 'Commands:')
    expect(last()).toContain('/mode attested or /mode kms')
    expect(count(last(), 'nle chat ·')).toBe(1)
    expect(count(last(), '✓ attestation verified')).toBe(1)
  })

  it('/clear confirms, forgets the conversation, and the next turn shows', async () => {
    const backend = fakeBackend()
    await start(backend)
    await ask('first\r', backend, 1)
    instance!.stdin.write('/clear\r')
    await until(last, "Conversation cleared")
    await ask('second\r', backend, 2)
    expect(backend.sent[1]).toEqual([{role: 'user', content: 'second'}])
    await until(last, '› second')
  })

  it('/attest confirms with the verified PCR0, or says it failed', async () => {
    let attests = 0
    await start(fakeBackend({attest: async () => (++attests === 3 ? Promise.reject(new NleError('ATTEST_PCR_MISMATCH', 'differs')) : summary)}))
    instance!.stdin.write('/attest\r')
    await until(last, '/attest: ✓ attestation verified · PCR0 0123456789abcdef…')
    instance!.stdin.write('/attest\r')
    await until(last, '/attest: ✗ attestation failed [ATTEST_PCR_MISMATCH]')
  })

  it('/mode kms confirms the switch and the new attestation; /mode bogus names the modes', async () => {
    const modes: ChatMode[] = []
    await start(fakeBackend({setMode: async (m) => void modes.push(m)}))
    instance!.stdin.write('/mode kms\r')
    await until(last, 'mode kms: ✓ attestation verified')
    expect(modes).toEqual(['kms'])
    expect(last()).toContain('· mode kms ·')
    instance!.stdin.write('/mode bogus\r')
    await until(last, 'Unknown mode "bogus": use /mode attested or /mode kms.')
    expect(last()).not.toContain('Unknown command')
    instance!.stdin.write('/bogus\r')
    await until(last, 'Unknown command /bogus. /help lists the commands.')
  })

  it('/mode kms on a one-mode backend says so', async () => {
    await start(fakeBackend())
    instance!.stdin.write('/mode kms\r')
    await until(last, 'one mode only')
  })

  it('the header stops saying "verified" once the enclave is gone, and attests again before the next question', async () => {
    let down = true
    let attests = 0
    const backend = fakeBackend({
      attest: async () => (attests++, summary),
      sendError: () => (down ? new NleError('CLIENT_UNREACHABLE', 'connect ECONNREFUSED') : undefined),
    })
    await start(backend)
    await ask('anyone there?\r', backend, 1)
    await until(last, 'not verified: the enclave is gone (disconnected)')
    expect(last()).not.toContain('✓ attestation verified')
    expect(last()).toContain('[CLIENT_UNREACHABLE]')
    down = false
    await ask('and now?\r', backend, 2)
    expect(attests).toBe(2)
    await until(last, '✓ attestation verified')
  })

  it('a narrower terminal gets a clean screen and one header laid out for its width', async () => {
    await start(fakeBackend())
    instance!.stdin.write('/help\r')
    await until(last, 'Commands:')
    Object.defineProperty(instance!.stdout, 'columns', {value: 50, configurable: true})
    const before = instance!.frames.length
    instance!.stdout.emit('resize')
    await until2(() => instance!.frames.slice(before).includes('\u001B[2J\u001B[3J\u001B[H'), 'the screen was cleared')
    await until2(() => last().split('\n').some((l) => l.startsWith('╭') && [...l].length <= 50), 'the header was laid out at 50 columns')
    const header = last().slice(last().indexOf('╭'))
    expect(count(header, 'nle chat ·')).toBe(1)
    for (const line of header.split('\n')) expect([...line].length).toBeLessThanOrEqual(50)
  })
})
