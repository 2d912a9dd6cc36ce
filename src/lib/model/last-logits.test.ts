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
function model(tail: 'matmul' | 'transpose' | 'gemm'): Uint8Array {
  const g = new GraphBuilder()
  g.input('x', FLOAT, ['batch_size', 'sequence_length', HIDDEN])
  g.output('logits', FLOAT, ['batch_size', 'sequence_length', VOCAB])
  const w = Float32Array.from({length: HIDDEN * VOCAB}, (_, i) => Math.sin(i * 0.37))
  const h = g.op('Relu', [g.op('Mul', ['x', g.scalarFloat('two', 2)])])
  if (tail === 'matmul') g.op('MatMul', [h, g.floatInit('w', [HIDDEN, VOCAB], w)], {}, 'logits')
  if (tail === 'transpose') g.op('MatMul', [h, g.op('Transpose', [g.floatInit('wt', [VOCAB, HIDDEN], w)], {perm: [1, 0]})], {}, 'logits')
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

async function logitsOf(session: ort.InferenceSession, positions: number): Promise<ort.Tensor> {
  const x = new ort.Tensor('float32', Float32Array.from({length: positions * HIDDEN}, (_, i) => Math.cos(i)), [1, positions, HIDDEN])
  return (await session.run({x})).logits as ort.Tensor
}

describe('lastPositionLogitsModel', () => {
  for (const tail of ['matmul', 'transpose'] as const) {
    it(`gives the last row of the original's logits, reading the weights from the original file (${tail})`, async () => {
      const path = join(dir, `${tail}.onnx`)
      await writeFile(path, model(tail))
      const sliced = await lastPositionLogitsModel(path)
      if (!('bytes' in sliced)) throw new Error(sliced.reason)
      // The weight is not in the rewritten bytes: it is a reference into `path`.
      expect(sliced.bytes.length).toBeLessThan(HIDDEN * VOCAB * 4)
      const original = await ort.InferenceSession.create(path)
      const rewritten = await ort.InferenceSession.create(sliced.bytes, {extra: {session: {model_external_initializers_file_folder_path: sliced.folder}}})
      const full = await logitsOf(original, 7)
      const last = await logitsOf(rewritten, 7)
      expect(full.dims).toEqual([1, 7, VOCAB])
      expect(last.dims).toEqual([1, 1, VOCAB])
      expect([...(last.data as Float32Array)]).toEqual([...(full.data as Float32Array).subarray(6 * VOCAB)])
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
    expect(await lastPositionLogitsModel(unknown)).toEqual({reason: 'the model has fields this reader does not know (a newer ONNX IR)'})
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
