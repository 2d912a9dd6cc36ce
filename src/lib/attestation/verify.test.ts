import {randomBytes} from 'node:crypto'

import {Tag} from 'cbor-x'
import {describe, expect, it} from 'vitest'

import {HAVE_VECTORS, VECTORS, codeOf, describeVectors, expectedOf, vector} from '../../test-support/attestation.js'
import {isNleError} from '../errors.js'
import {cborDecode, cborEncode} from './cbor.js'
import {signCoseSign1} from './cose.js'
import {type AttestationDocument, encodeAttestationPayload, parseAttestationPayload} from './document.js'
import {AWS_NITRO_ROOT_G1} from './roots.js'
import {type CertSpec, type DevChain, NsmSimulator, createDevChain} from './simulator.js'
import {type ExpectedPcrs, type VerificationPolicy, verifyAttestation} from './verify.js'

const MINUTE = 60_000
const turnkey = vector('turnkey_prod_attestation.bin')

/** The policy under which a real vector is genuine: its own PCRs, its own time. */
function policyFor(v: (typeof VECTORS)[number], extra: Partial<VerificationPolicy> = {}): VerificationPolicy {
  return {expectedPcrs: expectedOf(v), expectedNonce: null, maxAgeMs: MINUTE, at: v.timestampMs, allowDebug: v.debug, ...extra}
}

/** A real document with its payload re-encoded after an edit (the signature then no longer matches). */
function withPayload(bytes: Uint8Array, edit: (m: Map<string, unknown>) => void): Uint8Array {
  const parts = cborDecode(bytes) as unknown[]
  const map = cborDecode(parts[2] as Uint8Array) as Map<string, unknown>
  edit(map)
  return cborEncode([parts[0], parts[1], cborEncode(map), parts[3]])
}

/** A correctly signed document over `doc`, with the leaf key of `chain`. */
function signedWith(chain: DevChain, doc: Partial<AttestationDocument> & {pcrs: Map<number, Uint8Array>}, timestamp: number): Uint8Array {
  const payload = encodeAttestationPayload({
    moduleId: 'i-0123456789abcdef0-enc0123456789abcdef',
    digest: 'SHA384',
    timestamp,
    certificate: chain.leaf,
    cabundle: chain.cabundle,
    publicKey: null,
    userData: null,
    nonce: null,
    ...doc,
  })
  return signCoseSign1(payload, chain.leafKey)
}

const pcrMap = (values: Record<number, string>): Map<number, Uint8Array> => new Map(Object.entries(values).map(([k, v]) => [Number(k), new Uint8Array(Buffer.from(v, 'hex'))]))
const hex = (c: string): string => c.repeat(96)
const EXPECTED: ExpectedPcrs = {PCR0: hex('a'), PCR1: hex('b'), PCR2: hex('c')}
const devPcrs = (): Map<number, Uint8Array> => pcrMap({0: hex('a'), 1: hex('b'), 2: hex('c'), 3: hex('0'), 4: hex('0'), 8: hex('0')})

