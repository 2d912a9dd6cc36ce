/**
 * The one text diff nle prints (key policies, allocator.yaml): a unified diff by the `diff`
 * library, with `---`/`+++` labels and `context` lines around each hunk. Pure.
 */
import {createTwoFilesPatch} from 'diff'

/** A unified diff of two texts; '' when they are equal. */
export function unifiedDiff(before: string, after: string, labels: {from: string; to: string}, context = 3): string {
  if (before === after) return ''
  // The library starts with an "=====" separator line meant for multi-file patches: not ours.
  return createTwoFilesPatch(labels.from, labels.to, before, after, undefined, undefined, {context}).replace(/^=+\n/, '')
}
