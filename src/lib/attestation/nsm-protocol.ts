/**
 * The Nitro Secure Module message protocol: CBOR requests and responses exactly as
 * aws-nitro-enclaves-nsm-api (src/api/mod.rs) serializes its `Request` / `Response` enums with
 * serde_cbor — externally tagged: a unit variant is a text string ("DescribeNSM"), a struct
 * variant is a one-entry map {"Variant": {field: value, …}} with fields in declaration order,
 * `Option::None` is null, byte vectors are byte strings, integers use their shortest form.
 */

import {cborDecode, cborEncode, isBytes, isMap} from './cbor.js'
import {attestError} from './errors.js'

/** Largest request the NSM driver accepts (include/uapi/linux/nsm.h NSM_REQUEST_MAX_SIZE). */
export const NSM_REQUEST_MAX_SIZE = 0x1000
/** Size of the response buffer the driver is given (NSM_RESPONSE_MAX_SIZE). */
export const NSM_RESPONSE_MAX_SIZE = 0x3000
/** Largest user_data / nonce / public_key the NSM attests (nsm-check sends 1024 of each). */
export const NSM_MAX_USER_FIELD = 1024

export type NsmDigest = 'SHA256' | 'SHA384' | 'SHA512'

export const NSM_ERROR_CODES = [
  'Success',
  'InvalidArgument',
  'InvalidIndex',
  'InvalidResponse',
  'ReadOnlyIndex',
  'InvalidOperation',
  'BufferTooSmall',
  'InputTooLarge',
  'InternalError',
] as const
export type NsmErrorCode = (typeof NSM_ERROR_CODES)[number]

export type NsmRequest =
  | {type: 'DescribePCR'; index: number}
  | {type: 'ExtendPCR'; index: number; data: Uint8Array}
  | {type: 'LockPCR'; index: number}
  | {type: 'LockPCRs'; range: number}
  | {type: 'DescribeNSM'}
  | {type: 'Attestation'; userData: Uint8Array | null; nonce: Uint8Array | null; publicKey: Uint8Array | null}
  | {type: 'GetRandom'}

export interface NsmDescription {
  versionMajor: number
  versionMinor: number
  versionPatch: number
  moduleId: string
  maxPcrs: number
  lockedPcrs: number[]
  digest: NsmDigest
}

export type NsmResponse =
  | {type: 'DescribePCR'; lock: boolean; data: Uint8Array}
  | {type: 'ExtendPCR'; data: Uint8Array}
  | {type: 'LockPCR'}
  | {type: 'LockPCRs'}
  | ({type: 'DescribeNSM'} & NsmDescription)
  | {type: 'Attestation'; document: Uint8Array}
  | {type: 'GetRandom'; random: Uint8Array}
  | {type: 'Error'; error: NsmErrorCode}

/** A message that does not follow the protocol. `side` says whose message it was. */
export class NsmProtocolViolation extends Error {
  constructor(
    message: string,
    readonly side: 'request' | 'response',
  ) {
    super(message)
    this.name = 'NsmProtocolViolation'
  }
}

const isU16 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff
const bytesOrNull = (v: Uint8Array | null): Uint8Array | null => (v === null ? null : v)

function badRequest(message: string): never {
  throw attestError('ATTEST_NSM_BAD_REQUEST', message)
}

/** Encode a request as serde_cbor does (the bytes /dev/nsm receives). */
export function encodeNsmRequest(request: NsmRequest): Uint8Array {
  const variant = (name: string, fields: [string, unknown][]): Map<string, Map<string, unknown>> => new Map([[name, new Map(fields)]])
  const index = (i: number): number => (isU16(i) ? i : badRequest(`PCR index ${String(i)} is not a 16-bit unsigned integer.`))
  let value: unknown
  switch (request.type) {
    case 'DescribeNSM':
    case 'GetRandom':
      value = request.type
      break
    case 'DescribePCR':
    case 'LockPCR':
      value = variant(request.type, [['index', index(request.index)]])
      break
    case 'ExtendPCR':
      if (!(request.data instanceof Uint8Array)) badRequest('ExtendPCR data must be bytes.')
      value = variant('ExtendPCR', [
        ['index', index(request.index)],
        ['data', request.data],
      ])
      break
    case 'LockPCRs':
      value = variant('LockPCRs', [['range', isU16(request.range) ? request.range : badRequest(`PCR range ${String(request.range)} is not a 16-bit unsigned integer.`)]])
      break
    case 'Attestation':
      for (const [name, v] of [['user_data', request.userData], ['nonce', request.nonce], ['public_key', request.publicKey]] as const) {
        if (v !== null && !(v instanceof Uint8Array)) badRequest(`Attestation ${name} must be bytes or null.`)
      }
      value = variant('Attestation', [
        ['user_data', bytesOrNull(request.userData)],
        ['nonce', bytesOrNull(request.nonce)],
        ['public_key', bytesOrNull(request.publicKey)],
      ])
      break
    default:
      badRequest(`Unknown NSM request ${JSON.stringify((request as {type?: unknown}).type)}.`)
  }
  return cborEncode(value)
}