describeVectors('real AWS documents', () => {
  const genuine = VECTORS.filter((v) => v.expected === 'valid')
  expect(genuine).toHaveLength(6)

  it.each(genuine.map((v) => [v.file, v] as const))('%s verifies at its own timestamp', async (_f, v) => {
    const r = await verifyAttestation(v.bytes, policyFor(v))
    expect(r.moduleId).toBe(v.moduleId)
    expect(r.timestamp.getTime()).toBe(v.timestampMs)
    expect(r.debug).toBe(v.debug)
    expect(r.root).toBe('aws-nitro-enclaves-root-g1')
    expect(r.chain).toHaveLength(5)
    expect(r.chain[0]!.subject).toBe('C=US, O=Amazon, OU=AWS, CN=aws.nitro-enclaves')
    expect(r.chain.map((c) => c.role)).toEqual(['root', 'intermediate', 'intermediate', 'intermediate', 'leaf'])
    expect(r.pcrChecks.filter((c) => c.expected !== null).every((c) => c.status === 'match')).toBe(true)
    for (const [i, value] of Object.entries(r.pcrs)) expect(value).toBe(v.pcrs[i])
  })

  it.each(VECTORS.map((v) => [v.file, v] as const))('%s is refused now as expired', async (_f, v) => {
    expect(await codeOf(() => verifyAttestation(v.bytes, policyFor(v, {at: undefined})))).toBe('ATTEST_CERT_EXPIRED')
  })

  it.each(genuine.map((v) => [v.file, v] as const))('%s is refused a day before it was made as not yet valid', async (_f, v) => {
    expect(await codeOf(() => verifyAttestation(v.bytes, policyFor(v, {at: v.timestampMs - 24 * 60 * MINUTE})))).toBe('ATTEST_CERT_NOT_YET_VALID')
  })

  it('the known-bad document (valid chain, bad signature) fails on its signature', async () => {
    const bad = vector('eternis_invalid_attestation_debug.bin')
    expect(bad.expected).toBe('invalid')
    expect(await codeOf(() => verifyAttestation(bad.bytes, policyFor(bad, {allowDebug: true})))).toBe('ATTEST_BAD_SIGNATURE')
  })

  it('debug-mode documents pass only with allowDebug', async () => {
    const debugDocs = genuine.filter((v) => v.debug)
    expect(debugDocs.length).toBe(3)
    for (const v of debugDocs) {
      expect(await codeOf(() => verifyAttestation(v.bytes, policyFor(v, {allowDebug: false}))), v.file).toBe('ATTEST_DEBUG_ENCLAVE')
      expect(await codeOf(() => verifyAttestation(v.bytes, policyFor(v, {allowDebug: undefined}))), v.file).toBe('ATTEST_DEBUG_ENCLAVE')
      expect((await verifyAttestation(v.bytes, policyFor(v, {allowDebug: true}))).debug).toBe(true)
    }
    // A production document is not affected by allowDebug.
    expect((await verifyAttestation(turnkey.bytes, policyFor(turnkey, {allowDebug: false}))).debug).toBe(false)
  })

  it('with allowDebug, a debug enclave matches the lockfile measurements it cannot report (zeroed PCR0/1/2/8), but other PCRs still count', async () => {
    const v = vector('evervault_debug_mode_attestation_doc.bin')
    const lockfileLike = {...EXPECTED, PCR8: hex('d'), PCR3: v.pcrs['3']!}
    const r = await verifyAttestation(v.bytes, policyFor(v, {expectedPcrs: lockfileLike, allowDebug: true}))
    expect(r.pcrChecks.filter((c) => [0, 1, 2, 8].includes(c.index)).map((c) => c.status)).toEqual(['debug-zero', 'debug-zero', 'debug-zero', 'debug-zero'])
    expect(r.pcrChecks.find((c) => c.index === 3)?.status).toBe('match')
    expect(await codeOf(() => verifyAttestation(v.bytes, policyFor(v, {expectedPcrs: {...lockfileLike, PCR3: hex('e')}, allowDebug: true})))).toBe('ATTEST_PCR_MISMATCH')
    expect(await codeOf(() => verifyAttestation(v.bytes, policyFor(v, {expectedPcrs: lockfileLike, allowDebug: false})))).toBe('ATTEST_DEBUG_ENCLAVE')
  })

  it('returns the verified public_key / user_data / nonce', async () => {
    const r = await verifyAttestation(turnkey.bytes, policyFor(turnkey))
    expect(r.publicKey?.length).toBe(130)
    expect(r.userData?.length).toBe(32)
    expect(r.nonce).toBeNull()
    const e = vector('eternis_example_attestation_debug.bin')
    const nonce = (await verifyAttestation(e.bytes, policyFor(e))).nonce!
    expect(nonce.length).toBe(20)
    // The nonce the document carries is the one checked.
    expect((await verifyAttestation(e.bytes, policyFor(e, {expectedNonce: nonce}))).nonce).toEqual(nonce)
  })

  it('accepts the tag-18 form of a real document', async () => {
    const tagged = cborEncode(new Tag(cborDecode(turnkey.bytes), 18))
    expect((await verifyAttestation(tagged, policyFor(turnkey))).moduleId).toBe(turnkey.moduleId)
  })
})

