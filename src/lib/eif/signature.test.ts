import {describe, expect, it} from 'vitest'

import {decodeCoseSign1, encodeSignatureSection, parseSignatureSection} from './signature.js'

const code = (fn: () => unknown): string | undefined => {
  try {
    fn()
  } catch (error) {
    return (error as {code?: string}).code ?? `not an NleError: ${String(error)}`
  }
  return undefined
}

describe('signature section parser', () => {
  it('round-trips what it encodes', () => {
    const sig = {certificatePem: Buffer.from('-----BEGIN CERTIFICATE-----'), coseSign1: Buffer.from([0, 1, 255])}
    expect(parseSignatureSection(encodeSignatureSection(sig))).toEqual(sig)
  })

  it.each<[string, Buffer]>([
    ['empty', Buffer.alloc(0)],
    ['deeply nested arrays (stack exhaustion)', Buffer.alloc(32 * 1024, 0x81)],
    ['an array declaring 2^32-1 elements', Buffer.from('9affffffff00', 'hex')],
    ['a byte string declaring 2^64-1 bytes', Buffer.from('5bffffffffffffffff', 'hex')],
    ['two entries', Buffer.from('82a0a0', 'hex')],
    ['a map with an extra key', Buffer.from('81a3737369676e696e675f636572746966696361746580697369676e617475726580617800', 'hex')],
    ['integers above 255', Buffer.from('81a2737369676e696e675f6365727469666963617465811901006' + '97369676e617475726580', 'hex')],
    ['trailing bytes', Buffer.concat([encodeSignatureSection({certificatePem: Buffer.from('a'), coseSign1: Buffer.from('b')}), Buffer.from([0])])],
    ['more than 32 KiB', Buffer.alloc(32 * 1024 + 1, 0x80)],
  ])('rejects %s with EIF_BAD_SIGNATURE_CBOR', (_name, bytes) => {
    expect(code(() => parseSignatureSection(bytes))).toBe('EIF_BAD_SIGNATURE_CBOR')
  })

  it.each<[string, string]>([
    ['not an array', 'a0'],
    ['three elements', '83404040'],
    ['alg missing', '8443a10203a0404140'],
    ['unsupported alg (RS256)', '8444a1013901 00a0404140'.replace(' ', '')],
    ['protected header not a map', '844101a0404140'],
    ['a tag other than 18', 'd8628443a10126a0404140'],
  ])('rejects a COSE_Sign1 that is %s with EIF_BAD_COSE_SIGN1', (_name, hex) => {
    expect(code(() => decodeCoseSign1(Buffer.from(hex, 'hex')))).toBe('EIF_BAD_COSE_SIGN1')
  })

  it('accepts tag 18 and the untagged form alike', () => {
    expect(decodeCoseSign1(Buffer.from('d28443a10126a0404140', 'hex')).alg).toBe(-7)
    expect(decodeCoseSign1(Buffer.from('8443a10126a0404140', 'hex')).alg).toBe(-7)
  })
})
