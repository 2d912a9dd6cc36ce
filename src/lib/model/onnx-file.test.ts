import {mkdtemp, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {GraphBuilder, onnx} from './onnx-graph.js'
import {readModelLazily, tensorBytes, writeModelFiles} from './onnx-file.js'

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-onnx-file-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

const floats = (n: number, k: number): Float32Array => Float32Array.from({length: n}, (_, i) => i * k)

/** A model with one large (16 KiB) and one small (16 bytes) initializer, in one protobuf file. */
async function inlineModel(path: string): Promise<void> {
  const g = new GraphBuilder()
  const x = g.input('x', onnx.TensorProto.DataType.FLOAT, [1, 64])
  g.floatInit('big', [64, 64], floats(64 * 64, 0.5))
  g.floatInit('small', [4], floats(4, 1))
  g.op('Add', [g.op('MatMul', [x, 'big']), 'small'], {}, 'y')
  g.output('y', onnx.TensorProto.DataType.FLOAT, [1, 64])
  await writeFile(path, g.encode('g', 17, 'test'))
}

describe('ONNX files with weights left on disk', () => {
  it('reads the structure, leaves large raw data in the file, and writes it back as external data that reads the same', async () => {
    const src = join(root, 'inline.onnx')
    await inlineModel(src)
    const {model, sources} = await readModelLazily(src)
    const [big, small] = model.graph!.initializer!
    expect(big!.rawData?.length ?? 0).toBe(0)
    expect(sources.get(big!)).toMatchObject({file: src, length: 64 * 64 * 4})
    expect(small!.rawData!.length).toBe(16)
    const bigBytes = await tensorBytes(big!, sources)
    expect(Buffer.from(bigBytes).equals(Buffer.from(floats(64 * 64, 0.5).buffer))).toBe(true)

    const out = join(root, 'out.onnx')
    const written = await writeModelFiles(model, out, (async function* () {
      yield {tensor: big!, bytes: bigBytes}
      yield {tensor: small!, bytes: await tensorBytes(small!, sources)}
    })())
    expect(written.dataFile).toBe(`${out}_data`)
    expect((await stat(`${out}_data`)).size).toBe(written.dataBytes)
    // No partial files are left behind.
    await expect(stat(`${out}.partial`)).rejects.toThrow()
    const again = await readModelLazily(out)
    const [big2, small2] = again.model.graph!.initializer!
    expect(big2!.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL)
    expect(again.sources.get(big2!)).toMatchObject({file: `${out}_data`, length: 64 * 64 * 4})
    expect(Buffer.from(await tensorBytes(big2!, again.sources)).equals(Buffer.from(bigBytes))).toBe(true)
    expect(small2!.dataLocation ?? 0).toBe(onnx.TensorProto.DataLocation.DEFAULT)
  })

  it('refuses external data that points outside the model folder, lacks a length, or is truncated', async () => {
    const external = (location: string, extra: Record<string, string> = {length: '16'}): Uint8Array => {
      const g = new GraphBuilder()
      g.input('x', onnx.TensorProto.DataType.FLOAT, [4])
      g.initializers.push(
        onnx.TensorProto.create({
          name: 'w',
          dims: [4],
          dataType: onnx.TensorProto.DataType.FLOAT,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [{key: 'location', value: location}, ...Object.entries(extra).map(([key, value]) => ({key, value}))],
        }),
      )
      g.op('Add', ['x', 'w'], {}, 'y')
      g.output('y', onnx.TensorProto.DataType.FLOAT, [4])
      return g.encode('g', 17, 'test')
    }
    for (const [name, bytes, message] of [
      ['up.onnx', external('../secret'), /outside the model's folder/],
      ['abs.onnx', external('/etc/passwd'), /outside the model's folder/],
      ['nolen.onnx', external('w.bin', {}), /offset and length/],
    ] as const) {
      await writeFile(join(root, name), bytes)
      await expect(readModelLazily(join(root, name))).rejects.toThrow(message)
    }
    await writeFile(join(root, 'short.onnx'), external('short.bin'))
    await writeFile(join(root, 'short.bin'), Buffer.alloc(8))
    const {model, sources} = await readModelLazily(join(root, 'short.onnx'))
    await expect(tensorBytes(model.graph!.initializer![0]!, sources)).rejects.toThrow(/ends before/)
  })

  it('refuses a file that is not ONNX framing', async () => {
    await writeFile(join(root, 'junk.onnx'), Buffer.from('this is not a protobuf model at all'))
    await expect(readModelLazily(join(root, 'junk.onnx'))).rejects.toThrow()
  })
})
