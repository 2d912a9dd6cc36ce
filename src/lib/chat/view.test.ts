import {describe, expect, it} from 'vitest'

import {tailRows} from './view.js'

describe('tailRows', () => {
  it('keeps a text that fits', () => {
    expect(tailRows('one\ntwo', 80, 5)).toBe('one\ntwo')
  })

  it('keeps the last lines that fit, marking the cut', () => {
    const text = Array.from({length: 10}, (_, i) => `line ${i}`).join('\n')
    expect(tailRows(text, 80, 3)).toBe('…\nline 8\nline 9')
  })

  it('counts a long line as the rows it wraps into', () => {
    // width 18 (20 columns - 2): a 40-character line takes 3 rows.
    expect(tailRows(`short\n${'x'.repeat(40)}`, 20, 4)).toBe(`short\n${'x'.repeat(40)}`)
    expect(tailRows(`a\nb\n${'x'.repeat(40)}`, 20, 4)).toBe(`…\n${'x'.repeat(40)}`)
  })

  it('one line longer than the budget: its end', () => {
    const out = tailRows('y'.repeat(1000), 20, 2)
    expect(out.startsWith('…')).toBe(true)
    expect([...out].length).toBe(2 * 18)
  })
})
