// A tiny builder for ONNX graphs on top of the `onnx-proto` protobuf schema (encoding is
// protobufjs's). Only what the GPT-2 generator needs.
import onnxProto from 'onnx-proto'

export const onnx = onnxProto.onnx
type Attr = number | number[] | string | {floats: number[]}

export type DimSpec = number | string

export class GraphBuilder {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = []
  readonly initializers: InstanceType<typeof onnx.TensorProto>[] = []
  readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = []
  readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = []
  private counter = 0

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

  floatInit(name: string, dims: number[], data: Float32Array): string {
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

  encode(graphName: string, opset: number, producer: string): Uint8Array {
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