type Fields = Map<unknown, unknown>

function splitVariant(value: unknown, side: 'request' | 'response'): {name: string; fields: unknown} {
  if (typeof value === 'string') return {name: value, fields: undefined}
  if (isMap(value) && value.size === 1) {
    const [[name, fields]] = [...value] as [[unknown, unknown]]
    if (typeof name === 'string') return {name, fields}
  }
  throw new NsmProtocolViolation(`An NSM ${side} must be a text string or a one-entry map keyed by text.`, side)
}

function fieldsOf(fields: unknown, names: readonly string[], side: 'request' | 'response', variant: string): Fields {
  if (!isMap(fields)) throw new NsmProtocolViolation(`${variant} needs a map of fields.`, side)
  for (const key of fields.keys()) {
    if (typeof key !== 'string' || !names.includes(key)) throw new NsmProtocolViolation(`${variant} has an unknown field ${JSON.stringify(String(key))}.`, side)
  }
  for (const name of names) if (!fields.has(name)) throw new NsmProtocolViolation(`${variant} lacks the field ${name}.`, side)
  return fields
}

function u16Field(fields: Fields, name: string, side: 'request' | 'response', variant: string): number {
  const v = fields.get(name)
  if (!isU16(v)) throw new NsmProtocolViolation(`${variant}.${name} must be a 16-bit unsigned integer.`, side)
  return v
}

function bytesField(fields: Fields, name: string, side: 'request' | 'response', variant: string): Uint8Array {
  const v = fields.get(name)
  if (!isBytes(v)) throw new NsmProtocolViolation(`${variant}.${name} must be a byte string.`, side)
  return new Uint8Array(v)
}

function optionalBytesField(fields: Fields, name: string, side: 'request' | 'response', variant: string): Uint8Array | null {
  const v = fields.get(name)
  if (v === null) return null
  return bytesField(fields, name, side, variant)
}

function decode(bytes: Uint8Array, side: 'request' | 'response'): unknown {
  try {
    return cborDecode(bytes)
  } catch (error) {
    throw new NsmProtocolViolation(`The NSM ${side} is not valid CBOR: ${(error as Error).message}`, side)
  }
}

/** Decode a request (the simulator's side of the device). Throws NsmProtocolViolation. */
export function decodeNsmRequest(bytes: Uint8Array): NsmRequest {
  const side = 'request'
  const {name, fields} = splitVariant(decode(bytes, side), side)
  switch (name) {
    case 'DescribeNSM':
    case 'GetRandom':
      if (fields !== undefined) throw new NsmProtocolViolation(`${name} takes no fields.`, side)
      return {type: name}
    case 'DescribePCR':
    case 'LockPCR':
      return {type: name, index: u16Field(fieldsOf(fields, ['index'], side, name), 'index', side, name)}
    case 'ExtendPCR': {
      const f = fieldsOf(fields, ['index', 'data'], side, name)
      return {type: name, index: u16Field(f, 'index', side, name), data: bytesField(f, 'data', side, name)}
    }
    case 'LockPCRs':
      return {type: name, range: u16Field(fieldsOf(fields, ['range'], side, name), 'range', side, name)}
    case 'Attestation': {
      const f = fieldsOf(fields, ['user_data', 'nonce', 'public_key'], side, name)
      return {
        type: name,
        userData: optionalBytesField(f, 'user_data', side, name),
        nonce: optionalBytesField(f, 'nonce', side, name),
        publicKey: optionalBytesField(f, 'public_key', side, name),
      }
    }
    default:
      throw new NsmProtocolViolation(`Unknown NSM request ${JSON.stringify(name)}.`, side)
  }
}

