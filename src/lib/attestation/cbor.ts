/**
 * The one CBOR configuration of the attestation domain (cbor-x). Decoding keeps maps as `Map` so
 * integer keys (COSE labels, PCR indexes) stay integers and text keys stay text; records and
 * structured-clone extensions are off. Encoding writes plain byte strings (no typed-array tags),
 * minimal map headers and no records — the same shape serde_cbor produces for nsm-api's types.
 */
import {Decoder, Encoder} from 'cbor-x'

const decoder = new Decoder({mapsAsObjects: false, useRecords: false, structuredClone: false, bundleStrings: false})
const encoder = new Encoder({mapsAsObjects: false, useRecords: false, structuredClone: false, tagUint8Array: false, variableMapSize: true, bundleStrings: false})

/** Decode exactly one CBOR item; throws (cbor-x errors) on truncation or trailing bytes. */
export function cborDecode(bytes: Uint8Array): unknown {
  return decoder.decode(bytes)
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
