// Prints one plain closing line, "N passed, N failed, N skipped", after vitest's own summary,
// so any log reader (CI included) sees how many tests ran without parsing vitest's format.
import type {Reporter, RunnerTask, RunnerTestFile} from 'vitest'

function count(tasks: readonly RunnerTask[], acc = {passed: 0, failed: 0, skipped: 0}): typeof acc {
  for (const t of tasks) {
    if (t.type === 'suite') count(t.tasks, acc)
    else if (t.result?.state === 'pass') acc.passed++
    else if (t.result?.state === 'fail') acc.failed++
    else acc.skipped++
  }
  return acc
}

export default class SummaryReporter implements Reporter {
  onFinished(files: RunnerTestFile[] = []): void {
    const c = count(files)
    process.stdout.write(`\n${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped\n`)
  }
}