/** Encode a response as serde_cbor does (what the device writes back). */
export function encodeNsmResponse(response: NsmResponse): Uint8Array {
  const variant = (name: string, fields: [string, unknown][]): Map<string, Map<string, unknown>> => new Map([[name, new Map(fields)]])
  switch (response.type) {
    case 'LockPCR':
    case 'LockPCRs':
      return cborEncode(response.type)
    case 'DescribePCR':
      return cborEncode(variant('DescribePCR', [['lock', response.lock], ['data', response.data]]))
    case 'ExtendPCR':
      return cborEncode(variant('ExtendPCR', [['data', response.data]]))
    case 'DescribeNSM':
      return cborEncode(
        variant('DescribeNSM', [
          ['version_major', response.versionMajor],
          ['version_minor', response.versionMinor],
          ['version_patch', response.versionPatch],
          ['module_id', response.moduleId],
          ['max_pcrs', response.maxPcrs],
          ['locked_pcrs', [...new Set(response.lockedPcrs)].sort((a, b) => a - b)],
          ['digest', response.digest],
        ]),
      )
    case 'Attestation':
      return cborEncode(variant('Attestation', [['document', response.document]]))
    case 'GetRandom':
      return cborEncode(variant('GetRandom', [['random', response.random]]))
    case 'Error':
      return cborEncode(new Map([['Error', response.error]]))
  }
}

/** Decode a response from the device. Throws NsmProtocolViolation. */
export function decodeNsmResponse(bytes: Uint8Array): NsmResponse {
  const side = 'response'
  const {name, fields} = splitVariant(decode(bytes, side), side)
  switch (name) {
    case 'LockPCR':
    case 'LockPCRs':
      if (fields !== undefined) throw new NsmProtocolViolation(`${name} carries no fields.`, side)
      return {type: name}
    case 'DescribePCR': {
      const f = fieldsOf(fields, ['lock', 'data'], side, name)
      const lock = f.get('lock')
      if (typeof lock !== 'boolean') throw new NsmProtocolViolation('DescribePCR.lock must be a boolean.', side)
      return {type: name, lock, data: bytesField(f, 'data', side, name)}
    }
    case 'ExtendPCR':
      return {type: name, data: bytesField(fieldsOf(fields, ['data'], side, name), 'data', side, name)}
    case 'DescribeNSM': {
      const f = fieldsOf(fields, ['version_major', 'version_minor', 'version_patch', 'module_id', 'max_pcrs', 'locked_pcrs', 'digest'], side, name)
      const moduleId = f.get('module_id')
      const locked = f.get('locked_pcrs')
      const digest = f.get('digest')
      if (typeof moduleId !== 'string') throw new NsmProtocolViolation('DescribeNSM.module_id must be text.', side)
      if (!Array.isArray(locked) || !locked.every(isU16)) throw new NsmProtocolViolation('DescribeNSM.locked_pcrs must be an array of indexes.', side)
      if (digest !== 'SHA256' && digest !== 'SHA384' && digest !== 'SHA512') throw new NsmProtocolViolation('DescribeNSM.digest is not SHA256, SHA384 or SHA512.', side)
      return {
        type: name,
        versionMajor: u16Field(f, 'version_major', side, name),
        versionMinor: u16Field(f, 'version_minor', side, name),
        versionPatch: u16Field(f, 'version_patch', side, name),
        moduleId,
        maxPcrs: u16Field(f, 'max_pcrs', side, name),
        lockedPcrs: locked as number[],
        digest,
      }
    }
    case 'Attestation':
      return {type: name, document: bytesField(fieldsOf(fields, ['document'], side, name), 'document', side, name)}
    case 'GetRandom':
      return {type: name, random: bytesField(fieldsOf(fields, ['random'], side, name), 'random', side, name)}
    case 'Error': {
      if (typeof fields !== 'string' || !(NSM_ERROR_CODES as readonly string[]).includes(fields)) throw new NsmProtocolViolation('Error carries an unknown error code.', side)
      return {type: name, error: fields as NsmErrorCode}
    }
    default:
      throw new NsmProtocolViolation(`Unknown NSM response ${JSON.stringify(name)}.`, side)
  }
}
