// Child process for bench/eif.ts: computes the PCRs of one EIF and reports its own wall time and
// peak RSS, so the measurement covers only the reader (plus the Node baseline, reported apart).
import {readEif} from '../src/lib/eif/reader.js'

const path = process.argv[2]
if (path === undefined) {
  // Baseline: the same process with the same modules loaded, doing nothing.
  process.stdout.write(JSON.stringify({maxRssKb: process.resourceUsage().maxRSS}) + '\n')
} else {
  const t0 = performance.now()
  const info = await readEif(path)
  const ms = performance.now() - t0
  process.stdout.write(JSON.stringify({ms, maxRssKb: process.resourceUsage().maxRSS, pcr0: info.measurements.PCR0, crcOk: info.crc.ok}) + '\n')
}
