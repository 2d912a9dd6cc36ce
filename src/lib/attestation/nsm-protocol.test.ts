// Byte-for-byte checks of the NSM messages against the serde_cbor encoding of nsm-api's
// `Request` / `Response` (src/api/mod.rs): externally tagged enums, unit variants as text,
// struct variants as {"Variant": {fields in declaration order}}, None as null (f6), byte vectors
// as byte strings, integers in their shortest form. Each expected hex is spelled out item by item.
import {describe, expect, it} from 'vitest'

import {codeOf} from '../../test-support/attestation.js'
import {cborEncode, toHex} from './cbor.js'
import {type NsmRequest, NsmProtocolViolation, type NsmResponse, decodeNsmRequest, decodeNsmResponse, encodeNsmRequest, encodeNsmResponse} from './nsm-protocol.js'

const t = (s: string): string => {
  const b = Buffer.from(s)
  if (b.length < 24) return (0x60 + b.length).toString(16) + b.toString('hex')
  return '78' + b.length.toString(16).padStart(2, '0') + b.toString('hex')
}
const bytes = (n: number, fill = 0): Uint8Array => new Uint8Array(n).fill(fill)

const REQUESTS: [string, NsmRequest, string][] = [
  ['DescribeNSM', {type: 'DescribeNSM'}, '6b' + '44657363726962654e534d'],
  ['GetRandom', {type: 'GetRandom'}, '69' + '47657452616e646f6d'],
  ['DescribePCR{index: 0}', {type: 'DescribePCR', index: 0}, 'a1' + '6b4465736372696265504352' + 'a1' + '65696e646578' + '00'],
  ['DescribePCR{index: 300}', {type: 'DescribePCR', index: 300}, 'a1' + '6b4465736372696265504352' + 'a1' + '65696e646578' + '19012c'],
  ['ExtendPCR{index: 16, data: "hello"}', {type: 'ExtendPCR', index: 16, data: new Uint8Array(Buffer.from('hello'))}, 'a1' + '69457874656e64504352' + 'a2' + '65696e646578' + '10' + '6464617461' + '4568656c6c6f'],
  ['LockPCR{index: 16}', {type: 'LockPCR', index: 16}, 'a1' + '674c6f636b504352' + 'a1' + '65696e646578' + '10'],
  ['LockPCRs{range: 32}', {type: 'LockPCRs', range: 32}, 'a1' + '684c6f636b50435273' + 'a1' + '6572616e6765' + '1820'],
  [
    'Attestation{user_data: None, nonce: [1, 2], public_key: None}',
    {type: 'Attestation', userData: null, nonce: new Uint8Array([1, 2]), publicKey: null},
    'a1' + '6b4174746573746174696f6e' + 'a3' + '69757365725f64617461' + 'f6' + '656e6f6e6365' + '420102' + '6a7075626c69635f6b6579' + 'f6',
  ],
  [
    'Attestation with 1024-byte fields',
    {type: 'Attestation', userData: bytes(1024, 1), nonce: bytes(1024, 2), publicKey: bytes(1024, 3)},
    'a1' + '6b4174746573746174696f6e' + 'a3' + '69757365725f64617461' + '590400' + '01'.repeat(1024) + '656e6f6e6365' + '590400' + '02'.repeat(1024) + '6a7075626c69635f6b6579' + '590400' + '03'.repeat(1024),
  ],
]

const MODULE = 'i-0123456789abcdef0-enc0123456789abcdef'
const RESPONSES: [string, NsmResponse, string][] = [
  ['LockPCR', {type: 'LockPCR'}, '67' + '4c6f636b504352'],
  ['LockPCRs', {type: 'LockPCRs'}, '68' + '4c6f636b50435273'],
  ['Error(InvalidIndex)', {type: 'Error', error: 'InvalidIndex'}, 'a1' + '654572726f72' + '6c496e76616c6964496e646578'],
  ['Error(ReadOnlyIndex)', {type: 'Error', error: 'ReadOnlyIndex'}, 'a1' + '654572726f72' + '6d526561644f6e6c79496e646578'],
  ['DescribePCR{lock: true, data: 48 zero bytes}', {type: 'DescribePCR', lock: true, data: bytes(48)}, 'a1' + '6b4465736372696265504352' + 'a2' + '646c6f636b' + 'f5' + '6464617461' + '5830' + '00'.repeat(48)],
  ['ExtendPCR{data}', {type: 'ExtendPCR', data: bytes(48, 0xab)}, 'a1' + '69457874656e64504352' + 'a1' + '6464617461' + '5830' + 'ab'.repeat(48)],
  ['GetRandom{random: 4 bytes}', {type: 'GetRandom', random: new Uint8Array([9, 8, 7, 6])}, 'a1' + '6947657452616e646f6d' + 'a1' + '6672616e646f6d' + '4409080706'],
  ['Attestation{document: 300 bytes}', {type: 'Attestation', document: bytes(300, 0x84)}, 'a1' + '6b4174746573746174696f6e' + 'a1' + '68646f63756d656e74' + '59012c' + '84'.repeat(300)],
  [
    'DescribeNSM',
    {type: 'DescribeNSM', versionMajor: 1, versionMinor: 0, versionPatch: 0, moduleId: MODULE, maxPcrs: 32, lockedPcrs: [...Array(16).keys()], digest: 'SHA384'},
    'a1' +
      '6b44657363726962654e534d' +
      'a7' +
      t('version_major') + '01' +
      t('version_minor') + '00' +
      t('version_patch') + '00' +
      t('module_id') + t(MODULE) +
      t('max_pcrs') + '1820' +
      t('locked_pcrs') + '90' + '000102030405060708090a0b0c0d0e0f' +
      t('digest') + t('SHA384'),
  ],
]

