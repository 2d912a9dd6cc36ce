import {describe, expect, it} from 'vitest'

import {hasCode} from '../errors.js'
import {Rng} from './rng.js'
import {Sampler, applyRepetitionPenalty, argmax} from './sampling.js'

const row = (): Float32Array => Float32Array.from([0.1, 2.0, -1.0, 1.9, 0.5])

describe('sampling', () => {
  it('the seeded generator repeats its sequence', () => {
    const a = new Rng(5)
    const b = new Rng(5)
    const xs = Array.from({length: 5}, () => a.next())
    expect(Array.from({length: 5}, () => b.next())).toEqual(xs)
    expect(new Rng(6).next()).not.toBe(xs[0])
  })

  it('greedy is argmax; ties go to the first index', () => {
    expect(new Sampler({}, []).next(row())).toBe(1)
    expect(argmax(Float32Array.from([3, 1, 3]))).toBe(0)
  })

  it('top-k and top-p keep only the head of the distribution', () => {
    const picks = new Set<number>()
    const s = new Sampler({temperature: 5, topK: 2, seed: 1}, [])
    for (let i = 0; i < 200; i++) picks.add(s.next(row()))
    expect([...picks].sort()).toEqual([1, 3])
    const p = new Sampler({temperature: 1, topP: 0.01, seed: 1}, [])
    for (let i = 0; i < 50; i++) expect(p.next(row())).toBe(1)
  })

  it('high temperature without filters reaches every token', () => {
    const s = new Sampler({temperature: 50, seed: 2}, [])
    const picks = new Set<number>()
    for (let i = 0; i < 500; i++) picks.add(s.next(row()))
    expect(picks.size).toBe(5)
  })

  it('applies the repetition penalty as HF does (divide positive, multiply negative logits)', () => {
    const r = row()
    applyRepetitionPenalty(r, [1, 2], 2)
    expect(Array.from(r)).toEqual([Math.fround(0.1), 1, -2, Math.fround(1.9), 0.5])
    expect(new Sampler({repetitionPenalty: 2}, [1]).next(row())).toBe(3)
  })

  it('rejects invalid options', () => {
    for (const bad of [{temperature: Number.NaN}, {topK: 1.5}, {topP: 1.5}, {repetitionPenalty: 0}, {seed: 0.5}]) {
      let error: unknown
      try {
        new Sampler(bad, [])
      } catch (e) {
        error = e
      }
      expect(hasCode(error, 'ENGINE_BAD_OPTIONS')).toBe(true)
    }
  })
})
