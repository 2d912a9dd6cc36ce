import {mkdir, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import * as ort from 'onnxruntime-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {LAST_HIDDEN, lastPositionLogitsModel, sliceLastPosition} from './last-logits.js'
import {GraphBuilder, onnx} from './onnx-graph.js'

const {FLOAT} = onnx.TensorProto.DataType
const HIDDEN = 4
const VOCAB = 5000 // a weight of 80 KB: external data in the rewritten graph

let dir: string

/** x [1, S, HIDDEN] → Relu → MatMul(W or Wᵀ) → logits [1, S, VOCAB]; or another tail. */
function model(tail: 'matmul' | 'transpose' | 'gemm' | 'cast' | 'if'): Uint8Array {
  const g = new GraphBuilder()
  g.input('x', FLOAT, ['batch_size', 'sequence_length', HIDDEN])
  g.output('logits', FLOAT, ['batch_size', 'sequence_length', VOCAB])
  const w = Float32Array.from({length: HIDDEN * VOCAB}, (_, i) => Math.sin(i * 0.37))
  const h = g.op('Relu', [g.op('Mul', ['x', g.scalarFloat('two', 2)])])
  if (tail === 'matmul') g.op('MatMul', [h, g.floatInit('w', [HIDDEN, VOCAB], w)], {}, 'logits')
  if (tail === 'transpose') g.op('MatMul', [h, g.op('Transpose', [g.floatInit('wt', [VOCAB, HIDDEN], w)], {perm: [1, 0]})], {}, 'logits')
  // Llama's export: the head's output goes through a Cast to float before it is `logits`.
  if (tail === 'cast') g.op('Cast', [g.op('MatMul', [h, g.floatInit('w', [HIDDEN, VOCAB], w)])], {to: FLOAT}, 'logits')
  // Optimum's merged decoder: an If picks one of two branches, each with its own head over outer names.
  if (tail === 'if') {
    const branch = (name: string, scale: number): InstanceType<typeof onnx.GraphProto> => {
      const b = new GraphBuilder()
      b.op('MatMul', [b.op('Mul', [h, b.scalarFloat(`${name}_scale`, scale)], {}, `${name}_scaled`), 'w'], {}, `${name}_logits`)
      b.output(`${name}_logits`, FLOAT, ['batch_size', 'sequence_length', VOCAB])
      return onnx.GraphProto.create({name, node: b.nodes, initializer: b.initializers, output: b.outputs})
    }
    g.floatInit('w', [HIDDEN, VOCAB], w)
    g.input('use_cache_branch', onnx.TensorProto.DataType.BOOL, [1])
    g.nodes.push(
      onnx.NodeProto.create({
        opType: 'If',
        name: '/If',
        input: ['use_cache_branch'],
        output: ['logits'],
        attribute: [
          onnx.AttributeProto.create({name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('then', 1)}),
          onnx.AttributeProto.create({name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('else', -1)}),
        ],
      }),
    )
  }
  if (tail === 'gemm') {
    const flat = g.op('Reshape', [h, g.int64Init('flat', [-1, HIDDEN])])
    const out = g.op('Gemm', [flat, g.floatInit('wt', [VOCAB, HIDDEN], w)], {transB: 1})
    g.op('Reshape', [out, g.int64Init('shape', [1, -1, VOCAB])], {}, 'logits')
  }
  return g.encode('g', 17, 'test')
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nle-last-logits-'))
})

afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

async function logitsOf(session: ort.InferenceSession, positions: number, branch?: boolean): Promise<ort.Tensor> {
  const x = new ort.Tensor('float32', Float32Array.from({length: positions * HIDDEN}, (_, i) => Math.cos(i)), [1, positions, HIDDEN])
  const feeds: Record<string, ort.Tensor> = {x}
  if (branch !== undefined) feeds.use_cache_branch = new ort.Tensor('bool', new Uint8Array([branch ? 1 : 0]), [1])
  return (await session.run(feeds)).logits as ort.Tensor
}

