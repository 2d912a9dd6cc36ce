// Which processes are still alive, for the tests that check nle leaves nothing running.
import {readFileSync, readdirSync} from 'node:fs'

/** pids of live processes (not this one) whose command line mentions every needle. */
export function processesMentioning(...needles: string[]): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .filter((d) => {
      try {
        const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8')
        return needles.every((n) => cmdline.includes(n))
      } catch {
        return false // exited while we looked
      }
    })
    .map(Number)
}
