// The serial-console protocol between the attest probe (attest-probe.ts, inside the QEMU guest)
// and the boot-check harness (test/qemu/run.ts): one definition for both sides.
export const PROBE_MARKERS = {
  ready: 'NLE-PROBE READY',
  challenge: 'NLE-CHALLENGE',
  begin: 'NLE-PROBE BEGIN',
  describe: 'NLE-DESCRIBE',
  doc: 'NLE-DOC',
  sha256: 'NLE-DOC-SHA256',
  end: 'NLE-PROBE END',
  error: 'NLE-PROBE ERROR',
} as const
