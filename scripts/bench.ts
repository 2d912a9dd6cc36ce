// `npm run bench`: runs every bench/*.ts module (or those named on the command line) and prints
// each measurement next to a peer measured in the same run, as a ratio. Targets are printed, not
// asserted: timings vary by machine, so no test ever asserts one.
//
// A bench module exports `default async function(): Promise<BenchRow[]>`.
import {readdirSync} from 'node:fs'
import {fileURLToPath, pathToFileURL} from 'node:url'

export interface BenchRow {
  /** What was measured, e.g. "PCRs of 1 GiB EIF (wall)". */
  name: string
  value: number
  unit: string
  /** The peer measured in the same run, when the target is a ratio. */
  peer?: {name: string; value: number}
  /** The target in words, e.g. "<= 2.3x sha384sum" or "< 100 MB". */
  target?: string
  /** Whether the target was met (printed only). */
  pass?: boolean
  /** Why nothing was measured (a case whose inputs are missing): printed instead of the value. */
  skipped?: string
}

const dir = fileURLToPath(new URL('../bench/', import.meta.url))
const only = process.argv.slice(2)
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort()

const rows: (BenchRow & {suite: string})[] = []
for (const file of files) {
  const suite = file.replace(/\.ts$/, '')
  process.stderr.write(`bench: ${suite}…\n`)
  const mod = (await import(pathToFileURL(dir + file).href)) as {default: () => Promise<BenchRow[]>}
  for (const row of await mod.default()) rows.push({suite, ...row})
}

const fmt = (n: number): string => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 1 ? n.toFixed(2) : n.toPrecision(3))
const out = rows.map((r) => [
  r.suite,
  r.name,
  r.skipped === undefined ? `${fmt(r.value)} ${r.unit}` : `skipped: ${r.skipped}`,
  r.peer ? `${r.peer.name}: ${fmt(r.peer.value)} ${r.unit}` : '',
  r.peer && r.peer.value > 0 ? `${(r.value / r.peer.value).toFixed(2)}x` : '',
  r.target ?? '',
  r.pass === undefined ? '' : r.pass ? 'met' : 'MISSED',
])
const header = ['suite', 'measurement', 'value', 'peer (same run)', 'ratio', 'target', '']
const widths = header.map((h, i) => Math.max(h.length, ...out.map((r) => (r[i] ?? '').length)))
for (const line of [header, ...out]) console.log(line.map((c, i) => (c ?? '').padEnd(widths[i] ?? 0)).join('  ').trimEnd())
if (process.argv.includes('--json')) console.log(JSON.stringify(rows, null, 2))
