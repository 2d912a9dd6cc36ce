/** Layout helpers of the chat TUI that need no terminal. */

/**
 * The end of `text` that fits in `maxRows` screen rows `columns` wide (one column a character,
 * which is close enough for a live preview), with "…" where the start was cut. The TUI shows a
 * streaming answer this way so the live part of the screen stays shorter than the terminal (Ink
 * redraws a live part taller than the screen by clearing the whole screen on every update); the
 * whole answer goes to the transcript when it is done.
 */
export function tailRows(text: string, columns: number, maxRows: number): string {
  const width = Math.max(10, columns - 2)
  const rowsBudget = Math.max(1, maxRows)
  const lines = text.split('\n')
  let rows = 0
  let i = lines.length
  while (i > 0) {
    const need = Math.max(1, Math.ceil([...lines[i - 1]!].length / width))
    if (rows + need > rowsBudget) break
    rows += need
    i--
  }
  if (i === 0) return text
  // The "…" line takes a row too.
  if (i < lines.length - 1 && rows + 1 > rowsBudget) i++
  // Not even the last line fits whole: its end.
  if (i === lines.length) return '…' + [...text].slice(-(rowsBudget * width - 1)).join('')
  return '…\n' + lines.slice(i).join('\n')
}
