import {Tokenizer} from '@huggingface/tokenizers'
import {describe, expect, it} from 'vitest'

import {gpt2TokenizerJson} from '../model/gpt2-tokenizer.js'
import {IncrementalDecoder, StopMatcher} from './stream.js'

const tokenizer = new Tokenizer(gpt2TokenizerJson(), {clean_up_tokenization_spaces: false})
const decoder = {decode: (ids: readonly number[]): string => (ids.length === 0 ? '' : tokenizer.decode([...ids], {skip_special_tokens: true}))}

describe('IncrementalDecoder', () => {
  it('streams multi-byte characters whole: chunks concatenate to the text and never hold U+FFFD', () => {
    const text = 'Grüße aus der Enklave — 日本語のテキスト, emoji 🤗🔐 and a family 👩‍👩‍👧 end'
    const ids: number[] = tokenizer.encode(text, {add_special_tokens: false}).ids
    const d = new IncrementalDecoder(decoder)
    const chunks: string[] = ids.map((id) => d.push(id))
    chunks.push(d.flush())
    expect(chunks.join('')).toBe(text)
    for (const c of chunks) expect(c).not.toContain('\uFFFD')
    // Byte-level BPE splits some of these characters over several tokens: those steps emit nothing.
    expect(chunks.filter((c) => c === '').length).toBeGreaterThan(0)
    expect(ids.length).toBeGreaterThan(chunks.filter((c) => c !== '').length)
  })

  it('flushes an incomplete character at the end as U+FFFD, like a full decode', () => {
    const ids: number[] = tokenizer.encode('🤗', {add_special_tokens: false}).ids
    expect(ids.length).toBeGreaterThan(1)
    const d = new IncrementalDecoder(decoder)
    const partial = ids.slice(0, -1).map((id) => d.push(id)).join('') + d.flush()
    expect(partial).toBe(decoder.decode(ids.slice(0, -1)))
  })
})

describe('StopMatcher', () => {
  it('finds a stop string split over chunks and emits only the text before it', () => {
    const m = new StopMatcher(['STOP', '\n\n'])
    const out: string[] = []
    let stop: string | undefined
    for (const delta of ['Hel', 'lo S', 'T', 'OP after']) {
      const r = m.push(delta)
      out.push(r.text)
      if (r.stop !== undefined) {
        stop = r.stop
        break
      }
    }
    expect(stop).toBe('STOP')
    expect(out.join('')).toBe('Hello ')
    expect(out[1]).toBe('lo ')
  })

  it('releases held text that turned out not to be a stop string', () => {
    const m = new StopMatcher(['STOP'])
    expect(m.push('a ST').text).toBe('a ')
    expect(m.push('AR').text).toBe('STAR')
    expect(m.push(' ST').text).toBe(' ')
    expect(m.flush()).toBe('ST')
  })

  it('picks the earliest of several stop strings', () => {
    const m = new StopMatcher(['world', 'lo'])
    expect(m.push('hello world')).toEqual({text: 'hel', stop: 'lo'})
  })
})
