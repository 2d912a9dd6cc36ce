import {PassThrough} from 'node:stream'

import {describe, expect, it} from 'vitest'

import {type StageLines, downloadDetail, percentDetail, stageLines} from './progress.js'

describe('stageLines', () => {
  it('draws each stage while it runs and closes it with ✓ and its time when the next starts; ✗ on failure', () => {
    const out = new PassThrough()
    let text = ''
    out.on('data', (d: Buffer) => (text += d.toString()))
    const lines = stageLines(out)
    lines.start('Assembling')
    lines.detail('3 of 5 files')
    lines.start('Writing the EIF')
    lines.end(false)
    lines.end(true) // nothing left to close
    // ESC [2K (erase the line) written as "<CLEAR>" so the patterns hold no control characters.
    const shown = text.replaceAll('\u001B[2K', '<CLEAR>').split('\n')
    expect(shown[0]).toMatch(/^… Assembling\r<CLEAR>… Assembling: 3 of 5 files\r<CLEAR>✓ Assembling \(\d+\.\d s\)$/)
    expect(shown[1]).toMatch(/^… Writing the EIF\r<CLEAR>✗ Writing the EIF \(\d+\.\d s\)$/)
    expect(shown[2]).toBe('')
  })
})

describe('percentDetail', () => {
  it('shows the whole percent of the total in MB, once per point, and nothing for an unknown total', () => {
    const shown: string[] = []
    const detail = percentDetail((t) => shown.push(t))
    detail(0, 0)
    for (const done of [0, 10_000, 20_000, 1_500_000, 1_510_000, 3_000_000]) detail(done, 3_000_000)
    expect(shown).toEqual(['0% of 3.0 MB', '50% of 3.0 MB', '100% of 3.0 MB'])
  })
})

describe('downloadDetail', () => {
  it('starts a stage per file and always draws its first and its last chunk (a bar with the percentage; no bar for an unknown size)', () => {
    const seen: string[] = []
    const lines: StageLines = {start: (l) => seen.push(`start ${l}`), detail: (t) => seen.push(t), end: () => {}}
    const show = downloadDetail(lines)
    show({file: 'onnx/model.onnx', received: 0, total: 2_000_000, resumedFrom: 0})
    show({file: 'onnx/model.onnx', received: 2_000_000, total: 2_000_000, resumedFrom: 0})
    show({file: 'tokenizer.json', received: 1_000_000, total: undefined, resumedFrom: 500_000})
    expect(seen[0]).toBe('start Downloading onnx/model.onnx')
    expect(seen[1]).toBe(`[${'-'.repeat(28)}]   0% 0.0 MB / 2.0 MB`)
    expect(seen[2]).toBe(`[${'#'.repeat(28)}] 100% 2.0 MB / 2.0 MB`)
    expect(seen.slice(3)).toEqual(['start Downloading tokenizer.json', '1.0 MB (resumed)'])
  })
})
