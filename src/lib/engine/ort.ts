/**
 * onnxruntime-node, as the engine uses it. One fix on the way in: where JavaScript has a
 * Float16Array (Node 24, the enclave's Node; Node 20 has none), onnxruntime-common stores float16
 * tensor data in one, but onnxruntime-node's native binding cannot read a Float16Array ("not
 * enough space: expected N, got 0"), so every float16 model fails at its second step. The common
 * library decides once, at its first tensor, which array type float16 uses: that first tensor is
 * made here with Float16Array hidden, so float16 stays raw bits in a Uint16Array on every Node, as
 * the engine reads it (src/lib/engine/half.ts). Proven by the suite's Node 24 run (.ci/run).
 */
import * as ort from 'onnxruntime-node'

const float16 = Object.getOwnPropertyDescriptor(globalThis, 'Float16Array')
if (float16?.configurable) {
  delete (globalThis as {Float16Array?: unknown}).Float16Array
  try {
    void new ort.Tensor('float32', new Float32Array(0), [0])
  } finally {
    Object.defineProperty(globalThis, 'Float16Array', float16)
  }
}

export {ort}
/** The array type float16 tensor data comes in here (for the test that keeps this true). */
export const FLOAT16_DATA = new ort.Tensor('float16', new Uint16Array(1), [1]).data.constructor
