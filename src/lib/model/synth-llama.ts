// The Llama architecture as ONNX, with seeded random weights (see synth.ts for the folder around it):
// what transformers' LlamaForCausalLM computes, exported the way Optimum exports it.
//
// I/O as in Optimum's llama export (text-generation-with-past):
//   inputs  input_ids, attention_mask, position_ids     int64 [batch_size, sequence_length | past_sequence_length + 1]
//           past_key_values.{i}.key|value               float32 [batch_size, kv_heads, past_sequence_length, head_dim]
//   outputs logits                                      float32 [batch_size, sequence_length, vocab]
//           present.{i}.key|value                       float32 [batch_size, kv_heads, past_sequence_length + 1, head_dim]
// Graph: token embedding; per block RMSNorm → q/k/v projections (no biases) → RoPE (rotate-half,
// cos/sin computed in the graph from position_ids) on q and k → concat(past, new) (the cache holds
// keys after RoPE, and only the kv_heads) → the KV heads repeated to the query heads (grouped-query
// attention, transformers' repeat_kv) → causal softmax attention → o_proj → residual → RMSNorm →
// SwiGLU MLP, down(silu(gate(x)) · up(x)) → residual; a final RMSNorm and an untied LM head (a
// final MatMul, so the engine's last-position rewrite applies).
import {Rng} from '../engine/rng.js'
import {ModelError} from './errors.js'
import {GPT2_EOS_ID, GPT2_VOCAB_SIZE} from './gpt2-tokenizer.js'
import {GraphBuilder, onnx} from './onnx-graph.js'
import type {LlamaShape} from './synth-presets.js'

export function llamaHeadDim(s: LlamaShape): number {
  return s.hidden / s.nHead
}

/** The parameter count of a Llama of this shape (untied: embedding and LM head both counted). */
export function llamaParameterCount(s: LlamaShape, vocab = GPT2_VOCAB_SIZE): number {
  const e = s.hidden
  const kv = s.nKvHead * llamaHeadDim(s)
  const block = 2 * e + e * e + 2 * e * kv + e * e + 3 * e * s.intermediate
  return 2 * vocab * e + s.nLayer * block + e
}

export interface LlamaBuildOptions {
  seed: number
  /** The builder to add to (one writing external data for big models). */
  builder?: GraphBuilder
  /** Vocabulary size (default GPT-2's). */
  vocabSize?: number
  /** Weights by name instead of seeded ones (a test reproduces a real export with them). */
  weights?: (name: string, dims: readonly number[]) => Float32Array | undefined
}

function check(shape: LlamaShape): void {
  const bad = (why: string): ModelError => new ModelError('MODEL_CONFIG_INVALID', `Llama shape: ${why}.`)
  if (shape.hidden % shape.nHead !== 0) throw bad(`hidden ${shape.hidden} is not a multiple of ${shape.nHead} heads`)
  if (shape.nHead % shape.nKvHead !== 0) throw bad(`${shape.nHead} heads are not a multiple of ${shape.nKvHead} KV heads`)
  if (llamaHeadDim(shape) % 2 !== 0) throw bad(`RoPE needs an even head size, not ${llamaHeadDim(shape)}`)
}

