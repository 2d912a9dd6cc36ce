import {createHash} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {codeOf} from '../../test-support/attestation.js'
import {randomSpec} from '../../test-support/eif.js'
import {tempDir} from '../../test-support/tmp.js'
import {writeEif} from '../eif/writer.js'
import {type Lockfile, writeLockfile} from '../lockfile.js'
import {cborDecode, cborEncode, toHex} from './cbor.js'
import {decodeCoseSign1} from './cose.js'
import {parseAttestationPayload} from './document.js'
import {decodeNsmResponse, encodeNsmRequest} from './nsm-protocol.js'
import {NsmSimulator} from './simulator.js'
import {type ExpectedPcrs, verifyAttestation} from './verify.js'

const h = (c: string): string => c.repeat(96)
const MEASUREMENTS = {PCR0: h('1'), PCR1: h('2'), PCR2: h('3'), PCR8: h('4')}
const EXPECTED: ExpectedPcrs = {...MEASUREMENTS}
const MINUTE = 60_000

describe('NsmSimulator documents', () => {
  const sim = new NsmSimulator({measurements: MEASUREMENTS, extraPcrs: {3: h('5'), 4: h('6')}})

  it('verify with the simulator root and are refused under the AWS root', async () => {
    const doc = await sim.attestation()
    const r = await verifyAttestation(doc, {expectedPcrs: {...EXPECTED, PCR3: h('5'), PCR4: h('6')}, expectedNonce: null, maxAgeMs: MINUTE, insecureDevRoot: sim.root})
    expect(r.moduleId).toBe(sim.moduleId)
    expect(r.debug).toBe(false)
    expect(r.chain).toHaveLength(5)
    expect(await codeOf(() => verifyAttestation(doc, {expectedPcrs: EXPECTED, expectedNonce: null, maxAgeMs: MINUTE}))).toBe('ATTEST_ROOT_MISMATCH')
  })

  it("have AWS's shape: untagged COSE_Sign1 ES384, the same payload fields in the same order, PCRs 0..15, a 4-certificate bundle", async () => {
    const doc = await sim.attestation({userData: new Uint8Array([1]), nonce: new Uint8Array([2]), publicKey: new Uint8Array([3])})
    expect(toHex(doc.subarray(0, 7))).toBe('8444a1013822a0')
    expect(sim.moduleId).toMatch(/^i-[0-9a-f]{17}-enc[0-9a-f]{16}$/)
    const payload = decodeCoseSign1(doc).payload
    expect([...(cborDecode(payload) as Map<string, unknown>).keys()]).toEqual(['module_id', 'digest', 'timestamp', 'pcrs', 'certificate', 'cabundle', 'public_key', 'user_data', 'nonce'])
    const parsed = parseAttestationPayload(payload)
    expect([...parsed.pcrs.keys()]).toEqual([...Array(16).keys()])
    expect(parsed.cabundle).toHaveLength(4)
    expect(parsed.pcrs.get(0)).toEqual(new Uint8Array(Buffer.from(h('1'), 'hex')))
    expect([parsed.userData, parsed.nonce, parsed.publicKey].map((b) => b && toHex(b))).toEqual(['01', '02', '03'])
    // timestamp is written as a CBOR uint64, as the NSM writes it.
    expect(toHex(payload)).toContain('6974696d657374616d701b')
  })

  it('are refused once the injected clock moves past the maximum age or the leaf lifetime', async () => {
    let clock = Date.now()
    const timed = new NsmSimulator({measurements: MEASUREMENTS, now: () => clock})
    const doc = await timed.attestation()
    const policy = {expectedPcrs: EXPECTED, expectedNonce: null, insecureDevRoot: timed.root}
    expect(await codeOf(() => verifyAttestation(doc, {...policy, maxAgeMs: 5 * MINUTE, at: clock + 6 * MINUTE}))).toBe('ATTEST_TOO_OLD')
    expect(await codeOf(() => verifyAttestation(doc, {...policy, maxAgeMs: 24 * 60 * MINUTE, at: clock + 4 * 60 * MINUTE}))).toBe('ATTEST_CERT_EXPIRED')
    clock += 10 * MINUTE
    expect(await codeOf(async () => verifyAttestation(await timed.attestation(), {...policy, maxAgeMs: MINUTE, at: clock - 10 * MINUTE}))).toBe('ATTEST_FROM_FUTURE')
  })

  it('debug mode zeroes PCR0/1/2/8: refused unless allowDebug', async () => {
    const dbg = new NsmSimulator({measurements: MEASUREMENTS, debug: true})
    const doc = await dbg.attestation()
    const pcrs = parseAttestationPayload(decodeCoseSign1(doc).payload).pcrs
    for (const i of [0, 1, 2, 8]) expect(pcrs.get(i)!.every((b) => b === 0), `PCR${i}`).toBe(true)
    const policy = {expectedPcrs: EXPECTED, expectedNonce: null, maxAgeMs: MINUTE, insecureDevRoot: dbg.root}
    expect(await codeOf(() => verifyAttestation(doc, policy))).toBe('ATTEST_DEBUG_ENCLAVE')
    const r = await verifyAttestation(doc, {...policy, allowDebug: true})
    expect(r.debug).toBe(true)
    expect(r.pcrChecks.filter((c) => c.expected !== null).map((c) => c.status)).toEqual(['debug-zero', 'debug-zero', 'debug-zero', 'debug-zero'])
  })

  it('takes PCR0/1/2 from an EIF file', async () => {
    const tmp = tempDir()
    try {
      const built = await writeEif(`${tmp.dir}/image.eif`, randomSpec(7))
      const sim = await NsmSimulator.fromEif(`${tmp.dir}/image.eif`)
      for (const i of [0, 1, 2] as const) expect(toHex((await sim.describePcr(i)).data)).toBe(built.measurements[`PCR${i}`])
    } finally {
      tmp.cleanup()
    }
  })

  it('refuses an EIF whose contents do not match its CRC (nothing damaged is measured into documents)', async () => {
    const tmp = tempDir()
    try {
      const path = `${tmp.dir}/image.eif`
      await writeEif(path, randomSpec(8))
      const bytes = readFileSync(path)
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1
      writeFileSync(path, bytes)
      expect(await codeOf(() => NsmSimulator.fromEif(path))).toBe('EIF_BAD_CRC')
    } finally {
      tmp.cleanup()
    }
  })

  it('takes PCR0/1/2/8 from a measurements lockfile', async () => {
    const tmp = tempDir()
    try {
      const lock: Lockfile = {
        version: 1,
        measurements: {PCR0: h('a'), PCR1: h('b'), PCR2: h('c')},
        eif: {sha384: h('e'), size: 1, version: 4, signed: false},
        builder: {name: 'nle', version: '0.1.0'},
        inputs: {},
      }
      await writeLockfile(`${tmp.dir}/nle.lock.json`, lock)
      const fromLock = await NsmSimulator.fromLockfile(`${tmp.dir}/nle.lock.json`)
      expect(toHex((await fromLock.describePcr(2)).data)).toBe(h('c'))
      const r = await verifyAttestation(await fromLock.attestation(), {expectedPcrs: lock.measurements, expectedNonce: null, maxAgeMs: MINUTE, insecureDevRoot: fromLock.root})
      expect(r.pcrChecks.find((c) => c.index === 0)?.status).toBe('match')
    } finally {
      tmp.cleanup()
    }
  })
})

