// Which fields of ONNX's protobuf messages onnx-proto knows (onnx.proto at ONNX 1.10, IR 8), and a
// walk over encoded bytes that finds a field it does not know. onnx-proto's decoders skip such
// fields silently, so a message decoded and encoded again would lose them: code that rewrites a
// model must check first. Comparing byte lengths is not that check: exporters (torch among them)
// write repeated integers unpacked, protobufjs writes them packed, and the content is the same.

/** Per message: field number → the message type of that field, or null for a scalar/string/bytes. */
export const ONNX_MESSAGE_FIELDS: Readonly<Record<string, Readonly<Record<number, string | null>>>> = {
  ModelProto: {1: null, 2: null, 3: null, 4: null, 5: null, 6: null, 7: 'GraphProto', 8: 'OperatorSetIdProto', 14: 'StringStringEntryProto', 20: 'TrainingInfoProto', 25: 'FunctionProto'},
  GraphProto: {1: 'NodeProto', 2: null, 5: 'TensorProto', 10: null, 11: 'ValueInfoProto', 12: 'ValueInfoProto', 13: 'ValueInfoProto', 14: 'TensorAnnotation', 15: 'SparseTensorProto'},
  NodeProto: {1: null, 2: null, 3: null, 4: null, 5: 'AttributeProto', 6: null, 7: null},
  AttributeProto: {
    1: null, 2: null, 3: null, 4: null, 5: 'TensorProto', 6: 'GraphProto', 7: null, 8: null, 9: null, 10: 'TensorProto', 11: 'GraphProto',
    13: null, 14: 'TypeProto', 15: 'TypeProto', 20: null, 21: null, 22: 'SparseTensorProto', 23: 'SparseTensorProto',
  },
  ValueInfoProto: {1: null, 2: 'TypeProto', 3: null},
  TypeProto: {1: 'TypeProto.Tensor', 4: 'TypeProto.Sequence', 5: 'TypeProto.Map', 6: null, 8: 'TypeProto.SparseTensor', 9: 'TypeProto.Optional'},
  'TypeProto.Tensor': {1: null, 2: 'TensorShapeProto'},
  'TypeProto.Sequence': {1: 'TypeProto'},
  'TypeProto.Map': {1: null, 2: 'TypeProto'},
  'TypeProto.Optional': {1: 'TypeProto'},
  'TypeProto.SparseTensor': {1: null, 2: 'TensorShapeProto'},
  TensorShapeProto: {1: 'TensorShapeProto.Dimension'},
  'TensorShapeProto.Dimension': {1: null, 2: null, 3: null},
  TensorProto: {1: null, 2: null, 3: 'TensorProto.Segment', 4: null, 5: null, 6: null, 7: null, 8: null, 9: null, 10: null, 11: null, 12: null, 13: 'StringStringEntryProto', 14: null},
  'TensorProto.Segment': {1: null, 2: null},
  SparseTensorProto: {1: 'TensorProto', 2: 'TensorProto', 3: null},
  StringStringEntryProto: {1: null, 2: null},
  OperatorSetIdProto: {1: null, 2: null},
  TensorAnnotation: {1: null, 2: 'StringStringEntryProto'},
  TrainingInfoProto: {1: 'GraphProto', 2: 'GraphProto', 3: 'StringStringEntryProto', 4: 'StringStringEntryProto'},
  FunctionProto: {1: null, 4: null, 5: null, 6: null, 7: 'NodeProto', 8: null, 9: 'OperatorSetIdProto', 10: null},
}

export type OnnxMessageName = keyof typeof ONNX_MESSAGE_FIELDS

const LENGTH_DELIMITED = 2

/**
 * The first field in `bytes` (an encoded `message`, nested messages included) that onnx-proto
 * does not know, as "Message.field N", or undefined when it knows them all. Throws on bytes that
 * are not protobuf.
 */
export function unknownOnnxField(message: string, bytes: Uint8Array): string | undefined {
  const fields = ONNX_MESSAGE_FIELDS[message]
  if (fields === undefined) throw new Error(`unknown ONNX message ${message}`)
  let pos = 0
  const varint = (): number => {
    let value = 0
    for (let shift = 0; shift < 70; shift += 7) {
      if (pos >= bytes.length) throw new Error('truncated varint')
      const b = bytes[pos++] as number
      value += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return value
    }
    throw new Error('varint too long')
  }
  while (pos < bytes.length) {
    const tag = varint()
    const field = Math.floor(tag / 8)
    const wire = tag % 8
    if (!Object.hasOwn(fields, field)) return `${message}.field ${field}`
    if (wire === 0) varint()
    else if (wire === 1) pos += 8
    else if (wire === 5) pos += 4
    else if (wire === LENGTH_DELIMITED) {
      const size = varint()
      const end = pos + size
      if (end > bytes.length) throw new Error('a field runs past its message')
      const nested = fields[field]
      if (nested !== null && nested !== undefined) {
        const found = unknownOnnxField(nested, bytes.subarray(pos, end))
        if (found !== undefined) return found
      }
      pos = end
    } else throw new Error(`unsupported wire type ${wire}`)
    if (pos > bytes.length) throw new Error('a field runs past its message')
  }
  return undefined
}

/** Decodes one message, refusing (with the field named) when it holds a field onnx-proto would drop. */
export function decodeExact<T>(type: {decode(b: Uint8Array): T}, name: OnnxMessageName, bytes: Uint8Array, what: string): T {
  const unknown = unknownOnnxField(name, bytes)
  if (unknown !== undefined) throw new UnknownOnnxFieldError(`${what} has a field this reader does not know (${unknown}, from an ONNX IR newer than 8): re-encoding would drop it`)
  return type.decode(bytes)
}

export class UnknownOnnxFieldError extends Error {}