/** Builds the ONNX bytes of a seeded Llama (weights external when the builder writes external data). */
export function buildLlamaOnnx(shape: LlamaShape, options: LlamaBuildOptions): Uint8Array {
  check(shape)
  const {nLayer, hidden: E, nHead: H, nKvHead: KV, intermediate: I} = shape
  const D = llamaHeadDim(shape)
  const V = options.vocabSize ?? GPT2_VOCAB_SIZE
  const g = options.builder ?? new GraphBuilder()
  const rng = new Rng(options.seed)
  // Weights are made (and, with external data, written) one at a time: the largest, the embedding,
  // is the most memory generation holds.
  const weight = (name: string, dims: number[], fill: 'normal' | 'ones'): string => {
    const given = options.weights?.(name, dims)
    const n = dims.reduce((a, b) => a * b, 1)
    if (given !== undefined) {
      if (given.length !== n) throw new ModelError('MODEL_CONFIG_INVALID', `Weight ${name} has ${given.length} values, not ${n}.`)
      return g.floatInit(name, dims, given)
    }
    const a = new Float32Array(n)
    if (fill === 'ones') a.fill(1)
    else for (let i = 0; i < n; i++) a[i] = rng.normal() * shape.initStd
    return g.floatInit(name, dims, a)
  }

  const {FLOAT, BOOL} = onnx.TensorProto.DataType
  // Dimension names as Optimum's llama export writes them.
  const {inputIds, attentionMask, positionIds} = g.decoderIo({layers: nLayer, kvHeads: KV, headDim: D, vocab: V, totalDim: 'past_sequence_length + 1'})

  const {minF, one, zero, axis0, axes01, axes12} = g.decoderConstants()
  const axisLast = g.int64Init('const_axes_last', [-1])
  const idx1 = g.int64Init('const_idx_1', [1])
  const idx2 = g.int64Init('const_idx_2', [2])
  const qShape = g.int64Init('const_q_heads_shape', [0, 0, H, D])
  const kvShape = g.int64Init('const_kv_heads_shape', [0, 0, KV, D])
  const mergeShape = g.int64Init('const_merge_shape', [0, 0, H * D])
  const halves = g.int64Init('const_rope_halves', [D / 2, D / 2])
  const repeatShape = g.int64Init('const_repeat_kv', [1, 1, H / KV, 1, 1])
  const repeatedShape = g.int64Init('const_repeated_kv_shape', [0, H, -1, D])
  const sqrtD = g.scalarFloat('const_sqrt_head_dim', Math.sqrt(D))
  const two = g.scalarFloat('const_two', 2)
  const oneF = g.scalarFloat('const_one_f', 1)
  const eps = g.scalarFloat('const_rms_eps', shape.rmsNormEps)
  // inv_freq[j] = 1 / theta^(2j / D), as transformers' LlamaRotaryEmbedding (default rope type).
  const invFreq = g.floatInit(
    'const_rope_inv_freq',
    [D / 2],
    Float32Array.from({length: D / 2}, (_, j) => 1 / shape.ropeTheta ** ((2 * j) / D)),
  )

  const embed = weight('model.embed_tokens.weight', [V, E], 'normal')
  let h = g.op('Gather', [embed, inputIds], {axis: 0})

  // Mask [batch, 1, seq, total]: key j is visible to query i iff j <= past + i and attention_mask[j] = 1.
  const seqLen = g.op('Gather', [g.op('Shape', [inputIds]), idx1], {axis: 0})
  const pastLen = g.op('Gather', [g.op('Shape', ['past_key_values.0.key']), idx2], {axis: 0})
  const totalS = g.op('Squeeze', [g.op('Add', [seqLen, pastLen]), axis0])
  const qPos = g.op('Unsqueeze', [g.op('Range', [g.op('Squeeze', [pastLen, axis0]), totalS, one]), idx1])
  const kPos = g.op('Unsqueeze', [g.op('Range', [zero, totalS, one]), axis0])
  const causal = g.op('Unsqueeze', [g.op('LessOrEqual', [kPos, qPos]), axes01])
  const padding = g.op('Unsqueeze', [g.op('Cast', [attentionMask], {to: BOOL}), axes12])
  const visible = g.op('And', [causal, padding])

  // RoPE tables [batch, 1, seq, D] from position_ids: angle = position · inv_freq, both halves.
  const freqs = g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [positionIds], {to: FLOAT}), axisLast]), invFreq])
  const angles = g.op('Concat', [freqs, freqs], {axis: -1})
  const cos = g.op('Unsqueeze', [g.op('Cos', [angles]), idx1])
  const sin = g.op('Unsqueeze', [g.op('Sin', [angles]), idx1])
  const rope = (x: string): string => {
    const [x1, x2] = g.node('Split', [x, halves], {axis: -1}, 2) as [string, string]
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], {axis: -1})
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])])
  }

  // RMSNorm as transformers writes it: w · (x / sqrt(mean(x²) + eps)).
  const rmsNorm = (x: string, name: string): string => {
    const variance = g.op('ReduceMean', [g.op('Pow', [x, two])], {axes: [-1], keepdims: 1})
    const inv = g.op('Div', [oneF, g.op('Sqrt', [g.op('Add', [variance, eps])])])
    return g.op('Mul', [weight(name, [E], 'ones'), g.op('Mul', [x, inv])])
  }
  const linear = (x: string, name: string, nIn: number, nOut: number): string => g.op('MatMul', [x, weight(name, [nIn, nOut], 'normal')])
  const heads = (x: string, shapeName: string): string => g.op('Transpose', [g.op('Reshape', [x, shapeName])], {perm: [0, 2, 1, 3]})
  // [batch, KV, t, D] → [batch, H, t, D], query head j reading KV head floor(j / (H / KV)).
  const repeatKv = (x: string): string =>
    H === KV ? x : g.op('Reshape', [g.op('Expand', [g.op('Unsqueeze', [x, idx2]), repeatShape]), repeatedShape])

  for (let i = 0; i < nLayer; i++) {
    const p = `model.layers.${i}`
    const x = rmsNorm(h, `${p}.input_layernorm.weight`)
    const q = rope(heads(linear(x, `${p}.self_attn.q_proj.weight`, E, H * D), qShape))
    const k = rope(heads(linear(x, `${p}.self_attn.k_proj.weight`, E, KV * D), kvShape))
    const v = heads(linear(x, `${p}.self_attn.v_proj.weight`, E, KV * D), kvShape)
    const kAll = g.op('Concat', [`past_key_values.${i}.key`, k], {axis: -2}, `present.${i}.key`)
    const vAll = g.op('Concat', [`past_key_values.${i}.value`, v], {axis: -2}, `present.${i}.value`)
    const scores = g.op('Div', [g.op('MatMul', [q, g.op('Transpose', [repeatKv(kAll)], {perm: [0, 1, 3, 2]})]), sqrtD])
    const probs = g.op('Softmax', [g.op('Where', [visible, scores, minF])], {axis: -1})
    const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, repeatKv(vAll)])], {perm: [0, 2, 1, 3]}), mergeShape])
    h = g.op('Add', [h, linear(ctx, `${p}.self_attn.o_proj.weight`, H * D, E)])
    const y = rmsNorm(h, `${p}.post_attention_layernorm.weight`)
    const gate = linear(y, `${p}.mlp.gate_proj.weight`, E, I)
    const up = linear(y, `${p}.mlp.up_proj.weight`, E, I)
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up])
    h = g.op('Add', [h, linear(act, `${p}.mlp.down_proj.weight`, I, E)])
  }
  const hf = rmsNorm(h, 'model.norm.weight')
  g.op('MatMul', [hf, weight('lm_head.weight', [E, V], 'normal')], {}, 'logits')
  return g.encode('main_graph', 17, 'nle-synth')
}

/** A LlamaConfig (transformers' config.json) for this shape, with GPT-2's tokenizer ids. */
export function llamaConfig(shape: LlamaShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    attention_dropout: 0,
    bos_token_id: GPT2_EOS_ID,
    eos_token_id: GPT2_EOS_ID,
    head_dim: llamaHeadDim(shape),
    hidden_act: 'silu',
    hidden_size: shape.hidden,
    initializer_range: shape.initStd,
    intermediate_size: shape.intermediate,
    max_position_embeddings: shape.maxPositions,
    mlp_bias: false,
    num_attention_heads: shape.nHead,
    num_hidden_layers: shape.nLayer,
    num_key_value_heads: shape.nKvHead,
    pretraining_tp: 1,
    rms_norm_eps: shape.rmsNormEps,
    rope_scaling: null,
    rope_theta: shape.ropeTheta,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: GPT2_VOCAB_SIZE,
  }
}
