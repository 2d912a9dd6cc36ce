// The GPT-2 architecture as ONNX, with seeded random weights (see synth.ts for the folder around it).
//
// The ONNX has the I/O names of an Optimum export of GPT2LMHeadModel with past:
//   inputs  input_ids, attention_mask, position_ids, past_key_values.{i}.key|value
//   outputs logits, present.{i}.key|value        (key/value: [batch, heads, seq, head_dim])
// Graph per block: LayerNorm → fused QKV projection → causal multi-head attention over
// concat(past, new) → output projection → residual → LayerNorm → GELU (tanh) MLP → residual;
// then a final LayerNorm and an LM head tied to the token embedding.
import {Rng} from '../engine/rng.js'
import {ModelError} from './errors.js'
import {GPT2_EOS_ID, GPT2_VOCAB_SIZE} from './gpt2-tokenizer.js'
import {GraphBuilder, onnx} from './onnx-graph.js'
import type {Gpt2Shape} from './synth-presets.js'

/** The parameter count of a GPT-2 of this shape (tied LM head counted once). */
export function gpt2ParameterCount(s: Gpt2Shape): number {
  const e = s.nEmbd
  const block = 2 * 2 * e + (e * 3 * e + 3 * e) + (e * e + e) + (e * 4 * e + 4 * e) + (4 * e * e + e)
  return GPT2_VOCAB_SIZE * e + s.nPositions * e + s.nLayer * block + 2 * e
}