describe('NsmSimulator as an NSM', () => {
  it('describes itself like a Nitro NSM: 32 SHA-384 PCRs, 0..15 locked', async () => {
    const sim = new NsmSimulator({moduleId: 'i-0123456789abcdef0-enc0123456789abcdef'})
    expect(await sim.describeNsm()).toEqual({versionMajor: 1, versionMinor: 0, versionPatch: 0, moduleId: 'i-0123456789abcdef0-enc0123456789abcdef', maxPcrs: 32, lockedPcrs: [...Array(16).keys()], digest: 'SHA384'})
    expect(await sim.describePcr(16)).toEqual({lock: false, data: new Uint8Array(48)})
    expect((await sim.describePcr(0)).lock).toBe(true)
  })

  it('extends PCR16..31 as SHA-384(old ‖ data), locks them, and refuses boot PCRs and out-of-range indexes', async () => {
    const sim = new NsmSimulator()
    const data = new Uint8Array([1, 2, 3])
    const want = createHash('sha384').update(new Uint8Array(48)).update(data).digest()
    expect(toHex(await sim.extendPcr(16, data))).toBe(want.toString('hex'))
    expect(toHex((await sim.describePcr(16)).data)).toBe(want.toString('hex'))
    await sim.lockPcr(16)
    expect((await sim.describePcr(16)).lock).toBe(true)
    const nsmError = async (fn: () => Promise<unknown>): Promise<unknown> => {
      try {
        await fn()
      } catch (error) {
        return (error as {code: string; details?: {nsmError?: string}}).code + ':' + (error as {details?: {nsmError?: string}}).details?.nsmError
      }
      return 'no error'
    }
    expect(await nsmError(() => sim.extendPcr(16, data))).toBe('ATTEST_NSM_ERROR:ReadOnlyIndex')
    expect(await nsmError(() => sim.extendPcr(0, data))).toBe('ATTEST_NSM_ERROR:ReadOnlyIndex')
    expect(await nsmError(() => sim.lockPcr(3))).toBe('ATTEST_NSM_ERROR:ReadOnlyIndex')
    expect(await nsmError(() => sim.describePcr(32))).toBe('ATTEST_NSM_ERROR:InvalidIndex')
    expect(await nsmError(() => sim.lockPcrs(33))).toBe('ATTEST_NSM_ERROR:InvalidIndex')
    await sim.lockPcrs(32)
    expect((await sim.describeNsm()).lockedPcrs).toEqual([...Array(32).keys()])
    // Locked PCRs beyond 15 appear in documents too ("all locked PCRs").
    expect([...parseAttestationPayload(decodeCoseSign1(await sim.attestation()).payload).pcrs.keys()]).toHaveLength(32)
  })

  it('returns 256 random bytes per GetRandom', async () => {
    const sim = new NsmSimulator()
    const a = await sim.getRandom()
    expect(a).toHaveLength(256)
    expect(toHex(a)).not.toBe(toHex(await sim.getRandom()))
  })

  it('answers raw request bytes as the device does, including errors', () => {
    const sim = new NsmSimulator()
    const ask = (bytes: Uint8Array): unknown => decodeNsmResponse(sim.handle(bytes))
    expect(ask(encodeNsmRequest({type: 'LockPCR', index: 20}))).toEqual({type: 'LockPCR'})
    expect(ask(cborEncode('Reboot'))).toEqual({type: 'Error', error: 'InvalidOperation'})
    expect(ask(new Uint8Array([0xff]))).toEqual({type: 'Error', error: 'InvalidArgument'})
    expect(ask(cborEncode(new Map([['DescribePCR', new Map([['index', 'x']])]])))).toEqual({type: 'Error', error: 'InvalidArgument'})
    expect(ask(new Uint8Array(0x1001))).toEqual({type: 'Error', error: 'InputTooLarge'})
    const big = encodeNsmRequest({type: 'Attestation', userData: null, nonce: new Uint8Array(1025), publicKey: null})
    expect(ask(big)).toEqual({type: 'Error', error: 'InputTooLarge'})
  })

  it('the client refuses oversized attestation fields before sending', async () => {
    const sim = new NsmSimulator()
    expect(await codeOf(() => sim.attestation({nonce: new Uint8Array(1025)}))).toBe('ATTEST_NSM_BAD_REQUEST')
    expect((await sim.attestation({nonce: new Uint8Array(1024), userData: new Uint8Array(1024), publicKey: new Uint8Array(1024)})).length).toBeGreaterThan(3072)
  })
})
