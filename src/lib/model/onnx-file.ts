// Reading and writing ONNX model files whose weights do not fit comfortably in memory twice.
//
// Reading: only the framing of the file (field tags and lengths) is walked with positional reads;
// the graph structure and small tensors are decoded by onnx-proto, while the raw bytes of each large
// initializer stay in the file and are recorded as a TensorSource (file, offset, length), as are
// the weights of a model that already keeps them in external data files. A weight is read when it
// is needed, one at a time.
//
// Writing: the graph goes to `<file>.onnx`; every tensor of EXTERNAL_MIN_BYTES or more goes to
// `<file>.onnx_data` as ONNX external data (location, offset, length), the name onnxruntime, Optimum
// and transformers.js use, so a model of any size is written the same way (a single protobuf file
// stops at 2 GB).
import {open, realpath, rename, rm} from 'node:fs/promises'
import {basename, dirname, isAbsolute, join, normalize, sep} from 'node:path'

import type onnxProto from 'onnx-proto'

import {decodeExact} from './onnx-fields.js'
import {onnx} from './onnx-graph.js'

export type ModelProto = onnxProto.onnx.IModelProto
export type GraphProto = onnxProto.onnx.IGraphProto
export type TensorProto = onnxProto.onnx.ITensorProto
export type NodeProto = onnxProto.onnx.INodeProto
export type AttributeProto = onnxProto.onnx.IAttributeProto

/** Field numbers walked here (onnx.proto). */
const MODEL_GRAPH = 7
const GRAPH_INITIALIZER = 5
const TENSOR_RAW_DATA = 9
const LENGTH_DELIMITED = 2
/** Initializers smaller than this are decoded with the structure (and written inline). */
export const EXTERNAL_MIN_BYTES = 4096
/** Structure (everything but large raw weights) above this means a file this reader will not hold in memory. */
const MAX_STRUCTURE_BYTES = 256 << 20

/** Where a tensor's bytes are: a region of a file on disk. */
export interface TensorSource {
  file: string
  offset: number
  length: number
}

export interface LazyModel {
  model: ModelProto
  /** The data of every top-level initializer that was not decoded inline. */
  sources: Map<TensorProto, TensorSource>
}

export interface Field {
  field: number
  wire: number
  start: number
  payload: number
  end: number
}

/**
 * Positional reads over an ONNX (protobuf) file: the fields of a message, and the bytes of those
 * that are kept (decoded), at most `maxKept` in all.
 */
/** What Framing reads through: a FileHandle, or bytes in memory (./memory.ts memoryHandle). */
export interface PositionalReader {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{bytesRead: number}>
}

export class Framing {
  private readonly header = Buffer.alloc(24)
  private kept = 0
  constructor(
    private readonly file: PositionalReader,
    private readonly maxKept = MAX_STRUCTURE_BYTES,
  ) {}