/** Builds the ONNX bytes of a seeded GPT-2 of the given shape (weights external when `g` writes external data). */
export function buildGpt2Onnx(shape: Gpt2Shape, seed: number, g: GraphBuilder = new GraphBuilder()): Uint8Array {
  const {nLayer, nEmbd: E, nHead: H, nPositions} = shape
  if (E % H !== 0) throw new ModelError('MODEL_CONFIG_INVALID', `n_embd ${E} is not a multiple of n_head ${H}.`)
  const D = E / H
  const rng = new Rng(seed)
  const normal = (n: number, std: number): Float32Array => {
    const a = new Float32Array(n)
    for (let i = 0; i < n; i++) a[i] = rng.normal() * std
    return a
  }
  const filled = (n: number, v: number): Float32Array => new Float32Array(n).fill(v)
  const std = shape.initStd
  // GPT-2 scales the residual projections by 1/sqrt(2 * n_layer).
  const projStd = std / Math.sqrt(2 * nLayer)

  const {inputIds, attentionMask, positionIds} = g.decoderIo({layers: nLayer, kvHeads: H, headDim: D, vocab: GPT2_VOCAB_SIZE})

  const wte = g.floatInit('transformer.wte.weight', [GPT2_VOCAB_SIZE, E], normal(GPT2_VOCAB_SIZE * E, std))
  const wpe = g.floatInit('transformer.wpe.weight', [nPositions, E], normal(nPositions * E, std / 2))
  const {minF, one, zero, axis0, axes01, axes12} = g.decoderConstants()
  const idx1 = g.int64Init('const_idx_1', [1])
  const idx2 = g.int64Init('const_idx_2', [2])
  const splitQkv = g.int64Init('const_split_qkv', [E, E, E])
  const headsShape = g.int64Init('const_heads_shape', [0, 0, H, D])
  const mergeShape = g.int64Init('const_merge_shape', [0, 0, E])
  const scale = g.scalarFloat('const_attn_scale', 1 / Math.sqrt(D))
  const half = g.scalarFloat('const_half', 0.5)
  const oneF = g.scalarFloat('const_one_f', 1)
  const geluC = g.scalarFloat('const_gelu_c', Math.sqrt(2 / Math.PI))
  const geluK = g.scalarFloat('const_gelu_k', 0.044715)
  const three = g.scalarFloat('const_three', 3)

  // Embeddings.
  const tok = g.op('Gather', [wte, inputIds], {axis: 0})
  const pos = g.op('Gather', [wpe, positionIds], {axis: 0})
  let h = g.op('Add', [tok, pos])

  // Mask [batch, 1, seq, total]: key j is visible to query i iff j <= past + i and attention_mask[j] = 1.
  const seqLen = g.op('Gather', [g.op('Shape', [inputIds]), idx1], {axis: 0}) // [1]
  const pastLen = g.op('Gather', [g.op('Shape', ['past_key_values.0.key']), idx2], {axis: 0}) // [1]
  const total = g.op('Add', [seqLen, pastLen])
  const pastS = g.op('Squeeze', [pastLen, axis0])
  const totalS = g.op('Squeeze', [total, axis0])
  const qPos = g.op('Unsqueeze', [g.op('Range', [pastS, totalS, one]), idx1]) // [seq, 1]
  const kPos = g.op('Unsqueeze', [g.op('Range', [zero, totalS, one]), axis0]) // [1, total]
  const causal = g.op('Unsqueeze', [g.op('LessOrEqual', [kPos, qPos]), axes01]) // [1, 1, seq, total]
  const padding = g.op('Unsqueeze', [g.op('Cast', [attentionMask], {to: onnx.TensorProto.DataType.BOOL}), axes12]) // [b, 1, 1, total]
  const visible = g.op('And', [causal, padding])

  const layerNorm = (x: string, prefix: string): string =>
    g.op('LayerNormalization', [x, g.floatInit(`${prefix}.weight`, [E], filled(E, 1)), g.floatInit(`${prefix}.bias`, [E], filled(E, 0))], {
      axis: -1,
      epsilon: 1e-5,
    })
  const linear = (x: string, prefix: string, nIn: number, nOut: number, wStd: number): string => {
    const w = g.floatInit(`${prefix}.weight`, [nIn, nOut], normal(nIn * nOut, wStd))
    const b = g.floatInit(`${prefix}.bias`, [nOut], filled(nOut, 0))
    return g.op('Add', [g.op('MatMul', [x, w]), b])
  }
  const toHeads = (x: string): string => g.op('Transpose', [g.op('Reshape', [x, headsShape])], {perm: [0, 2, 1, 3]})

  for (let i = 0; i < nLayer; i++) {
    const p = `transformer.h.${i}`
    const x = layerNorm(h, `${p}.ln_1`)
    const qkv = linear(x, `${p}.attn.c_attn`, E, 3 * E, std)
    const [q, k, v] = g.node('Split', [qkv, splitQkv], {axis: 2}, 3) as [string, string, string]
    const kAll = g.op('Concat', [`past_key_values.${i}.key`, toHeads(k)], {axis: 2}, `present.${i}.key`)
    const vAll = g.op('Concat', [`past_key_values.${i}.value`, toHeads(v)], {axis: 2}, `present.${i}.value`)
    const qh = g.op('Mul', [toHeads(q), scale])
    const scores = g.op('MatMul', [qh, g.op('Transpose', [kAll], {perm: [0, 1, 3, 2]})])
    const probs = g.op('Softmax', [g.op('Where', [visible, scores, minF])], {axis: -1})
    const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, vAll])], {perm: [0, 2, 1, 3]}), mergeShape])
    h = g.op('Add', [h, linear(ctx, `${p}.attn.c_proj`, E, E, projStd)])
    const m = linear(layerNorm(h, `${p}.ln_2`), `${p}.mlp.c_fc`, E, 4 * E, std)
    // gelu_new(m) = 0.5 m (1 + tanh(sqrt(2/pi) (m + 0.044715 m^3)))
    const inner = g.op('Mul', [geluC, g.op('Add', [m, g.op('Mul', [geluK, g.op('Pow', [m, three])])])])
    const gelu = g.op('Mul', [g.op('Mul', [half, m]), g.op('Add', [oneF, g.op('Tanh', [inner])])])
    h = g.op('Add', [h, linear(gelu, `${p}.mlp.c_proj`, 4 * E, E, projStd)])
  }
  const hf = layerNorm(h, 'transformer.ln_f')
  // Tied LM head: logits = ln_f(h) · wteᵀ, a final MatMul as in Optimum's exports (ORT folds the
  // transpose into a weight at load).
  g.op('MatMul', [hf, g.op('Transpose', [wte], {perm: [1, 0]})], {}, 'logits')
  return g.encode('main_graph', 17, 'nle-synth')
}

export function gpt2Config(shape: Gpt2Shape): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    activation_function: 'gelu_new',
    attn_pdrop: 0.1,
    bos_token_id: GPT2_EOS_ID,
    eos_token_id: GPT2_EOS_ID,
    embd_pdrop: 0.1,
    initializer_range: shape.initStd,
    layer_norm_epsilon: 1e-5,
    n_ctx: shape.nPositions,
    n_embd: shape.nEmbd,
    n_head: shape.nHead,
    n_inner: null,
    n_layer: shape.nLayer,
    n_positions: shape.nPositions,
    resid_pdrop: 0.1,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    use_cache: true,
    vocab_size: GPT2_VOCAB_SIZE,
  }
}

