import {expect, it} from 'vitest'

import {HAVE_VECTORS, VECTORS, codeOf, describeVectors, vector} from '../../test-support/attestation.js'
import {cborDecode, cborEncode, toHex} from './cbor.js'
import {decodeCoseSign1} from './cose.js'
import {type AttestationDocument, encodeAttestationPayload, parseAttestationPayload} from './document.js'

const payloadOf = (bytes: Uint8Array): Uint8Array => decodeCoseSign1(bytes).payload
const turnkeyPayload = HAVE_VECTORS ? payloadOf(vector('turnkey_prod_attestation.bin').bytes) : new Uint8Array()

/** The turnkey payload as a Map, edited, re-encoded. */
function edited(edit: (m: Map<unknown, unknown>) => void): Uint8Array {
  const map = cborDecode(turnkeyPayload) as Map<unknown, unknown>
  edit(map)
  return cborEncode(map)
}

describeVectors('parseAttestationPayload on real documents', () => {
  it.each(VECTORS.map((v) => [v.file, v] as const))('%s: fields match vectors.json', (_f, v) => {
    const doc = parseAttestationPayload(payloadOf(v.bytes))
    expect(doc.moduleId).toBe(v.moduleId)
    expect(doc.digest).toBe('SHA384')
    expect(doc.timestamp).toBe(v.timestampMs)
    expect([...doc.pcrs.keys()]).toEqual([...Array(16).keys()])
    for (const [i, value] of doc.pcrs) expect(toHex(value), `PCR${i}`).toBe(v.pcrs[String(i)])
    expect(doc.cabundle).toHaveLength(4)
    expect(doc.certificate.length).toBeGreaterThan(0)
  })

  it('turns explicit CBOR nulls into absent optionals and keeps present ones', () => {
    const t = parseAttestationPayload(turnkeyPayload)
    expect(t.publicKey?.length).toBe(130)
    expect(t.userData && toHex(t.userData)).toMatch(/^8a5510ca.*ad74$/)
    expect(t.nonce).toBeNull()
    const e = parseAttestationPayload(payloadOf(vector('eternis_example_attestation_debug.bin').bytes))
    expect(Buffer.from(e.publicKey!).toString()).toBe('dummy')
    expect(e.nonce?.length).toBe(20)
    const ga = parseAttestationPayload(payloadOf(vector('evervault_ga_valid_attestation_doc.bin').bytes))
    expect(ga.userData?.length).toBe(91)
    expect(ga.nonce?.length).toBe(256)
  })

  it('round-trips through encodeAttestationPayload byte for byte (same field order and encodings as AWS)', () => {
    for (const v of VECTORS) {
      const payload = payloadOf(v.bytes)
      expect(toHex(encodeAttestationPayload(parseAttestationPayload(payload))), v.file).toBe(toHex(payload))
    }
  })
})

describeVectors('parseAttestationPayload refuses malformed payloads with ATTEST_PAYLOAD_INVALID', () => {
  const big = new Uint8Array(1025)
  it.each<[string, (m: Map<unknown, unknown>) => void]>([
    ['missing module_id', (m) => m.delete('module_id')],
    ['empty module_id', (m) => m.set('module_id', '')],
    ['module_id as bytes', (m) => m.set('module_id', new Uint8Array([1]))],
    ['digest SHA256', (m) => m.set('digest', 'SHA256')],
    ['missing digest', (m) => m.delete('digest')],
    ['timestamp 0', (m) => m.set('timestamp', 0)],
    ['negative timestamp', (m) => m.set('timestamp', -5)],
    ['timestamp as text', (m) => m.set('timestamp', '1746487652119')],
    ['pcrs empty', (m) => m.set('pcrs', new Map())],
    ['pcrs as array', (m) => m.set('pcrs', [new Uint8Array(48)])],
    ['PCR index 32', (m) => (m.get('pcrs') as Map<unknown, unknown>).set(32, new Uint8Array(48))],
    ['PCR index as text', (m) => (m.get('pcrs') as Map<unknown, unknown>).set('16', new Uint8Array(48))],
    ['PCR of 47 bytes', (m) => (m.get('pcrs') as Map<unknown, unknown>).set(0, new Uint8Array(47))],
    ['PCR as null', (m) => (m.get('pcrs') as Map<unknown, unknown>).set(0, null)],
    ['certificate null', (m) => m.set('certificate', null)],
    ['certificate of 1025 bytes', (m) => m.set('certificate', big)],
    ['cabundle empty', (m) => m.set('cabundle', [])],
    ['cabundle entry empty', (m) => m.set('cabundle', [new Uint8Array(0)])],
    ['cabundle null', (m) => m.set('cabundle', null)],
    ['nonce of 1025 bytes', (m) => m.set('nonce', big)],
    ['user_data as text', (m) => m.set('user_data', 'hello')],
    ['public_key empty', (m) => m.set('public_key', new Uint8Array(0))],
    ['an unknown field', (m) => m.set('extra', 1)],
    ['an integer key', (m) => m.set(1, 1)],
  ])('%s', async (_name, edit) => {
    expect(codeOf(() => parseAttestationPayload(edited(edit)))).toBe('ATTEST_PAYLOAD_INVALID')
  })

  it('refuses a payload that is not a map or not CBOR', async () => {
    expect(codeOf(() => parseAttestationPayload(cborEncode([1, 2])))).toBe('ATTEST_PAYLOAD_INVALID')
    expect(codeOf(() => parseAttestationPayload(new Uint8Array([0xbf])))).toBe('ATTEST_PAYLOAD_INVALID')
  })

  it('accepts optionals absent altogether and 1024-byte user fields (AWS conformance sends 1024)', () => {
    const doc = parseAttestationPayload(
      edited((m) => {
        m.delete('public_key')
        m.set('nonce', new Uint8Array(1024))
        m.set('user_data', new Uint8Array(1024))
      }),
    )
    expect(doc.publicKey).toBeNull()
    expect(doc.nonce?.length).toBe(1024)
  })

  it('encodes absent optionals as explicit nulls, as real documents do', () => {
    const doc: AttestationDocument = {...parseAttestationPayload(turnkeyPayload), publicKey: null, userData: null, nonce: null}
    expect(toHex(encodeAttestationPayload(doc))).toMatch(/6a7075626c69635f6b6579f669757365725f64617461f6656e6f6e6365f6$/)
  })
})