  async read(position: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length)
    for (let done = 0; done < length; ) {
      const {bytesRead} = await this.file.read(out, done, length - done, position + done)
      if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`)
      done += bytesRead
    }
    return out
  }

  /** Reads bytes that are decoded (structure), within maxKept in all. */
  async keep(from: number, to: number): Promise<Buffer> {
    this.kept += to - from
    if (this.kept > this.maxKept) throw new Error(`more than ${this.maxKept >> 20} MiB of graph structure and inline tensors`)
    return this.read(from, to - from)
  }

  async *fields(from: number, to: number): AsyncGenerator<Field> {
    for (let pos = from; pos < to; ) {
      const {bytesRead} = await this.file.read(this.header, 0, Math.min(this.header.length, to - pos), pos)
      let at = 0
      const varint = (): number => {
        let value = 0
        for (let shift = 0; shift < 70; shift += 7) {
          if (at >= bytesRead) throw new Error(`truncated varint at byte ${pos + at}`)
          const b = this.header[at++]!
          value += (b & 0x7f) * 2 ** shift
          if (b < 0x80) return value
        }
        throw new Error(`varint too long at byte ${pos}`)
      }
      const tag = varint()
      const wire = tag % 8
      let size = 0
      if (wire === 0) varint()
      else if (wire === 1) size = 8
      else if (wire === 5) size = 4
      else if (wire === LENGTH_DELIMITED) size = varint()
      else throw new Error(`unsupported wire type ${wire} at byte ${pos}`)
      const payload = pos + at
      const end = payload + size
      if (end > to) throw new Error(`field at byte ${pos} runs past its message`)
      yield {field: Math.floor(tag / 8), wire, start: pos, payload, end}
      pos = end
    }
  }
}

/**
 * Reads a model's structure, leaving large weights on disk. External data locations are resolved
 * against the model's folder and must stay inside it (no absolute paths, no `..`), as onnxruntime
 * requires. Throws a plain Error saying what is wrong with the file.
 */
export async function readModelLazily(path: string): Promise<LazyModel> {
  const real = await realpath(path)
  const file = await open(real, 'r')
  try {
    const size = (await file.stat()).size
    const framing = new Framing(file)
    const rest: Buffer[] = []
    const sources = new Map<TensorProto, TensorSource>()
    let graph: GraphProto | undefined
    for await (const f of framing.fields(0, size)) {
      if (f.field === MODEL_GRAPH && f.wire === LENGTH_DELIMITED) {
        if (graph !== undefined) throw new Error('the model has two graph fields')
        const structure: Buffer[] = []
        const initializers: TensorProto[] = []
        for await (const g of framing.fields(f.payload, f.end)) {
          if (g.field !== GRAPH_INITIALIZER || g.wire !== LENGTH_DELIMITED) structure.push(await framing.keep(g.start, g.end))
          else if (g.end - g.payload < EXTERNAL_MIN_BYTES) initializers.push(decodeExact(onnx.TensorProto, 'TensorProto', await framing.keep(g.payload, g.end), 'an initializer'))
          else {
            const header: Buffer[] = []
            let raw: Field | undefined
            for await (const t of framing.fields(g.payload, g.end)) {
              if (t.field === TENSOR_RAW_DATA && t.wire === LENGTH_DELIMITED) raw = t
              else header.push(await framing.keep(t.start, t.end))
            }
            const tensor = decodeExact(onnx.TensorProto, 'TensorProto', Buffer.concat(header), 'an initializer')
            if (raw !== undefined) sources.set(tensor, {file: real, offset: raw.payload, length: raw.end - raw.payload})
            initializers.push(tensor)
          }
        }
        graph = decodeExact(onnx.GraphProto, 'GraphProto', Buffer.concat(structure), 'the graph')
        graph.initializer = initializers
      } else {
        rest.push(await framing.keep(f.start, f.end))
      }
    }
    if (graph === undefined) throw new Error('the model has no graph')
    const model = decodeExact(onnx.ModelProto, 'ModelProto', Buffer.concat(rest), 'the model')
    model.graph = graph
    for (const tensor of initializersOf(graph)) {
      if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue
      if (sources.has(tensor)) throw new Error(`initializer ${tensor.name} has both raw and external data`)
      // External locations are relative to the folder the model was named in (a symlinked file's, not its target's).
      sources.set(tensor, externalSource(tensor, dirname(path)))
    }
    return {model, sources}
  } finally {
    await file.close()
  }
}

/** A graph's initializers (the list, created when absent). */
export function initializersOf(graph: GraphProto): TensorProto[] {
  graph.initializer ??= []
  return graph.initializer
}

function externalSource(tensor: TensorProto, folder: string): TensorSource {
  const entries = new Map((tensor.externalData ?? []).map((e) => [e.key, e.value ?? '']))
  const location = entries.get('location')
  if (location === undefined || location === '') throw new Error(`initializer ${tensor.name} has external data without a location`)
  const clean = normalize(location)
  if (isAbsolute(clean) || clean === '..' || clean.startsWith(`..${sep}`)) throw new Error(`initializer ${tensor.name} has external data outside the model's folder (${location})`)
  const offset = Number(entries.get('offset') ?? 0)
  const length = entries.has('length') ? Number(entries.get('length')) : Number.NaN
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new Error(`initializer ${tensor.name} has external data without a valid offset and length`)
  }
  return {file: join(folder, clean), offset, length}
}

