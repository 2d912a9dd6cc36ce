import {render} from 'ink-testing-library'
import React from 'react'
import {afterEach, describe, expect, it} from 'vitest'

import {NleError} from '../lib/errors.js'
import type {AttestationSummary, ChatBackend, ChatMessage} from '../lib/chat/types.js'
import {ChatApp} from './ChatApp.js'

const summary: AttestationSummary = {moduleId: 'i-0abc-enc0def', pcr0: '0123456789abcdef'.repeat(6), debug: false, timestamp: new Date(0), root: 'nle dev root'}

/** A backend that replays a recorded answer token by token, and records what was sent. */
function fakeBackend(options: {answer?: string[]; attest?: () => Promise<AttestationSummary>; failAfter?: number} = {}): ChatBackend & {sent: ChatMessage[][]} {
  const sent: ChatMessage[][] = []
  return {
    mode: 'attested',
    target: 'unix:/tmp/test.sock',
    sent,
    attest: options.attest ?? (async () => summary),
    async *send(messages) {
      sent.push([...messages])
      const tokens = options.answer ?? ['Hello', ' there', ', friend.']
      for (const [i, t] of tokens.entries()) {
        if (options.failAfter !== undefined && i === options.failAfter) throw new NleError('CLIENT_STREAM_INTERRUPTED', 'the enclave closed the stream')
        await new Promise((r) => setTimeout(r, 2))
        yield t
      }
    },
  }
}

const tick = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms))
async function until(frame: () => string | undefined, text: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!(frame() ?? '').includes(text)) {
    if (Date.now() > end) throw new Error(`"${text}" never appeared in:\n${frame()}`)
    await tick(10)
  }
}

let instance: ReturnType<typeof render> | undefined
afterEach(() => instance?.unmount())

async function type(i: ReturnType<typeof render>, text: string): Promise<void> {
  i.stdin.write(text)
  await tick(20)
}

describe('ChatApp', () => {
  it('verifies first, then streams an answer and keeps the finished turn', async () => {
    const backend = fakeBackend()
    instance = render(<ChatApp backend={backend} flushMs={5} />)
    await until(instance.lastFrame, 'attestation verified')
    expect(instance.lastFrame()).toContain('PCR0 0123456789abcdef…')
    await type(instance, 'what is my deductible?')
    await type(instance, '\r')
    await until(() => instance!.frames.join('\n'), 'Hello there, friend.')
    expect(backend.sent).toEqual([[{role: 'user', content: 'what is my deductible?'}]])
    // A second question carries the first turn as context.
    await until(instance.lastFrame, '› ')
    await type(instance, 'and then?')
    await type(instance, '\r')
    await until(() => (backend.sent.length === 2 ? 'sent' : ''), 'sent')
    expect(backend.sent[1]).toHaveLength(3)
  })

  it('sends nothing when attestation fails and says why', async () => {
    const backend = fakeBackend({attest: async () => Promise.reject(new NleError('ATTEST_PCR_MISMATCH', 'PCR0 differs from nle.lock.json'))})
    instance = render(<ChatApp backend={backend} />)
    await until(instance.lastFrame, 'attestation failed: nothing will be sent')
    expect(instance.lastFrame()).toContain('[ATTEST_PCR_MISMATCH] PCR0 differs')
    await type(instance, 'secret question')
    await type(instance, '\r')
    await until(() => instance!.frames.join('\n'), 'Not sent')
    expect(backend.sent).toEqual([])
  })

  it('warns loudly about a debug-mode enclave', async () => {
    instance = render(<ChatApp backend={fakeBackend({attest: async () => ({...summary, debug: true, pcr0: '0'.repeat(96)})})} />)
    await until(instance.lastFrame, 'DEBUG-MODE ENCLAVE')
  })

  it('shows a stream error inline with the partial answer', async () => {
    instance = render(<ChatApp backend={fakeBackend({failAfter: 1})} flushMs={5} />)
    await until(instance.lastFrame, 'attestation verified')
    await type(instance, 'hi')
    await type(instance, '\r')
    await until(() => instance!.frames.join('\n'), '✗ [CLIENT_STREAM_INTERRUPTED] the enclave closed the stream')
    expect(instance.frames.join('\n')).toContain('Hello')
  })

  it('handles slash commands and multi-line input', async () => {
    let attests = 0
    const backend = fakeBackend({attest: async () => (attests++, summary)})
    instance = render(<ChatApp backend={backend} flushMs={5} />)
    await until(instance.lastFrame, 'attestation verified')
    await type(instance, '/attest')
    await type(instance, '\r')
    await until(() => (attests === 2 ? 'yes' : ''), 'yes')
    await type(instance, '/mode kms')
    await type(instance, '\r')
    await until(() => instance!.frames.join('\n'), 'one mode only')
    await type(instance, '/bogus')
    await type(instance, '\r')
    await until(() => instance!.frames.join('\n'), 'Unknown command /bogus')
    await type(instance, 'line one\\')
    await type(instance, '\r')
    await type(instance, 'line two')
    await type(instance, '\r')
    await until(() => (backend.sent.length === 1 ? 'sent' : ''), 'sent')
    expect(backend.sent[0]?.[0]?.content).toBe('line one\nline two')
  })
})