describe('lastPositionLogitsModel', () => {
  for (const tail of ['matmul', 'transpose', 'cast', 'if'] as const) {
    it(`gives the last row of the original's logits, reading the weights from the original file (${tail})`, async () => {
      const path = join(dir, `${tail}.onnx`)
      await writeFile(path, model(tail))
      const sliced = await lastPositionLogitsModel(path)
      if (!('bytes' in sliced)) throw new Error(sliced.reason)
      // The weight is not in the rewritten bytes: it is a reference into `path`.
      expect(sliced.bytes.length).toBeLessThan(HIDDEN * VOCAB * 4)
      const original = await ort.InferenceSession.create(path)
      const rewritten = await ort.InferenceSession.create(sliced.bytes, {extra: {session: {model_external_initializers_file_folder_path: sliced.folder}}})
      for (const branch of tail === 'if' ? [true, false] : [undefined]) {
        const full = await logitsOf(original, 7, branch)
        const last = await logitsOf(rewritten, 7, branch)
        expect(full.dims).toEqual([1, 7, VOCAB])
        expect(last.dims).toEqual([1, 1, VOCAB])
        expect([...(last.data as Float32Array)]).toEqual([...(full.data as Float32Array).subarray(6 * VOCAB)])
      }
      await original.release()
      await rewritten.release()
    })
  }

  it('keeps weights that were already external data (model.onnx_data, as Optimum writes large models) where they are', async () => {
    const sub = await mkdtemp(join(dir, 'external-'))
    const model_ = onnx.ModelProto.decode(model('matmul'))
    const w = model_.graph!.initializer!.find((t) => t.name === 'w')!
    await writeFile(join(sub, 'model.onnx_data'), w.rawData!)
    w.rawData = new Uint8Array(0)
    w.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
    w.externalData = [
      onnx.StringStringEntryProto.create({key: 'location', value: 'model.onnx_data'}),
      onnx.StringStringEntryProto.create({key: 'offset', value: '0'}),
      onnx.StringStringEntryProto.create({key: 'length', value: String(HIDDEN * VOCAB * 4)}),
    ]
    const path = join(sub, 'model.onnx')
    await writeFile(path, onnx.ModelProto.encode(model_).finish())
    const sliced = await lastPositionLogitsModel(path)
    if (!('bytes' in sliced)) throw new Error(sliced.reason)
    expect(sliced.folder).toBe(sub)
    const original = await ort.InferenceSession.create(path)
    const rewritten = await ort.InferenceSession.create(sliced.bytes, {extra: {session: {model_external_initializers_file_folder_path: sliced.folder}}})
    const full = await logitsOf(original, 3)
    expect([...((await logitsOf(rewritten, 3)).data as Float32Array)]).toEqual([...(full.data as Float32Array).subarray(2 * VOCAB)])
    await original.release()
    await rewritten.release()
  })

  it('follows a symlinked model file (a Hugging Face cache snapshot) to the folder its bytes are in', async () => {
    await mkdir(join(dir, 'blobs'), {recursive: true})
    await mkdir(join(dir, 'snapshot'), {recursive: true})
    await writeFile(join(dir, 'blobs', 'abc123'), model('matmul'))
    await symlink(join('..', 'blobs', 'abc123'), join(dir, 'snapshot', 'model.onnx'))
    const sliced = await lastPositionLogitsModel(join(dir, 'snapshot', 'model.onnx'))
    if (!('bytes' in sliced)) throw new Error(sliced.reason)
    expect(sliced.folder).toBe(join(dir, 'blobs'))
    const rewritten = await ort.InferenceSession.create(sliced.bytes, {extra: {session: {model_external_initializers_file_folder_path: sliced.folder}}})
    expect((await logitsOf(rewritten, 4)).dims).toEqual([1, 1, VOCAB])
    await rewritten.release()
  })

  it('says why it does not apply: fields it does not know, a second reader of logits', async () => {
    // Field 99, varint 1: not in onnx-proto's schema, so re-encoding would drop it.
    const unknown = join(dir, 'unknown.onnx')
    await writeFile(unknown, Buffer.concat([model('matmul'), Buffer.from([0x98, 0x06, 0x01])]))
    expect(await lastPositionLogitsModel(unknown)).toEqual({reason: expect.stringContaining('the model has a field this reader does not know (ModelProto.field 99')})
    // Repeated integers written unpacked (as torch writes dims) are known fields: the rewrite applies.
    const unpacked = onnx.ModelProto.decode(model('matmul'))
    unpacked.graph!.initializer!.find((t) => t.name === 'w')!.dims = []
    const w = unpacked.graph!.initializer!.find((t) => t.name === 'w')!
    const bytes = Buffer.from(onnx.ModelProto.encode(unpacked).finish())
    // Re-insert the dims of 'w' unpacked: field 1 varint per value, in front of its other fields.
    const name = Buffer.from(onnx.TensorProto.encode(onnx.TensorProto.create({name: 'w'})).finish())
    const at = bytes.indexOf(name)
    const dims = Buffer.from([0x08, HIDDEN, 0x08, 0x88, 0x27]) // 4, 5000
    const grown = Buffer.concat([bytes.subarray(0, at), dims, bytes.subarray(at)])
    expect(w.name).toBe('w')
    const fixed = fixLengths(grown, at, dims.length)
    const unpackedPath = join(dir, 'unpacked.onnx')
    await writeFile(unpackedPath, fixed)
    expect(onnx.ModelProto.decode(fixed).graph!.initializer!.find((t) => t.name === 'w')!.dims!.map(Number)).toEqual([HIDDEN, VOCAB])
    expect(await lastPositionLogitsModel(unpackedPath)).toHaveProperty('bytes')
    const m = onnx.ModelProto.decode(model('matmul'))
    m.graph!.node!.push(onnx.NodeProto.create({opType: 'Identity', input: ['logits'], output: ['copy']}))
    expect(sliceLastPosition(m.graph as never)).toBe('other nodes read logits')
  })

  it('leaves a graph alone when its LM head is not a final MatMul, and rejects a file that is not protobuf', async () => {
    const path = join(dir, 'gemm.onnx')
    await writeFile(path, model('gemm'))
    expect(await lastPositionLogitsModel(path)).toEqual({reason: 'logits come from Reshape, not from a final MatMul'})
    const junk = join(dir, 'junk.onnx')
    await writeFile(junk, Buffer.from('\xff\xff\xff\xff not an onnx file', 'latin1'))
    expect(await lastPositionLogitsModel(junk)).toEqual({reason: expect.stringMatching(/varint|wire type|runs past/)})
    expect(await lastPositionLogitsModel(join(dir, 'absent.onnx'))).toEqual({reason: expect.stringContaining('ENOENT')})
  })
})