describeVectors('single-byte mutations of a real document are all refused', () => {
  const doc = Buffer.from(turnkey.bytes)
  const parsed = parseAttestationPayload((cborDecode(doc) as Uint8Array[])[2]!)
  const regions: {name: string; start: number; end: number; step: number}[] = []
  const at = (bytes: Uint8Array): number => doc.indexOf(Buffer.from(bytes))
  regions.push({name: 'COSE headers', start: 0, end: 10, step: 1})
  const leafAt = at(parsed.certificate)
  regions.push({name: 'leaf certificate', start: leafAt, end: leafAt + parsed.certificate.length, step: 6})
  parsed.cabundle.forEach((c, i) => {
    const s = at(c)
    regions.push({name: `cabundle[${i}]`, start: s, end: s + c.length, step: 12})
  })
  const certStart = Math.min(...regions.slice(1).map((r) => r.start))
  regions.push({name: 'payload fields (module_id, digest, timestamp, pcrs)', start: 10, end: certStart, step: 4})
  const lastCertEnd = Math.max(...regions.slice(1).map((r) => r.end))
  regions.push({name: 'payload optionals', start: lastCertEnd, end: doc.length - 98, step: 4})
  regions.push({name: 'signature header and r‖s', start: doc.length - 98, end: doc.length, step: 1})

  const positions = [...new Set(regions.flatMap((r) => Array.from({length: Math.ceil((r.end - r.start) / r.step)}, (_, k) => r.start + k * r.step)))].sort((a, b) => a - b)

  it('the unmutated document verifies (so every refusal below is due to the mutation)', async () => {
    expect((await verifyAttestation(doc, policyFor(turnkey))).moduleId).toBe(turnkey.moduleId)
    expect(regions.every((r) => r.start >= 0 && r.end > r.start)).toBe(true)
  })

  it(`flipping one bit at each of ${positions.length} positions (≥ 500, in every region) is refused with an NleError`, async () => {
    expect(positions.length).toBeGreaterThanOrEqual(500)
    const codes = new Map<string, number>()
    const accepted: number[] = []
    for (const p of positions) {
      const m = Buffer.from(doc)
      m[p] = m[p]! ^ 0x01
      try {
        await verifyAttestation(m, policyFor(turnkey))
        accepted.push(p)
      } catch (error) {
        expect(isNleError(error), `position ${p}: ${String(error)}`).toBe(true)
        const code = (error as {code: string}).code
        codes.set(code, (codes.get(code) ?? 0) + 1)
      }
    }
    expect(accepted).toEqual([])
    for (const code of codes.keys()) expect(code).toMatch(/^ATTEST_/)
    expect([...codes.keys()]).toEqual(expect.arrayContaining(['ATTEST_COSE_MALFORMED', 'ATTEST_BAD_SIGNATURE', 'ATTEST_ROOT_MISMATCH', 'ATTEST_CHAIN_BROKEN']))
  })

  it('every other value of each COSE header byte and of the signature header is refused', async () => {
    const headerPositions = [...Array(10).keys(), doc.length - 98, doc.length - 97]
    for (const p of headerPositions) {
      for (let value = 0; value < 256; value++) {
        if (value === doc[p]) continue
        const m = Buffer.from(doc)
        m[p] = value
        const code = await codeOf(() => verifyAttestation(m, policyFor(turnkey)))
        expect(code, `position ${p} = 0x${value.toString(16)}`).toMatch(/^ATTEST_/)
      }
    }
  })

  it('truncations and random garbage are refused with NleErrors only', async () => {
    for (let len = 0; len < doc.length; len += 37) {
      expect(await codeOf(() => verifyAttestation(doc.subarray(0, len), policyFor(turnkey)))).toMatch(/^ATTEST_/)
    }
    for (let i = 0; i < 200; i++) {
      const junk = randomBytes(1 + (i % 64) * 7)
      if (i % 2 === 0) junk[0] = 0x84 // look like an array(4) at least
      expect(await codeOf(() => verifyAttestation(junk, policyFor(turnkey)))).toMatch(/^ATTEST_/)
    }
  })
})

