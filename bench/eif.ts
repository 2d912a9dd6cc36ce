// PCRs of a generated 1 GiB EIF: wall time against `sha384sum` over the same file in the same run,
// and the peak RSS of the PCR computation (measured in a child process).
import {execFile} from 'node:child_process'
import {randomFillSync} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import type {BenchRow} from '../scripts/bench.js'
import {writeEif} from '../src/lib/eif/writer.js'

const run = promisify(execFile)
const GIB = 1024 * 1024 * 1024
const CHILD = fileURLToPath(new URL('./_eif-child.ts', import.meta.url))

/** `size` bytes of pseudo-random content in 8 MiB chunks (one buffer, refilled). */
function random(size: number): () => AsyncIterable<Buffer> {
  return async function* () {
    const buf = Buffer.allocUnsafe(8 * 1024 * 1024)
    for (let left = size; left > 0; left -= buf.length) yield randomFillSync(buf).subarray(0, Math.min(buf.length, left))
  }
}

async function child(args: string[]): Promise<{ms?: number; maxRssKb: number; pcr0?: string; crcOk?: boolean}> {
  const {stdout} = await run(process.execPath, ['--import', 'tsx', CHILD, ...args], {maxBuffer: 1 << 20})
  return JSON.parse(stdout) as {ms?: number; maxRssKb: number; pcr0?: string; crcOk?: boolean}
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

export default async function bench(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'nle-bench-eif-'))
  try {
    const eif = join(dir, 'bench.eif')
    // A realistic shape: a kernel, a small bootstrap ramdisk and one large application ramdisk.
    const kernel = 8 * 1024 * 1024
    const boot = 4 * 1024 * 1024
    await writeEif(eif, {
      kernel: {chunks: random(kernel)},
      cmdline: 'reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on',
      ramdisks: [{chunks: random(boot)}, {chunks: random(GIB - kernel - boot - 4096)}],
      metadata: {imageName: 'bench', imageVersion: '1'},
    })
    await run('sha384sum', [eif]) // warm the page cache for both
    const rounds = 3
    let sha = Infinity
    let pcr = Infinity
    let rss = 0
    for (let i = 0; i < rounds; i++) {
      sha = Math.min(sha, await time(() => run('sha384sum', [eif])))
      const r = await child([eif])
      if (!r.crcOk) throw new Error('bench EIF failed its CRC check')
      pcr = Math.min(pcr, r.ms!)
      rss = Math.max(rss, r.maxRssKb)
    }
    const baseline = await child([])
    const mb = (kb: number): number => kb / 1024
    return [
      {name: 'PCRs of 1 GiB EIF (wall, best of 3)', value: pcr, unit: 'ms', peer: {name: 'sha384sum', value: sha}, target: '<= 2.3x sha384sum', pass: pcr <= 2.3 * sha},
      {name: 'PCRs of 1 GiB EIF (peak RSS, child)', value: mb(rss), unit: 'MB', peer: {name: 'same child, idle', value: mb(baseline.maxRssKb)}, target: '< 100 MB', pass: mb(rss) < 100},
    ]
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}