describe('NSM requests', () => {
  it.each(REQUESTS)('%s encodes byte for byte and decodes back', (_name, request, hex) => {
    expect(toHex(encodeNsmRequest(request))).toBe(hex)
    expect(decodeNsmRequest(Buffer.from(hex, 'hex'))).toEqual(request)
  })

  it('the text-key helper agrees with hand-written items', () => {
    expect(t('digest')).toBe('66646967657374')
    expect(t(MODULE).slice(0, 4)).toBe('7827')
  })

  it('refuses requests that do not fit the protocol', async () => {
    expect(codeOf(() => encodeNsmRequest({type: 'DescribePCR', index: 65536}))).toBe('ATTEST_NSM_BAD_REQUEST')
    expect(codeOf(() => encodeNsmRequest({type: 'LockPCR', index: -1}))).toBe('ATTEST_NSM_BAD_REQUEST')
    expect(codeOf(() => encodeNsmRequest({type: 'LockPCRs', range: 1.5}))).toBe('ATTEST_NSM_BAD_REQUEST')
    expect(codeOf(() => encodeNsmRequest({type: 'Nope'} as unknown as NsmRequest))).toBe('ATTEST_NSM_BAD_REQUEST')
  })

  it.each([
    ['an unknown unit variant', cborEncode('Reboot')],
    ['an unknown struct variant', cborEncode(new Map([['Reboot', new Map()]]))],
    ['a two-entry map', cborEncode(new Map([['GetRandom', null], ['DescribeNSM', null]]))],
    ['DescribePCR without index', cborEncode(new Map([['DescribePCR', new Map()]]))],
    ['DescribePCR with a text index', cborEncode(new Map([['DescribePCR', new Map([['index', '1']])]]))],
    ['ExtendPCR with text data', cborEncode(new Map([['ExtendPCR', new Map<string, unknown>([['index', 16], ['data', 'hello']])]]))],
    ['Attestation with an extra field', cborEncode(new Map([['Attestation', new Map<string, unknown>([['user_data', null], ['nonce', null], ['public_key', null], ['x', 1]])]]))],
    ['an integer', cborEncode(7)],
    ['not CBOR', new Uint8Array([0xff])],
  ])('decodeNsmRequest refuses %s', (_name, raw) => {
    expect(() => decodeNsmRequest(raw)).toThrow(NsmProtocolViolation)
  })
})

describe('NSM responses', () => {
  it.each(RESPONSES)('%s encodes byte for byte and decodes back', (_name, response, hex) => {
    expect(toHex(encodeNsmResponse(response))).toBe(hex)
    expect(decodeNsmResponse(Buffer.from(hex, 'hex'))).toEqual(response)
  })

  it('decodes DescribeNSM fields in any order (QEMU orders them differently)', () => {
    const qemuOrder = cborEncode(
      new Map([
        [
          'DescribeNSM',
          new Map<string, unknown>([
            ['digest', 'SHA384'],
            ['max_pcrs', 32],
            ['module_id', 'i-234-enc5678'],
            ['locked_pcrs', [0, 1, 2]],
            ['version_major', 1],
            ['version_minor', 0],
            ['version_patch', 0],
          ]),
        ],
      ]),
    )
    expect(decodeNsmResponse(qemuOrder)).toMatchObject({type: 'DescribeNSM', moduleId: 'i-234-enc5678', lockedPcrs: [0, 1, 2]})
  })

  it.each([
    ['an unknown error code', cborEncode(new Map([['Error', 'Oops']]))],
    ['DescribePCR with a numeric lock', cborEncode(new Map([['DescribePCR', new Map<string, unknown>([['lock', 1], ['data', new Uint8Array(48)]])]]))],
    ['DescribeNSM with digest MD5', cborEncode(new Map([['DescribeNSM', new Map<string, unknown>([['version_major', 1], ['version_minor', 0], ['version_patch', 0], ['module_id', 'm'], ['max_pcrs', 32], ['locked_pcrs', []], ['digest', 'MD5']])]]))],
    ['Attestation without a document', cborEncode(new Map([['Attestation', new Map()]]))],
    ['a truncated message', new Uint8Array([0xa1, 0x6b])],
  ])('decodeNsmResponse refuses %s', (_name, raw) => {
    expect(() => decodeNsmResponse(raw)).toThrow(NsmProtocolViolation)
  })
})
