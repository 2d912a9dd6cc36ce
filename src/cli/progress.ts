/**
 * Stage progress on a terminal, for commands whose work takes long (`nle build`, `nle model
 * synth`): one line per stage on stderr, `… label` while it runs (with an optional detail such as
 * a percentage, redrawn in place) and `✓ label (1.2 s)` once the next one starts or the command
 * ends. Only for a person: callers create it when stderr is a TTY and `--json` is off; scripts get
 * the timed stages in the command's `--json` result instead.
 */
import type {DownloadProgress} from '../lib/model/hub.js'

export interface StageLines {
  start(label: string): void
  detail(text: string): void
  /** Ends the last stage: ✓ when the command succeeded, ✗ when it failed. */
  end(ok: boolean): void
}

export function stageLines(stream: NodeJS.WritableStream = process.stderr): StageLines {
  let current: {label: string; t0: number} | undefined
  const close = (mark: string): void => {
    if (!current) return
    stream.write(`\r\u001B[2K${mark} ${current.label} (${((performance.now() - current.t0) / 1000).toFixed(1)} s)\n`)
    current = undefined
  }
  return {
    start(label) {
      close('✓')
      current = {label, t0: performance.now()}
      stream.write(`… ${label}`)
    },
    detail(text) {
      if (current) stream.write(`\r\u001B[2K… ${current.label}: ${text}`)
    },
    end(ok) {
      close(ok ? '✓' : '✗')
    },
  }
}

/** Whether this run draws stage lines: stderr is a terminal and the output is not --json. */
export function wantsStageLines(json: boolean): boolean {
  return Boolean(process.stderr.isTTY) && !json
}

/**
 * A stage's detail as a percentage of a byte count (`42% of 1400.0 MB`), redrawn only when the
 * whole percent changes.
 */
export function percentDetail(detail: (text: string) => void): (done: number, total: number) => void {
  let shown = -1
  return (done, total) => {
    if (total <= 0) return
    const pct = Math.floor((100 * done) / total)
    if (pct !== shown) detail(`${(shown = pct)}% of ${(total / 1e6).toFixed(1)} MB`)
  }
}

/** A download's progress as stage lines: a stage per file, its detail a bar redrawn at most every 100 ms (and at the end). */
export function downloadDetail(lines: StageLines): (p: DownloadProgress) => void {
  let file: string | undefined
  let last = 0
  return (p) => {
    if (p.file !== file) {
      file = p.file
      last = 0
      lines.start(`Downloading ${p.file}`)
    }
    const now = Date.now()
    if (now - last < 100 && p.received !== p.total) return
    last = now
    const width = 28
    const frac = p.total ? Math.min(1, p.received / p.total) : 0
    const filled = Math.round(frac * width)
    const bar = p.total ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ` : ''
    lines.detail(`${bar}${mb(p.received)}${p.total ? ` / ${mb(p.total)}` : ''}${p.resumedFrom > 0 ? ' (resumed)' : ''}`)
  }
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`
