/** A line-based unified diff (LCS), enough for key policies (≤ 32 KB of JSON). Pure. */

type Op = {kind: ' ' | '-' | '+'; line: string}

function lcsOps(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length
  const m = b.length
  // lengths[i][j] = LCS of a[i..] and b[j..], in one flat array
  const width = m + 1
  const lengths = new Uint32Array((n + 1) * width)
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lengths[i * width + j] = a[i] === b[j] ? lengths[(i + 1) * width + j + 1]! + 1 : Math.max(lengths[(i + 1) * width + j]!, lengths[i * width + j + 1]!)
    }
  }
  const ops: Op[] = []
  let i = 0
  let j = 0
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({kind: ' ', line: a[i]!})
      i++
      j++
    } else if (lengths[(i + 1) * width + j]! >= lengths[i * width + j + 1]!) ops.push({kind: '-', line: a[i++]!})
    else ops.push({kind: '+', line: b[j++]!})
  }
  while (i < n) ops.push({kind: '-', line: a[i++]!})
  while (j < m) ops.push({kind: '+', line: b[j++]!})
  return ops
}

const splitLines = (text: string): string[] => {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  return lines
}

/** A unified diff of two texts; '' when they are equal. */
export function unifiedDiff(before: string, after: string, labels: {from: string; to: string} = {from: 'a/key-policy.json', to: 'b/key-policy.json'}, context = 3): string {
  if (before === after) return ''
  const ops = lcsOps(splitLines(before), splitLines(after))
  const out = [`--- ${labels.from}`, `+++ ${labels.to}`]
  let index = 0
  while (index < ops.length) {
    // Find the next change.
    while (index < ops.length && ops[index]!.kind === ' ') index++
    if (index >= ops.length) break
    const start = Math.max(0, index - context)
    let end = index
    // Extend while changes are within 2*context lines of each other.
    let lastChange = index
    while (end < ops.length) {
      if (ops[end]!.kind !== ' ') lastChange = end
      else if (end - lastChange > 2 * context) break
      end++
    }
    end = Math.min(ops.length, lastChange + context + 1)
    let aStart = 0
    let bStart = 0
    for (let k = 0; k < start; k++) {
      if (ops[k]!.kind !== '+') aStart++
      if (ops[k]!.kind !== '-') bStart++
    }
    const hunk = ops.slice(start, end)
    const aLen = hunk.filter((o) => o.kind !== '+').length
    const bLen = hunk.filter((o) => o.kind !== '-').length
    out.push(`@@ -${aLen === 0 ? aStart : aStart + 1},${aLen} +${bLen === 0 ? bStart : bStart + 1},${bLen} @@`)
    for (const o of hunk) out.push(`${o.kind}${o.line}`)
    index = end
  }
  return out.join('\n') + '\n'
}
