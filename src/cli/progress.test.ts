import {PassThrough} from 'node:stream'

import {describe, expect, it} from 'vitest'

import {stageLines} from './progress.js'

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
