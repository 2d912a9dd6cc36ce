/**
 * The one CBOR configuration of the attestation domain (cbor-x). Decoding keeps maps as `Map` so
 * integer keys (COSE labels, PCR indexes) stay integers and text keys stay text; records and
 * structured-clone extensions are off. Encoding writes plain byte strings (no typed-array tags),
 * minimal map headers and no records — the same shape serde_cbor produces for nsm-api's types.
 */
import {Decoder, Encoder} from 'cbor-x'

const decoder = new Decoder({mapsAsObjects: false, useRecords: false, structuredClone: false, bundleStrings: false})
const encoder = new Encoder({mapsAsObjects: false, useRecords: false, structuredClone: false, tagUint8Array: false, variableMapSize: true, bundleStrings: false})

/**
 * Decode exactly one CBOR item; throws on truncation, trailing bytes, and anything
 * `checkStrictCbor` refuses (cbor-x itself accepts duplicate keys — the last one wins — and
 * indefinite lengths, so two readers could see different documents in the same bytes).
 */
export function cborDecode(bytes: Uint8Array): unknown {
  checkStrictCbor(bytes)
  return decoder.decode(bytes)
}

/** What `checkStrictCbor` refuses. */
export class CborStrictError extends Error {
  override name = 'CborStrictError'
}

/** Deeper than any Nitro document, COSE structure or NSM message nests. */
export const MAX_CBOR_DEPTH = 16

const utf8 = new TextDecoder('utf-8', {fatal: true})

/**
 * A structural pass over the bytes before cbor-x sees them, in the spirit of RFC 8949's
 * deterministic encoding: one well-formed item, no trailing bytes, no indefinite lengths (nor a
 * stray break), arguments in their shortest form, text strings valid UTF-8, map keys integers or
 * text strings and never twice in one map, nesting at most MAX_CBOR_DEPTH. With shortest-form
 * heads and valid UTF-8, two equal keys have equal bytes, so duplicates are found by comparing
 * bytes. Everything nle decodes (Nitro documents, COSE_Sign1, NSM messages) is written this way.
 */
export function checkStrictCbor(bytes: Uint8Array): void {
  const end = bytes.length
  let pos = 0
  const fail = (why: string): never => {
    throw new CborStrictError(`${why} (byte ${pos})`)
  }
  /** The head at pos: major type, additional info, argument (a number; lengths beyond 2^53 fail). */
  const head = (): {major: number; ai: number; arg: number} => {
    if (pos >= end) fail('truncated')
    const initial = bytes[pos++]!
    const major = initial >> 5
    const ai = initial & 0x1f
    if (ai === 31) fail(major === 7 ? 'a break outside an indefinite-length item' : 'an indefinite length')
    if (ai >= 28) fail('reserved additional information')
    if (ai < 24) return {major, ai, arg: ai}
    const size = 1 << (ai - 24)
    if (pos + size > end) fail('truncated')
    let arg = 0
    for (let i = 0; i < size; i++) arg = arg * 256 + bytes[pos++]!
    if (major === 7) {
      if (ai === 24 && arg < 32) fail('a simple value in two bytes that fits in one')
      return {major, ai, arg}
    }
    const shortest = ai === 24 ? 24 : 2 ** (8 * (size / 2))
    if (arg < shortest) fail('an argument not in its shortest form')
    return {major, ai, arg}
  }
  const item = (depth: number): void => {
    if (depth > MAX_CBOR_DEPTH) fail(`nesting deeper than ${MAX_CBOR_DEPTH}`)
    const {major, arg} = head()
    switch (major) {
      case 2:
      case 3:
        if (arg > end - pos) fail('truncated string')
        if (major === 3) {
          try {
            utf8.decode(bytes.subarray(pos, pos + arg))
          } catch {
            fail('a text string that is not UTF-8')
          }
        }
        pos += arg
        return
      case 4:
        if (arg > end - pos) fail('truncated array')
        for (let i = 0; i < arg; i++) item(depth + 1)
        return
      case 5: {
        if (arg * 2 > end - pos) fail('truncated map')
        const seen = new Set<string>()
        for (let i = 0; i < arg; i++) {
          const start = pos
          const keyMajor = bytes[pos]! >> 5
          if (keyMajor > 1 && keyMajor !== 3) fail('a map key that is not an integer or a text string')
          item(depth + 1)
          const key = Buffer.from(bytes.buffer, bytes.byteOffset + start, pos - start).toString('latin1')
          if (seen.has(key)) fail('a duplicate map key')
          seen.add(key)
          item(depth + 1)
        }
        return
      }
      case 6:
        item(depth + 1)
        return
      default:
      // 0, 1: integers; 7: simple values and floats — the head was all.
    }
  }
  item(0)
  if (pos !== end) fail(`${end - pos} trailing bytes`)
}

export function cborEncode(value: unknown): Uint8Array {
  const out = encoder.encode(value)
  // cbor-x may hand out a view on its shared buffer: copy so later encodes cannot change it.
  return new Uint8Array(out)
}

export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array
}

export function isMap(value: unknown): value is Map<unknown, unknown> {
  return value instanceof Map
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
