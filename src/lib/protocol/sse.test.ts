import {describe, expect, it} from 'vitest'

import {SseReader, SseTooLarge} from './sse-reader.js'
import {sseEvent} from './sse.js'

describe('the SSE framing', () => {
  it('reads what sseEvent writes, however it is chunked and whatever the line endings', () => {
    const stream = sseEvent('AAAA', 'nonce') + sseEvent('b64one') + sseEvent('line one\nline two') + ': a comment\r\n\r\n' + 'data: crlf\r\n\r\n'
    for (const size of [1, 3, 7, stream.length]) {
      const reader = new SseReader(1024)
      const events = []
      for (let i = 0; i < stream.length; i += size) events.push(...reader.push(stream.slice(i, i + size)))
      expect(events.map((e) => [e.event ?? 'message', e.data])).toEqual([
        ['nonce', 'AAAA'],
        ['message', 'b64one'],
        ['message', 'line one\nline two'],
        ['message', 'crlf'],
      ])
    }
  })

  it('stops a stream whose event grows past the limit without ending, and stays stopped', () => {
    const reader = new SseReader(64)
    expect(reader.push(sseEvent('small'))).toHaveLength(1)
    expect(() => {
      for (let i = 0; i < 10; i++) reader.push('data: ' + 'x'.repeat(20))
    }).toThrow(SseTooLarge)
    expect(() => reader.push(sseEvent('late'))).toThrow(SseTooLarge)
  })
})