/**
 * Grows by `added` the length prefixes of the messages that enclose byte `at` of an encoded
 * ModelProto (graph, then initializer); assumes each prefix keeps its varint width.
 */
function fixLengths(bytes: Buffer, at: number, added: number): Buffer {
  const out: number[] = [...bytes]
  // Walk ModelProto → field 7 (graph) → field 5 (initializer) containing `at`, bumping their lengths.
  const walk = (from: number, to: number, path: number[]): void => {
    let pos = from
    while (pos < to) {
      const tagStart = pos
      let tag = 0
      let shift = 0
      for (;;) {
        const b = out[pos++]!
        tag += (b & 0x7f) * 2 ** shift
        shift += 7
        if (b < 0x80) break
      }
      if (tag % 8 !== 2) {
        if (tag % 8 === 0) while (out[pos++]! >= 0x80);
        else pos += tag % 8 === 1 ? 8 : 4
        continue
      }
      const lenStart = pos
      let len = 0
      shift = 0
      for (;;) {
        const b = out[pos++]!
        len += (b & 0x7f) * 2 ** shift
        shift += 7
        if (b < 0x80) break
      }
      const end = pos + len
      if (path.length > 0 && Math.floor(tag / 8) === path[0] && pos <= at && at < end) {
        const width = pos - lenStart
        const grown: number[] = []
        let v = len + added
        do {
          grown.push((v & 0x7f) | 0x80)
          v = Math.floor(v / 128)
        } while (v > 0)
        grown[grown.length - 1]! &= 0x7f
        if (grown.length !== width) throw new Error(`length prefix width changed at ${tagStart}`)
        out.splice(lenStart, width, ...grown)
        walk(pos, end + added, path.slice(1))
        return
      }
      pos = end
    }
  }
  walk(0, out.length, [7, 5])
  return Buffer.from(out)
}

describe('sliceLastPosition', () => {
  it('puts the slice right before the head and makes the output one position long', () => {
    const graph = onnx.ModelProto.decode(model('matmul')).graph!
    expect(sliceLastPosition(graph as never)).toBe(true)
    const ops = graph.node!.map((n) => n.opType)
    expect(ops.slice(-2)).toEqual(['Slice', 'MatMul'])
    expect(graph.node!.at(-1)!.input![0]).toBe(LAST_HIDDEN)
    expect(graph.output!.find((o) => o.name === 'logits')!.type!.tensorType!.shape!.dim![1]!.dimValue).toBe(1)
  })
})
