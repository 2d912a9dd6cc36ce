import {describe, expect, it} from 'vitest'

import {isNleError} from '../errors.js'
import {CborStrictError, MAX_CBOR_DEPTH, cborDecode, cborEncode, checkStrictCbor} from './cbor.js'
import {decodeCoseSign1, signCoseSign1} from './cose.js'
import {NsmSimulator} from './simulator.js'
import {verifyAttestation} from './verify.js'

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s/g, ''), 'hex'))
const refused = (s: string): string => {
  try {
    checkStrictCbor(hex(s))
  } catch (error) {
    expect(error).toBeInstanceOf(CborStrictError)
    return (error as Error).message
  }
  throw new Error(`accepted ${s}`)
}

describe('checkStrictCbor', () => {
  it('accepts what nle and the NSM write', () => {
    for (const value of [0, 23, 24, 255, 256, 65_536, 2 ** 32, -1, -25, 'module_id', 'é', new Uint8Array(300), [1, [2, [3]]], new Map<unknown, unknown>([[1, -35], ['a', null], [-1, true]]), 1.5, null, undefined, false]) {
      expect(() => checkStrictCbor(cborEncode(value))).not.toThrow()
    }
  })

  it('refuses indefinite lengths and stray breaks', () => {
    expect(refused('9f 01 02 ff')).toContain('indefinite') // array
    expect(refused('bf 61 61 01 ff')).toContain('indefinite') // map
    expect(refused('5f 41 00 ff')).toContain('indefinite') // byte string in chunks
    expect(refused('7f 61 61 ff')).toContain('indefinite') // text string in chunks
    expect(refused('ff')).toContain('break')
  })

  it('refuses duplicate map keys, also behind a longer head or inside a nested map', () => {
    expect(refused('a2 01 01 01 02')).toContain('duplicate')
    expect(refused('a2 61 61 00 61 61 01')).toContain('duplicate')
    expect(refused('a1 00 a2 20 00 20 01')).toContain('duplicate')
    expect(refused('a2 01 00 18 01 00')).toContain('shortest') // 1 written as 0x18 0x01: same key, other bytes
  })

  it('refuses non-shortest arguments, bad UTF-8, odd keys, reserved bits, truncation, trailing bytes, deep nesting', () => {
    expect(refused('19 00 10')).toContain('shortest')
    expect(refused('5a 00 00 00 01 00')).toContain('shortest')
    expect(refused('f8 10')).toContain('simple')
    expect(refused('62 c3 28')).toContain('UTF-8')
    expect(refused('a1 41 00 00')).toContain('key')
    expect(refused('a1 80 00')).toContain('key')
    expect(refused('1c')).toContain('reserved')
    expect(refused('5b ff ff ff ff ff ff ff ff')).toContain('truncated')
    expect(refused('9b 00 00 00 01 00 00 00 00')).toContain('truncated')
    expect(refused('82 01')).toContain('truncated')
    expect(refused('01 02')).toContain('trailing')
    expect(refused('81'.repeat(MAX_CBOR_DEPTH + 1) + '00')).toContain('nesting')
    expect(() => checkStrictCbor(hex('81'.repeat(MAX_CBOR_DEPTH) + '00'))).not.toThrow()
  })

  it('is what cborDecode applies', () => {
    expect(() => cborDecode(hex('a2 01 01 01 02'))).toThrow(CborStrictError)
    expect(cborDecode(hex('a1 01 38 22'))).toEqual(new Map([[1, -35]]))
  })
})

const M = {PCR0: 'a'.repeat(96), PCR1: 'b'.repeat(96), PCR2: 'c'.repeat(96)}

describe('attestation documents with ambiguous CBOR, properly signed', () => {
  async function verdict(document: Uint8Array, sim: NsmSimulator): Promise<string> {
    return verifyAttestation(document, {expectedPcrs: M, expectedNonce: null, maxAgeMs: 60_000, insecureDevRoot: sim.root}).then(
      () => 'verified',
      (error: unknown) => (isNleError(error) ? error.code : String(error)),
    )
  }

  it('a payload that names module_id twice is refused, though its signature verifies', async () => {
    const sim = new NsmSimulator({measurements: M})
    const {payload} = decodeCoseSign1(await sim.attestation())
    expect(payload[0]! & 0xe0).toBe(0xa0) // a map with fewer than 24 entries: the count is in the first byte
    const extra = cborEncode('module_id')
    const forged = new Uint8Array(Buffer.concat([Buffer.from([payload[0]! + 1]), payload.subarray(1), extra, cborEncode('i-attacker-enc0')]))
    expect(await verdict(signCoseSign1(payload, sim.chain.leafKey), sim)).toBe('verified')
    expect(await verdict(signCoseSign1(forged, sim.chain.leafKey), sim)).toBe('ATTEST_PAYLOAD_INVALID')
  })

  it('a payload written with indefinite lengths is refused, though its signature verifies', async () => {
    const sim = new NsmSimulator({measurements: M})
    const {payload} = decodeCoseSign1(await sim.attestation())
    const indefinite = new Uint8Array(Buffer.concat([Buffer.from([0xbf]), payload.subarray(1), Buffer.from([0xff])]))
    expect(await verdict(signCoseSign1(indefinite, sim.chain.leafKey), sim)).toBe('ATTEST_PAYLOAD_INVALID')
    // And a COSE_Sign1 array of indefinite length.
    const doc = signCoseSign1(payload, sim.chain.leafKey)
    const outer = new Uint8Array(Buffer.concat([Buffer.from([0x9f]), doc.subarray(1), Buffer.from([0xff])]))
    expect(await verdict(outer, sim)).toBe('ATTEST_COSE_MALFORMED')
  })
})
