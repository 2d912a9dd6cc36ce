// A tiny builder for ONNX graphs on top of the `onnx-proto` protobuf schema (encoding is
// protobufjs's). Only what the model generators need (synth-gpt2.ts, synth-llama.ts).
import {closeSync, openSync, writeSync} from 'node:fs'

import onnxProto from 'onnx-proto'

export const onnx = onnxProto.onnx
type Attr = number | number[] | string | {floats: number[]}

export type DimSpec = number | string

/**
 * Where float weights go instead of the model's protobuf (ONNX external data, as Optimum writes a big
 * model: one `model.onnx_data` file next to `model.onnx`). A protobuf message cannot exceed 2 GiB,
 * and writing each weight as it is made means no copy of the whole model is ever held in memory.
 */
export interface ExternalDataOptions {
  /** The data file to create (truncated when it exists). */
  path: string
  /** Its name as the model refers to it, relative to the model's folder (`model.onnx_data`). */
  location: string
  /** Tensors smaller than this stay inline (default 1024 bytes, onnx's and Optimum's threshold). */
  minBytes?: number
}

/** Tensors of 1 MiB or more start at a multiple of 64 KiB in the data file (onnx's own alignment), so a runtime may map them. */
const ALIGN_MIN_BYTES = 1 << 20
const ALIGNMENT = 64 << 10

export class GraphBuilder {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = []
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = []
  readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = []
  readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = []
  private counter = 0
  private readonly external: {fd: number; location: string; minBytes: number; offset: number} | undefined

  private readonly onWeight: ((bytes: number) => void) | undefined

  /** `onWeight`: called with the size of each float weight as it is added (generators report progress with it). */
  constructor(options: {externalData?: ExternalDataOptions; onWeight?: (bytes: number) => void} = {}) {
    this.onWeight = options.onWeight
    const x = options.externalData
    this.external = x === undefined ? undefined : {fd: openSync(x.path, 'w'), location: x.location, minBytes: x.minBytes ?? 1024, offset: 0}
  }

  /** Bytes written to the external data file so far (0 without one). */
  get externalBytes(): number {
    return this.external?.offset ?? 0
  }

  /** Adds a node; returns its output names. */
  node(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs: number | string[] = 1): string[] {
    const id = this.counter++
    const outNames = typeof outputs === 'number' ? Array.from({length: outputs}, (_, i) => `/${opType}_${id}_output_${i}`) : outputs
    const attribute = Object.entries(attrs).map(([name, value]) => attribute_(name, value))
    this.nodes.push(onnx.NodeProto.create({opType, name: `/${opType}_${id}`, input: inputs, output: outNames, attribute}))
    return outNames
  }