describe('certificate chain', () => {
  it.skipIf(!HAVE_VECTORS)('a real document is refused under another root (ATTEST_ROOT_MISMATCH)', async () => {
    const dev = createDevChain()
    expect(await codeOf(() => verifyAttestation(turnkey.bytes, policyFor(turnkey, {insecureDevRoot: dev.root})))).toBe('ATTEST_ROOT_MISMATCH')
  })

  it.skipIf(!HAVE_VECTORS)('reordered or missing intermediates in a real document: ATTEST_CHAIN_BROKEN (checked before the signature)', async () => {
    const reordered = withPayload(turnkey.bytes, (m) => {
      const b = m.get('cabundle') as Uint8Array[]
      m.set('cabundle', [b[0], b[2], b[1], b[3]])
    })
    const missing = withPayload(turnkey.bytes, (m) => {
      const b = m.get('cabundle') as Uint8Array[]
      m.set('cabundle', [b[0], b[1], b[3]])
    })
    const rootOnly = withPayload(turnkey.bytes, (m) => m.set('cabundle', [(m.get('cabundle') as Uint8Array[])[0]]))
    const noRoot = withPayload(turnkey.bytes, (m) => m.set('cabundle', (m.get('cabundle') as Uint8Array[]).slice(1)))
    expect(await codeOf(() => verifyAttestation(reordered, policyFor(turnkey)))).toBe('ATTEST_CHAIN_BROKEN')
    expect(await codeOf(() => verifyAttestation(missing, policyFor(turnkey)))).toBe('ATTEST_CHAIN_BROKEN')
    expect(await codeOf(() => verifyAttestation(rootOnly, policyFor(turnkey)))).toBe('ATTEST_CHAIN_BROKEN')
    expect(await codeOf(() => verifyAttestation(noRoot, policyFor(turnkey)))).toBe('ATTEST_ROOT_MISMATCH')
  })

  describe('with properly signed documents from an ephemeral chain', () => {
    const now = Date.now()
    const policy = (chain: DevChain): VerificationPolicy => ({expectedPcrs: EXPECTED, expectedNonce: null, maxAgeMs: MINUTE, at: now, insecureDevRoot: chain.root})

    it('the well-formed chain verifies (the baseline)', async () => {
      const chain = createDevChain({now})
      expect((await verifyAttestation(signedWith(chain, {pcrs: devPcrs()}, now), policy(chain))).chain).toHaveLength(5)
    })

    it('reordered intermediates: ATTEST_CHAIN_BROKEN', async () => {
      const chain = createDevChain({now})
      const b = chain.cabundle
      const doc = signedWith(chain, {pcrs: devPcrs(), cabundle: [b[0]!, b[2]!, b[1]!, b[3]!]}, now)
      expect(await codeOf(() => verifyAttestation(doc, policy(chain)))).toBe('ATTEST_CHAIN_BROKEN')
    })

    it('a missing intermediate: ATTEST_CHAIN_BROKEN', async () => {
      const chain = createDevChain({now})
      const b = chain.cabundle
      const doc = signedWith(chain, {pcrs: devPcrs(), cabundle: [b[0]!, b[1]!, b[3]!]}, now)
      expect(await codeOf(() => verifyAttestation(doc, policy(chain)))).toBe('ATTEST_CHAIN_BROKEN')
    })

    it('an intermediate with the right name but another key (forged): ATTEST_CHAIN_BROKEN', async () => {
      const names: [string, string][][] = []
      const fixNames = (i: number, s: CertSpec): CertSpec => {
        names[i] ??= s.subject
        return {...s, subject: names[i]!}
      }
      const a = createDevChain({now, tweak: fixNames})
      const b = createDevChain({now, tweak: fixNames})
      const forged: DevChain = {...b, cabundle: [a.cabundle[0]!, a.cabundle[1]!, b.cabundle[2]!, b.cabundle[3]!]}
      expect(await codeOf(() => verifyAttestation(signedWith(forged, {pcrs: devPcrs()}, now), policy(a)))).toBe('ATTEST_CHAIN_BROKEN')
    })

    it('a leaf that is a CA: ATTEST_LEAF_IS_CA', async () => {
      const chain = createDevChain({now, leafIsCa: true})
      expect(await codeOf(() => verifyAttestation(signedWith(chain, {pcrs: devPcrs()}, now), policy(chain)))).toBe('ATTEST_LEAF_IS_CA')
    })

    it('a path length constraint exceeded, or an intermediate that is not a CA: ATTEST_CERT_CONSTRAINTS', async () => {
      const pathLen = createDevChain({now, tweak: (i, s) => (i === 2 ? {...s, pathLen: 0} : s)})
      expect(await codeOf(() => verifyAttestation(signedWith(pathLen, {pcrs: devPcrs()}, now), policy(pathLen)))).toBe('ATTEST_CERT_CONSTRAINTS')
      const notCa = createDevChain({now, tweak: (i, s) => (i === 3 ? {...s, ca: false} : s)})
      expect(await codeOf(() => verifyAttestation(signedWith(notCa, {pcrs: devPcrs()}, now), policy(notCa)))).toBe('ATTEST_CERT_CONSTRAINTS')
      const noCertSign = createDevChain({now, tweak: (i, s) => (i === 1 ? {...s, keyUsage: 1} : s)})
      expect(await codeOf(() => verifyAttestation(signedWith(noCertSign, {pcrs: devPcrs()}, now), policy(noCertSign)))).toBe('ATTEST_CERT_CONSTRAINTS')
    })

    it('a leaf without digitalSignature, or any certificate with an unknown critical extension: ATTEST_CERT_CONSTRAINTS', async () => {
      const noSign = createDevChain({now, tweak: (i, s) => (i === 4 ? {...s, keyUsage: 2} : s)})
      expect(await codeOf(() => verifyAttestation(signedWith(noSign, {pcrs: devPcrs()}, now), policy(noSign)))).toBe('ATTEST_CERT_CONSTRAINTS')
      const nullValue = new Uint8Array([0x05, 0x00])
      const unknown = createDevChain({now, tweak: (i, s) => (i === 2 ? {...s, extraExtensions: [{oid: '1.3.6.1.4.1.99999.1', critical: true, value: nullValue}]} : s)})
      expect(await codeOf(() => verifyAttestation(signedWith(unknown, {pcrs: devPcrs()}, now), policy(unknown)))).toBe('ATTEST_CERT_CONSTRAINTS')
      const nonCritical = createDevChain({now, tweak: (i, s) => (i === 2 ? {...s, extraExtensions: [{oid: '1.3.6.1.4.1.99999.1', critical: false, value: nullValue}]} : s)})
      expect((await verifyAttestation(signedWith(nonCritical, {pcrs: devPcrs()}, now), policy(nonCritical))).chain).toHaveLength(5)
    })

    it('an expired intermediate: ATTEST_CERT_EXPIRED', async () => {
      const chain = createDevChain({now, tweak: (i, s) => (i === 2 ? {...s, notAfter: now - 1000} : s)})
      expect(await codeOf(() => verifyAttestation(signedWith(chain, {pcrs: devPcrs()}, now), policy(chain)))).toBe('ATTEST_CERT_EXPIRED')
    })
  })
})

