import {describe, expect, it} from 'vitest'

import {unifiedDiff} from './diff.js'

const labels = {from: 'a/f', to: 'b/f'}

describe('unifiedDiff', () => {
  it('prints nothing for equal texts and one hunk with three lines of context for one change', () => {
    expect(unifiedDiff('a\nb\n', 'a\nb\n', labels)).toBe('')
    expect(unifiedDiff('1\n2\n3\n4\n5\n6\n7\n8\n', '1\n2\n3\n4\nfive\n6\n7\n8\n', labels)).toBe('--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n')
  })

  it('keeps distant changes in separate hunks and says when a text has no final newline', () => {
    const before = Array.from({length: 20}, (_, i) => `${i}`).join('\n') + '\n'
    const after = before.replace('1\n', 'one\n').replace('18\n', 'eighteen\n')
    expect(unifiedDiff(before, after, labels).match(/^@@ /gm)).toHaveLength(2)
    expect(unifiedDiff('x', 'y', labels)).toContain('\\ No newline at end of file')
  })
})