  /** Single-output node. */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, output?: string): string {
    const [name] = this.node(opType, inputs, attrs, output === undefined ? 1 : [output])
    return name as string
  }

  /** A float32 weight; with external data, written to the data file at once (and `data` may be dropped). */
  floatInit(name: string, dims: number[], data: Float32Array): string {
    this.onWeight?.(data.byteLength)
    const x = this.external
    if (x !== undefined && data.byteLength >= x.minBytes) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      if (bytes.byteLength >= ALIGN_MIN_BYTES && x.offset % ALIGNMENT !== 0) this.writeExternal(new Uint8Array(ALIGNMENT - (x.offset % ALIGNMENT)))
      const offset = x.offset
      this.writeExternal(bytes)
      this.initializers.push(
        onnx.TensorProto.create({
          name,
          dims,
          dataType: onnx.TensorProto.DataType.FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            onnx.StringStringEntryProto.create({key: 'location', value: x.location}),
            onnx.StringStringEntryProto.create({key: 'offset', value: String(offset)}),
            onnx.StringStringEntryProto.create({key: 'length', value: String(bytes.byteLength)}),
          ],
        }),
      )
      return name
    }
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dims,
        dataType: onnx.TensorProto.DataType.FLOAT,
        rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      }),
    )
    return name
  }

  int64Init(name: string, values: number[]): string {
    const data = new BigInt64Array(values.map((v) => BigInt(v)))
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dims: [values.length],
        dataType: onnx.TensorProto.DataType.INT64,
        rawData: new Uint8Array(data.buffer),
      }),
    )
    return name
  }

  scalarFloat(name: string, value: number): string {
    this.initializers.push(
      onnx.TensorProto.create({name, dims: [], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(new Float32Array([value]).buffer)}),
    )
    return name
  }

  scalarInt64(name: string, value: number): string {
    this.initializers.push(
      onnx.TensorProto.create({name, dims: [], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(new BigInt64Array([BigInt(value)]).buffer)}),
    )
    return name
  }

  input(name: string, elemType: number, dims: DimSpec[]): string {
    this.inputs.push(valueInfo(name, elemType, dims))
    return name
  }

  output(name: string, elemType: number, dims: DimSpec[]): void {
    this.outputs.push(valueInfo(name, elemType, dims))
  }

  /** The constants both generators' mask and shape arithmetic use, in one order (the files' bytes depend on it). */
  decoderConstants(): {minF: string; one: string; zero: string; axis0: string; axes01: string; axes12: string} {
    return {
      minF: this.scalarFloat('const_min_f', -3.4028234663852886e38),
      one: this.scalarInt64('const_one', 1),
      zero: this.scalarInt64('const_zero', 0),
      axis0: this.int64Init('const_axes_0', [0]),
      axes01: this.int64Init('const_axes_0_1', [0, 1]),
      axes12: this.int64Init('const_axes_1_2', [1, 2]),
    }
  }

  /**
   * The inputs and outputs of a decoder with a KV cache, named and shaped as Optimum's
   * `text-generation-with-past` exports them (float32): input_ids, attention_mask, position_ids,
   * past_key_values.{i}.key|value in; logits and present.{i}.key|value out. `totalDim` names the
   * past + new length as the family's real export does (GPT-2's `past_sequence_length +
   * sequence_length`, Llama's `past_sequence_length + 1`). Returns the three id inputs.
   */
  decoderIo(shape: {layers: number; kvHeads: number; headDim: number; vocab: number; totalDim?: string}): {inputIds: string; attentionMask: string; positionIds: string} {
    const {FLOAT, INT64} = onnx.TensorProto.DataType
    const total = shape.totalDim ?? 'past_sequence_length + sequence_length'
    const inputIds = this.input('input_ids', INT64, ['batch_size', 'sequence_length'])
    const attentionMask = this.input('attention_mask', INT64, ['batch_size', total])
    const positionIds = this.input('position_ids', INT64, ['batch_size', 'sequence_length'])
    for (let i = 0; i < shape.layers; i++) {
      for (const part of ['key', 'value']) this.input(`past_key_values.${i}.${part}`, FLOAT, ['batch_size', shape.kvHeads, 'past_sequence_length', shape.headDim])
    }
    this.output('logits', FLOAT, ['batch_size', 'sequence_length', shape.vocab])
    for (let i = 0; i < shape.layers; i++) {
      for (const part of ['key', 'value']) this.output(`present.${i}.${part}`, FLOAT, ['batch_size', shape.kvHeads, total, shape.headDim])
    }
    return {inputIds, attentionMask, positionIds}
  }

  private writeExternal(bytes: Uint8Array): void {
    const x = this.external as NonNullable<typeof this.external>
    for (let done = 0; done < bytes.byteLength; ) done += writeSync(x.fd, bytes, done, bytes.byteLength - done, x.offset + done)
    x.offset += bytes.byteLength
  }

  /** Closes the external data file (encode does; call it when building fails half-way). */
  close(): void {
    if (this.external !== undefined && this.external.fd >= 0) {
      closeSync(this.external.fd)
      this.external.fd = -1
    }
  }

  encode(graphName: string, opset: number, producer: string): Uint8Array {
    this.close()
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: producer,
      producerVersion: '1',
      opsetImport: [onnx.OperatorSetIdProto.create({domain: '', version: opset})],
      graph: onnx.GraphProto.create({
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    })
    return onnx.ModelProto.encode(model).finish()
  }
}

function valueInfo(name: string, elemType: number, dims: DimSpec[]): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => (typeof d === 'number' ? {dimValue: d} : {dimParam: d})),
        }),
      }),
    }),
  })
}

function attribute_(name: string, value: Attr): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType
  if (typeof value === 'number') {
    return Number.isInteger(value) && !Object.is(value, -0)
      ? onnx.AttributeProto.create({name, type: T.INT, i: value})
      : onnx.AttributeProto.create({name, type: T.FLOAT, f: value})
  }
  if (typeof value === 'string') return onnx.AttributeProto.create({name, type: T.STRING, s: new TextEncoder().encode(value)})
  if (Array.isArray(value)) return onnx.AttributeProto.create({name, type: T.INTS, ints: value})
  return onnx.AttributeProto.create({name, type: T.FLOATS, floats: value.floats})
}