describe('policy', () => {
  it.skipIf(!HAVE_VECTORS)('a PCR different from the expectation: ATTEST_PCR_MISMATCH, with every PCR marked', async () => {
    const wrong = {...expectedOf(turnkey), PCR2: hex('0')}
    try {
      await verifyAttestation(turnkey.bytes, policyFor(turnkey, {expectedPcrs: wrong}))
      expect.unreachable()
    } catch (error) {
      expect(isNleError(error) && error.code).toBe('ATTEST_PCR_MISMATCH')
      const checks = (error as {details: {pcrs: {index: number; status: string}[]}}).details.pcrs
      expect(checks.find((c) => c.index === 2)?.status).toBe('mismatch')
      expect(checks.find((c) => c.index === 0)?.status).toBe('match')
    }
    // Optional expectations count when given; uppercase hex is fine.
    expect(await codeOf(() => verifyAttestation(turnkey.bytes, policyFor(turnkey, {expectedPcrs: {...expectedOf(turnkey), PCR4: hex('1')}})))).toBe('ATTEST_PCR_MISMATCH')
    const upper = Object.fromEntries(Object.entries(expectedOf(turnkey)).map(([k, v]) => [k, (v as string).toUpperCase()])) as unknown as ExpectedPcrs
    expect((await verifyAttestation(turnkey.bytes, policyFor(turnkey, {expectedPcrs: upper}))).moduleId).toBe(turnkey.moduleId)
    // Only PCR0..2 given: the rest are shown but not checked.
    const r = await verifyAttestation(turnkey.bytes, policyFor(turnkey, {expectedPcrs: expectedOf(turnkey, [0, 1, 2])}))
    expect(r.pcrChecks.find((c) => c.index === 3)?.status).toBe('unchecked')
  })

  it('an expected PCR the document does not carry: ATTEST_PCR_MISSING', async () => {
    const chain = createDevChain()
    const now = Date.now()
    const doc = signedWith(chain, {pcrs: pcrMap({0: hex('a'), 1: hex('b'), 2: hex('c')})}, now)
    const policy = {expectedPcrs: {...EXPECTED, PCR8: hex('d')}, expectedNonce: null, maxAgeMs: MINUTE, at: now, insecureDevRoot: chain.root}
    expect(await codeOf(() => verifyAttestation(doc, policy))).toBe('ATTEST_PCR_MISSING')
  })

  it('the nonce must be the one sent: ATTEST_NONCE_MISMATCH', async () => {
    const sim = new NsmSimulator({measurements: {PCR0: hex('a'), PCR1: hex('b'), PCR2: hex('c')}})
    const sent = new Uint8Array(randomBytes(32))
    const base = {expectedPcrs: EXPECTED, maxAgeMs: MINUTE, insecureDevRoot: sim.root}
    const answered = await sim.attestation({nonce: sent})
    expect((await verifyAttestation(answered, {...base, expectedNonce: sent})).nonce).toEqual(sent)
    expect(await codeOf(async () => verifyAttestation(answered, {...base, expectedNonce: new Uint8Array(randomBytes(32))}))).toBe('ATTEST_NONCE_MISMATCH')
    expect(await codeOf(async () => verifyAttestation(await sim.attestation(), {...base, expectedNonce: sent}))).toBe('ATTEST_NONCE_MISMATCH')
    expect(await codeOf(async () => verifyAttestation(await sim.attestation({nonce: sent.subarray(0, 31)}), {...base, expectedNonce: sent}))).toBe('ATTEST_NONCE_MISMATCH')
  })

  it.skipIf(!HAVE_VECTORS)('a document older than maxAge: ATTEST_TOO_OLD; one dated after the verification time: ATTEST_FROM_FUTURE', async () => {
    expect(await codeOf(() => verifyAttestation(turnkey.bytes, policyFor(turnkey, {at: turnkey.timestampMs + 10 * MINUTE, maxAgeMs: 5 * MINUTE})))).toBe('ATTEST_TOO_OLD')
    expect((await verifyAttestation(turnkey.bytes, policyFor(turnkey, {at: turnkey.timestampMs + 4 * MINUTE, maxAgeMs: 5 * MINUTE}))).ageMs).toBe(4 * MINUTE)
    expect(await codeOf(() => verifyAttestation(turnkey.bytes, policyFor(turnkey, {at: turnkey.timestampMs - 5 * MINUTE})))).toBe('ATTEST_FROM_FUTURE')
    expect((await verifyAttestation(turnkey.bytes, policyFor(turnkey, {at: turnkey.timestampMs - 30_000}))).ageMs).toBe(-30_000)
  })

  it.skipIf(!HAVE_VECTORS)('the expectation is required and checked before anything else: ATTEST_POLICY_INVALID', async () => {
    const t = expectedOf(turnkey)
    const bad: unknown[] = [
      undefined,
      {expectedNonce: null, maxAgeMs: MINUTE},
      {expectedPcrs: {PCR0: t.PCR0, PCR1: t.PCR1}, expectedNonce: null, maxAgeMs: MINUTE},
      {expectedPcrs: {...t, PCR2: 'abc'}, expectedNonce: null, maxAgeMs: MINUTE},
      {expectedPcrs: {...t, PCR5: t.PCR0}, expectedNonce: null, maxAgeMs: MINUTE},
      {expectedPcrs: t, maxAgeMs: MINUTE},
      {expectedPcrs: t, expectedNonce: 'abc', maxAgeMs: MINUTE},
      {expectedPcrs: t, expectedNonce: null},
      {expectedPcrs: t, expectedNonce: null, maxAgeMs: -1},
      {expectedPcrs: t, expectedNonce: null, maxAgeMs: MINUTE, at: 'not a date'},
    ]
    for (const policy of bad) {
      expect(await codeOf(() => verifyAttestation(turnkey.bytes, policy as VerificationPolicy)), JSON.stringify(policy)).toBe('ATTEST_POLICY_INVALID')
    }
  })

  it('the AWS root is the default and a dev root must be passed explicitly', async () => {
    const sim = new NsmSimulator({measurements: {PCR0: hex('a'), PCR1: hex('b'), PCR2: hex('c')}})
    const doc = await sim.attestation()
    expect(await codeOf(() => verifyAttestation(doc, {expectedPcrs: EXPECTED, expectedNonce: null, maxAgeMs: MINUTE}))).toBe('ATTEST_ROOT_MISMATCH')
    expect(await codeOf(() => verifyAttestation(doc, {expectedPcrs: EXPECTED, expectedNonce: null, maxAgeMs: MINUTE, insecureDevRoot: AWS_NITRO_ROOT_G1}))).toBe('ATTEST_ROOT_MISMATCH')
    expect((await verifyAttestation(doc, {expectedPcrs: EXPECTED, expectedNonce: null, maxAgeMs: MINUTE, insecureDevRoot: sim.root})).root).toBe('insecure-dev-root')
  })
})
