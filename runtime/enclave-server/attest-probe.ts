// Attestation probe: the application of the QEMU boot check (test/qemu-boot.test.ts).
//
// Runs inside the enclave image (QEMU's nitro-enclave machine, or a real enclave) and uses nle's
// production NSM client — the /dev/nsm ioctl through koffi, not the simulator — to:
//   1. announce itself on the console: `NLE-PROBE READY`;
//   2. read one challenge line from stdin (the serial console):
//        NLE-CHALLENGE nonce=<base64> user_data=<base64> public_key=<base64>
//      The challenge comes from outside at run time so the image (and its PCRs) stays the same;
//   3. DescribeNSM, then Attestation with that nonce, user_data and public key;
//   4. print, between `NLE-PROBE BEGIN` and `NLE-PROBE END`: the DescribeNSM answer as JSON, the
//      document as base64 in 64-character `NLE-DOC` lines, and the document's SHA-256 (so a line
//      mangled on the console is detected rather than misparsed);
//   5. exit (0 on success; `NLE-PROBE ERROR …` and 1 otherwise). The image's init powers off.
import {createHash} from 'node:crypto'
import {createInterface} from 'node:readline'

import {NsmDevice} from '../../src/lib/attestation/nsm-device.js'
import {PROBE_MARKERS} from './attest-probe-protocol.js'


const LINE = 64

function out(line: string): void {
  process.stdout.write(`${line}\n`)
}

function parseChallenge(line: string): {nonce: Uint8Array; userData: Uint8Array; publicKey: Uint8Array} {
  const fields = new Map<string, string>()
  for (const part of line.trim().split(/\s+/).slice(1)) {
    const eq = part.indexOf('=')
    if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1))
  }
  const get = (name: string): Uint8Array => {
    const value = fields.get(name)
    if (value === undefined) throw new Error(`challenge has no ${name}`)
    return new Uint8Array(Buffer.from(value, 'base64'))
  }
  return {nonce: get('nonce'), userData: get('user_data'), publicKey: get('public_key')}
}

async function readChallenge(): Promise<string> {
  const rl = createInterface({input: process.stdin, terminal: false})
  try {
    for await (const line of rl) {
      const at = line.indexOf(PROBE_MARKERS.challenge)
      if (at >= 0) return line.slice(at)
    }
  } finally {
    rl.close()
  }
  throw new Error('stdin closed before a challenge arrived')
}

async function main(): Promise<number> {
  out(PROBE_MARKERS.ready)
  const challenge = parseChallenge(await readChallenge())
  const nsm = NsmDevice.open()
  try {
    const description = await nsm.describeNsm()
    const document = await nsm.attestation(challenge)
    const b64 = Buffer.from(document).toString('base64')
    out(PROBE_MARKERS.begin)
    out(`${PROBE_MARKERS.describe} ${JSON.stringify(description)}`)
    for (let i = 0; i < b64.length; i += LINE) out(`${PROBE_MARKERS.doc} ${b64.slice(i, i + LINE)}`)
    out(`${PROBE_MARKERS.sha256} ${createHash('sha256').update(document).digest('hex')}`)
    out(PROBE_MARKERS.end)
    return 0
  } finally {
    await nsm.close()
  }
}

try {
  process.exitCode = await main()
} catch (error) {
  const e = error as {code?: unknown; message?: unknown}
  out(`${PROBE_MARKERS.error} ${typeof e.code === 'string' ? e.code : 'ERROR'} ${String(e.message ?? error).replace(/\s+/g, ' ')}`)
  process.exitCode = 1
}
