import {describe, expect, it} from 'vitest'

import {ONNX_MESSAGE_FIELDS, unknownOnnxField} from './onnx-fields.js'
import {onnx} from './onnx-graph.js'

/** Field → nested message, as onnx-proto's generated decoder reads them (its source is the truth). */
function fieldsOfDecoder(name: string): Record<number, string | null> {
  let type: unknown = onnx
  for (const part of name.split('.')) type = (type as Record<string, unknown>)[part]
  const source = String((type as {decode: () => unknown}).decode)
  const out: Record<number, string | null> = {}
  const cases = [...source.matchAll(/case (\d+):/g)]
  cases.forEach((m, i) => {
    const body = source.slice(m.index, cases[i + 1]?.index ?? source.length)
    out[Number(m[1])] = /\$root\.onnx\.([\w.]+)\.decode\(/.exec(body)?.[1] ?? null
  })
  return out
}

describe('ONNX_MESSAGE_FIELDS', () => {
  it("matches onnx-proto's decoders field for field", () => {
    for (const name of Object.keys(ONNX_MESSAGE_FIELDS)) expect(ONNX_MESSAGE_FIELDS[name], name).toEqual(fieldsOfDecoder(name))
  })
})

describe('unknownOnnxField', () => {
  const node = onnx.NodeProto.encode(
    onnx.NodeProto.create({opType: 'MatMul', input: ['a', 'b'], output: ['c'], attribute: [onnx.AttributeProto.create({name: 'k', ints: [1, 2, 3]})]}),
  ).finish()

  it('accepts a message it knows, with repeated integers packed or unpacked', () => {
    expect(unknownOnnxField('NodeProto', node)).toBeUndefined()
    // TensorProto.dims (field 1) written unpacked, as torch does: tag 0x08 per value.
    const unpacked = Uint8Array.from([0x08, 0x02, 0x08, 0x03, 0x10, 0x01])
    expect(unknownOnnxField('TensorProto', unpacked)).toBeUndefined()
    expect(onnx.TensorProto.decode(unpacked).dims.map(Number)).toEqual([2, 3])
  })

  it('names a field it does not know, also inside nested messages', () => {
    // NodeProto field 9 (metadata_props, IR 10) and AttributeProto field 30, nested in field 5.
    expect(unknownOnnxField('NodeProto', Uint8Array.from([...node, 0x4a, 0x00]))).toBe('NodeProto.field 9')
    const attr = Uint8Array.from([0xf0, 0x01, 0x01]) // field 30, varint 1
    expect(unknownOnnxField('NodeProto', Uint8Array.from([0x2a, attr.length, ...attr]))).toBe('AttributeProto.field 30')
  })

  it('throws on bytes that are not protobuf', () => {
    expect(() => unknownOnnxField('NodeProto', Uint8Array.from([0x0a, 0x05, 0x61]))).toThrow(/runs past/)
    expect(() => unknownOnnxField('NodeProto', Uint8Array.from([0x0b]))).toThrow(/wire type/)
  })
})
