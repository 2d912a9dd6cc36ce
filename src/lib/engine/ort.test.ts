import {describe, expect, it} from 'vitest'

import {FLOAT16_DATA, ort} from './ort.js'

describe('onnxruntime as the engine loads it', () => {
  // Meaningful where Node has a Float16Array (Node 24: the suite's second run in .ci/run, and the
  // enclave): there the binding cannot read one, and every float16 model failed at its second step.
  it('keeps float16 tensor data as raw bits in a Uint16Array, and leaves the global Float16Array in place', () => {
    expect(FLOAT16_DATA).toBe(Uint16Array)
    expect(new ort.Tensor('float16', new Uint16Array([0x3c00]), [1]).data).toBeInstanceOf(Uint16Array)
    expect(typeof (globalThis as {Float16Array?: unknown}).Float16Array).toBe(Number(process.versions.node.split('.')[0]) >= 24 ? 'function' : 'undefined')
  })
})
