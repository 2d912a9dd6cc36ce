import {generateKeyPairSync} from 'node:crypto'

import {Tag} from 'cbor-x'
import {describe, expect, it} from 'vitest'

import {HAVE_VECTORS, VECTORS, codeOf, describeVectors, vector} from '../../test-support/attestation.js'
import {cborDecode, cborEncode, toHex} from './cbor.js'
import {decodeCoseSign1, signCoseSign1, sigStructure, verifyCoseSignature} from './cose.js'

const turnkey = vector('turnkey_prod_attestation.bin')
const parts = (HAVE_VECTORS ? cborDecode(turnkey.bytes) : []) as [Uint8Array, Map<unknown, unknown>, Uint8Array, Uint8Array]
const rebuild = (items: unknown[]): Uint8Array => cborEncode(items)

describeVectors('decodeCoseSign1', () => {
  it('reads every real document: untagged, protected {1: -35}, 96-byte signature', () => {
    for (const v of VECTORS) {
      const cose = decodeCoseSign1(v.bytes)
      expect(cose.tagged, v.file).toBe(false)
      expect(toHex(cose.protectedBytes)).toBe('a1013822')
      expect(cose.signature.length).toBe(96)
      expect(toHex(v.bytes.subarray(0, 7))).toBe('8444a1013822a0')
    }
  })

  it('accepts the tag-18 form and refuses any other tag', async () => {
    expect(decodeCoseSign1(cborEncode(new Tag(parts, 18))).tagged).toBe(true)
    expect(codeOf(() => decodeCoseSign1(cborEncode(new Tag(parts, 98))))).toBe('ATTEST_COSE_MALFORMED')
  })

  it('builds the Sig_structure ["Signature1", protected, h"", payload] as the NSM signs it', () => {
    const s = sigStructure(parts[0], parts[2])
    const len = parts[2].length.toString(16).padStart(4, '0')
    // array(4), text(10) "Signature1", bstr(4) a1013822, bstr(0), bstr(len) payload
    expect(toHex(s)).toBe('846a5369676e617475726531' + '44a1013822' + '40' + '59' + len + toHex(parts[2]))
  })

  it.each([
    ['empty input', new Uint8Array(0)],
    ['not CBOR', new Uint8Array([0xff, 0x00])],
    ['truncated', turnkey.bytes.subarray(0, turnkey.bytes.length - 1)],
    ['trailing bytes', new Uint8Array([...turnkey.bytes, 0])],
    ['a map instead of an array', cborEncode(new Map([[1, 2]]))],
    ['3 elements', rebuild(parts.slice(0, 3))],
    ['unprotected is null', rebuild([parts[0], null, parts[2], parts[3]])],
    ['unprotected not empty', rebuild([parts[0], new Map([[4, new Uint8Array([1])]]), parts[2], parts[3]])],
    ['protected is a map, not bytes', rebuild([new Map([[1, -35]]), new Map(), parts[2], parts[3]])],
    ['empty payload', rebuild([parts[0], new Map(), new Uint8Array(0), parts[3]])],
    ['payload is text', rebuild([parts[0], new Map(), 'hello', parts[3]])],
    ['64-byte signature', rebuild([parts[0], new Map(), parts[2], parts[3].subarray(0, 64)])],
    ['DER-encoded signature length', rebuild([parts[0], new Map(), parts[2], new Uint8Array(103)])],
    ['over 16 KiB', new Uint8Array(16 * 1024 + 1)],
  ])('refuses %s with ATTEST_COSE_MALFORMED', async (_name, bytes) => {
    expect(codeOf(() => decodeCoseSign1(bytes))).toBe('ATTEST_COSE_MALFORMED')
  })

  it.each([
    ['QEMU alg -1', cborEncode(new Map([[1, -1]]))],
    ['ES256', cborEncode(new Map([[1, -7]]))],
    ['text "ES384"', cborEncode(new Map([[1, 'ES384']]))],
    ['an extra header', cborEncode(new Map<number, number>([[1, -35], [4, 1]]))],
    ['no alg', cborEncode(new Map())],
  ])('refuses a protected header with %s as ATTEST_UNSUPPORTED_ALG', async (_name, header) => {
    expect(codeOf(() => decodeCoseSign1(rebuild([header, new Map(), parts[2], parts[3]])))).toBe('ATTEST_UNSUPPORTED_ALG')
  })
})

describe('signCoseSign1 / verifyCoseSignature', () => {
  it('signs the way the NSM does and verifies only with the right key', async () => {
    const a = generateKeyPairSync('ec', {namedCurve: 'secp384r1'})
    const b = generateKeyPairSync('ec', {namedCurve: 'secp384r1'})
    const doc = signCoseSign1(new Uint8Array([0xa0]), a.privateKey)
    expect(toHex(doc.subarray(0, 7))).toBe('8444a1013822a0')
    const cose = decodeCoseSign1(doc)
    expect(verifyCoseSignature(cose, a.publicKey)).toBe(true)
    expect(verifyCoseSignature(cose, b.publicKey)).toBe(false)
    expect(decodeCoseSign1(signCoseSign1(new Uint8Array([0xa0]), a.privateKey, {tagged: true})).tagged).toBe(true)
  })
})