/** The bytes of a tensor: from its source on disk, its raw_data, or its typed fields (float_data, int64_data …) for float32. */
export async function tensorBytes(tensor: TensorProto, sources: ReadonlyMap<TensorProto, TensorSource>): Promise<Uint8Array> {
  const source = sources.get(tensor)
  if (source !== undefined) {
    const file = await open(source.file, 'r')
    try {
      const out = Buffer.alloc(source.length)
      for (let done = 0; done < source.length; ) {
        const {bytesRead} = await file.read(out, done, source.length - done, source.offset + done)
        if (bytesRead === 0) throw new Error(`${basename(source.file)} ends before the data of ${tensor.name}`)
        done += bytesRead
      }
      return out
    } finally {
      await file.close()
    }
  }
  if (tensor.rawData !== undefined && tensor.rawData !== null && tensor.rawData.length > 0) return tensor.rawData
  if (tensor.dataType === onnx.TensorProto.DataType.FLOAT && (tensor.floatData?.length ?? 0) > 0) {
    const f = Float32Array.from(tensor.floatData ?? [])
    return new Uint8Array(f.buffer)
  }
  return new Uint8Array(0)
}

/** Drops every field that holds or points to a tensor's data (protobufjs encodes the fields a message owns). */
function clearData(tensor: TensorProto): void {
  const fields = ['rawData', 'floatData', 'int32Data', 'int64Data', 'doubleData', 'uint64Data', 'stringData', 'externalData', 'dataLocation'] as const
  for (const f of fields) delete (tensor as Partial<TensorProto>)[f]
}

/** A tensor of the model to be written and its bytes (written inline when small, as external data otherwise). */
export interface TensorData {
  tensor: TensorProto
  bytes: Uint8Array
}

/** Large tensors start at this alignment in the data file (lets onnxruntime map them), others at 16 bytes. */
const ALIGN_LARGE = 64 << 10
const ALIGN_LARGE_FROM = 1 << 20

/**
 * Writes `model` to `onnxPath` and its large tensors to `<onnxPath>_data`. `tensors` yields each
 * initializer of `model` whose data is to be set, with its bytes, one at a time; the others are
 * written as they are (with their inline data). Both files are written under temporary names and
 * renamed at the end, so a failure leaves no half-written model. Returns the bytes of each file.
 */
export async function writeModelFiles(model: ModelProto, onnxPath: string, tensors: AsyncIterable<TensorData>): Promise<{onnxBytes: number; dataBytes: number; dataFile: string | undefined}> {
  const dataPath = `${onnxPath}_data`
  const tmpOnnx = `${onnxPath}.partial`
  const tmpData = `${dataPath}.partial`
  const location = basename(dataPath)
  const data = await open(tmpData, 'w')
  let offset = 0
  try {
    try {
      for await (const {tensor, bytes} of tensors) {
        clearData(tensor)
        if (bytes.length < EXTERNAL_MIN_BYTES) {
          tensor.rawData = bytes
          continue
        }
        const align = bytes.length >= ALIGN_LARGE_FROM ? ALIGN_LARGE : 16
        const start = Math.ceil(offset / align) * align
        for (let done = 0; done < bytes.length; ) {
          const {bytesWritten} = await data.write(bytes, done, bytes.length - done, start + done)
          done += bytesWritten
        }
        offset = start + bytes.length
        tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
        tensor.externalData = [
          onnx.StringStringEntryProto.create({key: 'location', value: location}),
          onnx.StringStringEntryProto.create({key: 'offset', value: String(start)}),
          onnx.StringStringEntryProto.create({key: 'length', value: String(bytes.length)}),
        ]
      }
      await data.sync()
    } finally {
      await data.close()
    }
    const encoded = onnx.ModelProto.encode(model).finish()
    const out = await open(tmpOnnx, 'w')
    try {
      for (let done = 0; done < encoded.length; ) {
        const {bytesWritten} = await out.write(encoded, done, encoded.length - done)
        done += bytesWritten
      }
      await out.sync()
    } finally {
      await out.close()
    }
    if (offset > 0) await rename(tmpData, dataPath)
    else {
      await rm(tmpData, {force: true})
      await rm(dataPath, {force: true})
    }
    await rename(tmpOnnx, onnxPath)
    return {onnxBytes: encoded.length, dataBytes: offset, dataFile: offset > 0 ? dataPath : undefined}
  } catch (error) {
    await rm(tmpData, {force: true})
    await rm(tmpOnnx, {force: true})
    throw error
  }
}
