// `nle model quantize`: weight-only block quantization of an fp32 ONNX decoder into onnxruntime's
// com.microsoft MatMulNBits operator, on the graph as it was exported.
//
// Every MatMul whose B is a 2-D float32 initializer ([K, N]) or the Transpose of one ([N, K], a tied
// LM head), and every Gemm with such a B (alpha 1, no transA; its bias C, when it is a [N] weight and
// beta is 1, becomes MatMulNBits's bias input), is replaced by MatMulNBits(A, B_q, scales[, zero
// points]) with accuracy_level 4: onnxruntime then quantizes the activations to int8 per block and
// multiplies in integers, which is where the speed is (measured in issue 16: 4-bit 4.96x fp32 at
// level 4 against 1.02x at level 0; 8-bit 2.31x against 15x slower). Embeddings (Gather) stay fp32;
// the LM head is quantized unless kept. The result is written under the transformers.js name of its
// dtype, with its weights in `<file>_data`, next to a copy of the folder's other files, and
// recorded in nle-model.json like `nle model save` does.
import {copyFile, mkdir, readdir, stat} from 'node:fs/promises'
import {basename, join, resolve} from 'node:path'
import {performance} from 'node:perf_hooks'

import {ModelError} from './errors.js'
import {DTYPE_SUFFIX, OPTIONAL_FILES, REQUIRED_FILES, findOnnxFile, isExternalDataOf} from './layout.js'
import {MANIFEST_FILE, type ModelManifest} from './manifest.js'
import {type Bits, type NBitsOptions, checkBlockSize, quantizeColumns, quantizedBytes, transposeKN} from './nbits.js'
import {onnx} from './onnx-graph.js'
import {type AttributeProto, type GraphProto, initializersOf, type ModelProto, type NodeProto, type TensorData, type TensorProto, readModelLazily, tensorBytes, writeModelFiles} from './onnx-file.js'
import {type LogitsSimilarity, quantizationQuality} from './quality.js'
import {recordManifest} from './save.js'
import type {StageListener} from '../stages.js'

export const QUANTIZE_TARGETS = ['q8', 'q4'] as const
export type QuantizeTarget = (typeof QUANTIZE_TARGETS)[number]

const BITS: Record<QuantizeTarget, Bits> = {q8: 8, q4: 4}
export const DEFAULT_BLOCK_SIZE = 32
export const DEFAULT_ACCURACY_LEVEL = 4
/** Zero points or not, per target, when the caller does not say (see QuantizeOptions.symmetric). */
export const DEFAULT_SYMMETRIC = {q8: true, q4: false} as const satisfies Record<QuantizeTarget, boolean>
const MS_DOMAIN = 'com.microsoft'

export interface RewriteOptions extends NBitsOptions {
  /** Keep the LM head (the product that gives `logits`) in fp32. */
  keepLmHead: boolean
  /** MatMulNBits accuracy_level: 4 (int8 compute) unless measuring. */
  accuracyLevel: number
}

/** A weight product left in fp32, and why. */
export interface KeptProduct {
  node: string
  opType: string
  reason: string
}

/** One quantized weight: the initializer it replaces and the tensors that stand for it. */
export interface QuantizedWeight {
  source: TensorProto
  /** 'KN': a MatMul weight [K, N]; 'NK': its transpose is stored ([N, K], a tied embedding, Gemm transB). */
  layout: 'KN' | 'NK'
  K: number
  N: number
  data: TensorProto
  scales: TensorProto
  zeroPoints: TensorProto | undefined
}

export interface RewriteResult {
  quantized: {node: string; opType: string; weight: string}[]
  kept: KeptProduct[]
  weights: QuantizedWeight[]
  /** Original initializers no longer referenced, dropped from the graph. */
  dropped: TensorProto[]
  /** Bytes of the distinct weight matrices of MatMul/Gemm products, before and after. */
  weightBytesBefore: number
  weightBytesAfter: number
}

const FLOAT = onnx.TensorProto.DataType.FLOAT
const UINT8 = onnx.TensorProto.DataType.UINT8

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name)
}
function intAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name)
  return a === undefined ? fallback : Number(a.i ?? fallback)
}
function floatAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name)
  return a === undefined ? fallback : Number(a.f ?? fallback)
}
const dims = (t: TensorProto): number[] => (t.dims ?? []).map(Number)
const byteCount = (t: TensorProto): number => dims(t).reduce((a, d) => a * d, 1) * 4

/** Every graph of the model: the main graph and the bodies of If/Loop/Scan nodes, recursively. */
function* graphs(graph: GraphProto): Generator<GraphProto> {
  yield graph
  for (const node of graph.node ?? []) {
    for (const a of node.attribute ?? []) {
      if (a.g) yield* graphs(a.g as GraphProto)
      for (const g of a.graphs ?? []) yield* graphs(g as GraphProto)
    }
  }
}

/** The nodes that produce a graph output named `logits`, seen through Cast and Identity. */
function lmHeads(graph: GraphProto): Set<NodeProto> {
  const heads = new Set<NodeProto>()
  if (!(graph.output ?? []).some((o) => o.name === 'logits')) return heads
  const producer = new Map<string, NodeProto>()
  for (const n of graph.node ?? []) for (const o of n.output ?? []) producer.set(o, n)
  let node = producer.get('logits')
  while (node !== undefined && (node.opType === 'Cast' || node.opType === 'Identity')) node = producer.get(node.input?.[0] ?? '')
  if (node !== undefined) heads.add(node)
  return heads
}

/**
 * Rewrites the model's weight products into MatMulNBits in place (pure: no file access; the new
 * tensors carry no data yet — `weights` says how to fill them). Weights are looked up among the
 * main graph's initializers, which the bodies of an Optimum merged decoder's If share.
 */
export function rewriteToMatMulNBits(model: ModelProto, o: RewriteOptions): RewriteResult {
  const main = model.graph as GraphProto
  const inits = new Map(initializersOf(main).map((t) => [t.name ?? '', t]))
  const result: RewriteResult = {quantized: [], kept: [], weights: [], dropped: [], weightBytesBefore: 0, weightBytesAfter: 0}
  const cache = new Map<string, QuantizedWeight>()
  const newInits: TensorProto[] = []

  const weightOf = (name: string): TensorProto | undefined => {
    const t = inits.get(name)
    return t !== undefined && t.dataType === FLOAT && dims(t).length === 2 ? t : undefined
  }
  const quantizedFor = (source: TensorProto, layout: 'KN' | 'NK'): QuantizedWeight => {
    const key = `${layout}:${source.name}`
    const hit = cache.get(key)
    if (hit !== undefined) return hit
    const [d0, d1] = dims(source) as [number, number]
    const [K, N] = layout === 'KN' ? [d0, d1] : [d1, d0]
    const kBlocks = Math.ceil(K / o.blockSize)
    const base = `${source.name}${layout === 'NK' ? '_T' : ''}_q${o.bits}`
    const tensor = (name: string, dataType: number, shape: number[]): TensorProto => onnx.TensorProto.create({name, dataType, dims: shape})
    const q: QuantizedWeight = {
      source,
      layout,
      K,
      N,
      data: tensor(base, UINT8, [N, kBlocks, (o.blockSize * o.bits) / 8]),
      scales: tensor(`${base}_scales`, FLOAT, [N, kBlocks]),
      zeroPoints: o.symmetric ? undefined : tensor(`${base}_zero_points`, UINT8, [N, Math.ceil((kBlocks * o.bits) / 8)]),
    }
    cache.set(key, q)
    result.weights.push(q)
    newInits.push(q.data, q.scales, ...(q.zeroPoints === undefined ? [] : [q.zeroPoints]))
    return q
  }
  // Weight matrices as the products read them: each distinct weight before; after, its quantized
  // form(s) and, where a product keeps it, the fp32 original.
  const weightNames = new Map<string, TensorProto>()
  const keptFp32 = new Set<string>()
  const bypassed = new Set<NodeProto>()
  const count = (source: TensorProto, as: 'fp32' | 'quantized'): void => {
    weightNames.set(source.name ?? '', source)
    if (as === 'fp32') keptFp32.add(source.name ?? '')
  }

  for (const graph of graphs(main)) {
    const producer = new Map<string, NodeProto>()
    for (const n of graph.node ?? []) for (const out of n.output ?? []) producer.set(out, n)
    const heads = lmHeads(graph)
    // The torch exporter replaces repeated equal tensors (zero biases) by Identity nodes of one.
    const throughIdentity = (name: string, passed?: NodeProto[]): string => {
      for (let n = producer.get(name); n?.opType === 'Identity' && (n.domain ?? '') === '' && n.input?.length === 1; n = producer.get(name)) {
        passed?.push(n)
        name = n.input[0]!
      }
      return name
    }
    for (const node of graph.node ?? []) {
      if ((node.domain ?? '') !== '' || (node.opType !== 'MatMul' && node.opType !== 'Gemm')) continue
      const name = node.name || `${node.opType}(${node.output?.[0] ?? ''})`
      const [a, b, c] = node.input ?? []
      if (a === undefined || b === undefined) continue
      // The nodes between B and its weight: dropped once nothing else reads them.
      const passed: NodeProto[] = []
      let source = weightOf(throughIdentity(b, passed))
      let layout: 'KN' | 'NK' = 'KN'
      if (source === undefined && node.opType === 'MatMul') {
        // A tied LM head: MatMul(hidden, Transpose(embedding)).
        const t = producer.get(b)
        const perm = t && attr(t, 'perm')?.ints?.map(Number)
        if (t?.opType === 'Transpose' && (t.domain ?? '') === '' && t.input?.length === 1 && (perm === undefined || (perm.length === 2 && perm[0] === 1 && perm[1] === 0))) {
          passed.push(t)
          source = weightOf(throughIdentity(t.input[0]!, passed))
          layout = 'NK'
        }
      }
      if (source === undefined) continue // a product of two activations (attention scores)
      let bias: string | undefined
      if (node.opType === 'Gemm') {
        if (intAttr(node, 'transA', 0) !== 0 || floatAttr(node, 'alpha', 1) !== 1) {
          result.kept.push({node: name, opType: node.opType, reason: 'Gemm with transA or alpha'})
          count(source, 'fp32')
          continue
        }
        if (intAttr(node, 'transB', 0) === 1) layout = 'NK'
        if (c !== undefined && c !== '') {
          const ct = inits.get(throughIdentity(c))
          const n = layout === 'KN' ? dims(source)[1] : dims(source)[0]
          if (floatAttr(node, 'beta', 1) !== 1 || ct === undefined || ct.dataType !== FLOAT || dims(ct).length !== 1 || dims(ct)[0] !== n) {
            result.kept.push({node: name, opType: node.opType, reason: 'Gemm bias is not a [N] float32 weight with beta 1'})
            count(source, 'fp32')
            continue
          }
          bias = c
        }
      }
      if (o.keepLmHead && heads.has(node)) {
        result.kept.push({node: name, opType: node.opType, reason: 'the LM head (kept in fp32)'})
        count(source, 'fp32')
        continue
      }
      const q = quantizedFor(source, layout)
      count(source, 'quantized')
      for (const p of passed) bypassed.add(p)
      result.quantized.push({node: name, opType: node.opType, weight: source.name ?? ''})
      const inputs: string[] = [a, q.data.name ?? '', q.scales.name ?? '', q.zeroPoints?.name ?? '']
      if (bias !== undefined) inputs.push('', bias)
      node.input = inputs
      node.opType = 'MatMulNBits'
      node.domain = MS_DOMAIN
      const int = (n: string, i: number): AttributeProto => onnx.AttributeProto.create({name: n, type: onnx.AttributeProto.AttributeType.INT, i})
      node.attribute = [int('K', q.K), int('N', q.N), int('bits', o.bits), int('block_size', o.blockSize), int('accuracy_level', o.accuracyLevel)]
    }
  }

  // The Transpose/Identity nodes between a quantized product and its weight, then the weights
  // themselves, once nothing else reads them (a tied embedding stays: Gather reads it).
  const used = (): Set<string> => {
    const names = new Set<string>()
    for (const g of graphs(main)) {
      for (const n of g.node ?? []) for (const i of n.input ?? []) names.add(i)
      for (const out of g.output ?? []) names.add(out.name ?? '')
      for (const input of g.input ?? []) names.add(input.name ?? '')
    }
    return names
  }
  for (let removed = true; removed; ) {
    removed = false
    const reads = used()
    for (const graph of graphs(main)) {
      const before = graph.node?.length ?? 0
      graph.node = (graph.node ?? []).filter((n) => !(bypassed.has(n) && (n.output ?? []).every((out) => !reads.has(out))))
      removed ||= graph.node.length !== before
    }
  }
  const reads = used()
  const sources = new Set(result.weights.map((w) => w.source))
  const keep: TensorProto[] = []
  for (const t of initializersOf(main)) (sources.has(t) && !reads.has(t.name ?? '') ? result.dropped : keep).push(t)
  main.initializer = [...keep, ...newInits]
  for (const t of weightNames.values()) result.weightBytesBefore += byteCount(t)
  for (const name of keptFp32) result.weightBytesAfter += byteCount(weightNames.get(name)!)
  for (const q of result.weights) result.weightBytesAfter += quantizedBytes(q.K, q.N, o)
  if (result.weights.length > 0 && !(model.opsetImport ?? []).some((op) => op.domain === MS_DOMAIN)) {
    model.opsetImport = [...(model.opsetImport ?? []), onnx.OperatorSetIdProto.create({domain: MS_DOMAIN, version: 1})]
  }
  return result
}

export interface QuantizeOptions {
  /** A model folder in the HF ONNX layout with an fp32 onnx/model.onnx (or decoder_model_merged.onnx). */
  inDir: string
  /** The folder to write; may be inDir (the quantized file is added beside the fp32 one). */
  outDir: string
  to: QuantizeTarget
  /**
   * Symmetric blocks (no zero points). Default: symmetric for q8, asymmetric for q4
   * (DEFAULT_SYMMETRIC). Measured (docs/model.md, "Quantization quality"): at 8 bits the zero point
   * buys little on weights of a trained scale (cosine 0.99993 either way on std-0.02 synth models)
   * and costs a byte per block (weights 3.46x smaller instead of 3.56x); at 4 bits it is what keeps
   * the logits at cosine >= 0.99 (0.9915 against 0.9882 symmetric on the std-0.02 synth Llama).
   */
  symmetric?: boolean
  blockSize?: number
  keepLmHead?: boolean
  accuracyLevel?: number
  /** Replace files that exist in outDir. */
  force?: boolean
  /** Then measure the quality drop (quantizationQuality: last-position logits against the fp32 file). */
  measureQuality?: boolean
  /** A stage starts: `quantize` (then onProgress per tensor), `quality` (with measureQuality). */
  onStage?: StageListener
  onProgress?: (p: QuantizeProgress) => void
}

export interface QuantizeProgress {
  /** Weight tensors written so far, of `total`. */
  done: number
  total: number
  tensor: string
}

export interface QuantizeResult {
  dir: string
  dtype: QuantizeTarget
  onnxFile: string
  dataFile: string | undefined
  bits: Bits
  blockSize: number
  symmetric: boolean
  accuracyLevel: number
  /** Weight products replaced by MatMulNBits, and those left in fp32 with the reason. */
  quantized: number
  kept: KeptProduct[]
  bytes: {fileBefore: number; fileAfter: number; weightsBefore: number; weightsAfter: number}
  /** With measureQuality: cosine similarity of the last-position logits against the fp32 file, per prompt. */
  quality?: LogitsSimilarity
  /** Reading, quantizing and writing (the quality measurement aside). */
  ms: number
  manifestPath: string
  manifestDigest: string
  manifest: ModelManifest
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

async function onnxFilesBytes(dir: string, onnxFile: string): Promise<number> {
  const folder = join(dir, onnxFile, '..')
  let total = (await stat(join(dir, onnxFile))).size
  for (const name of await readdir(folder)) if (isExternalDataOf(basename(onnxFile), name)) total += (await stat(join(folder, name))).size
  return total
}

/** Quantizes a model folder; see the file comment. */
export async function quantizeModel(options: QuantizeOptions): Promise<QuantizeResult> {
  const t0 = performance.now()
  const inDir = resolve(options.inDir)
  const outDir = resolve(options.outDir)
  const bits = BITS[options.to]
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE
  const symmetric = options.symmetric ?? DEFAULT_SYMMETRIC[options.to]
  const accuracyLevel = options.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL
  if (!checkBlockSize(blockSize)) {
    throw new ModelError('MODEL_UNSUPPORTED', `Block size ${blockSize} is not a power of two of at least 16.`, {hint: 'Use --block-size 16, 32, 64 or 128.', details: {blockSize}})
  }
  if (!Number.isInteger(accuracyLevel) || accuracyLevel < 0 || accuracyLevel > 4) {
    throw new ModelError('MODEL_UNSUPPORTED', `accuracy_level ${accuracyLevel} is not 0…4.`, {details: {accuracyLevel}})
  }
  if (!(await stat(inDir).then((s) => s.isDirectory(), () => false))) {
    throw new ModelError('MODEL_SOURCE_NOT_FOUND', `Model folder ${inDir} does not exist.`, {details: {dir: inDir}})
  }
  const inFile = await findOnnxFile(inDir, 'fp32')
  if (inFile === undefined) {
    throw new ModelError('MODEL_DTYPE_UNAVAILABLE', `${inDir} has no fp32 ONNX file (onnx/model.onnx or onnx/decoder_model_merged.onnx) to quantize.`, {
      hint: 'Quantize the fp32 export: Optimum writes onnx/model.onnx.',
      details: {dir: inDir},
    })
  }
  for (const name of REQUIRED_FILES) {
    if (!(await exists(join(inDir, name)))) throw new ModelError('MODEL_FILE_MISSING', `The model folder has no ${name}.`, {details: {dir: inDir, file: name}})
  }
  const outFile = inFile.replace(/\.onnx$/, `${DTYPE_SUFFIX[options.to]}.onnx`)
  const copies = inDir === outDir ? [] : [...REQUIRED_FILES, ...OPTIONAL_FILES]
  const present: string[] = []
  for (const f of [...copies, outFile, `${outFile}_data`, MANIFEST_FILE]) if (await exists(join(outDir, f))) present.push(f)
  if (present.length > 0 && options.force !== true) {
    throw new ModelError('MODEL_OUTPUT_EXISTS', `${outDir} already has ${present.join(', ')}.`, {hint: 'Pass --force to replace them, or choose another --out.', details: {outDir, files: present}})
  }

  let lazy
  try {
    lazy = await readModelLazily(join(inDir, inFile))
  } catch (cause) {
    throw new ModelError('MODEL_ONNX_CORRUPT', `${join(inDir, inFile)} could not be read as ONNX: ${cause instanceof Error ? cause.message : String(cause)}.`, {
      hint: 'The file is damaged or not ONNX: export it again.',
      cause,
      details: {path: join(inDir, inFile)},
    })
  }
  const {model, sources} = lazy
  const rewrite = rewriteToMatMulNBits(model, {bits, blockSize, symmetric, keepLmHead: options.keepLmHead === true, accuracyLevel})
  if (rewrite.weights.length === 0) {
    throw new ModelError('MODEL_UNSUPPORTED', `${inFile} has no float32 MatMul or Gemm weight to quantize${rewrite.kept.length > 0 ? ` (kept: ${rewrite.kept.map((k) => `${k.node}: ${k.reason}`).join('; ')})` : ''}.`, {
      hint: 'nle quantizes fp32 exports whose linear layers are MatMul or Gemm nodes with weight initializers.',
      details: {file: inFile, kept: rewrite.kept},
    })
  }

  try {
    await mkdir(join(outDir, outFile, '..'), {recursive: true})
    for (const f of copies) if (await exists(join(inDir, f))) await copyFile(join(inDir, f), join(outDir, f))
  } catch (cause) {
    throw new ModelError('MODEL_WRITE_FAILED', `Could not write into ${outDir}.`, {cause, details: {outDir}})
  }
  const nb: NBitsOptions = {bits, blockSize, symmetric}
  const total = initializersOf(model.graph!).filter((t) => sources.has(t)).length + rewrite.weights.length
  let done = 0
  options.onStage?.('quantize', 'Quantizing the weights')
  const byNew = new Map<TensorProto, QuantizedWeight>(rewrite.weights.map((w) => [w.data, w]))
  async function* tensors(): AsyncGenerator<TensorData> {
    for (const t of initializersOf(model.graph!)) {
      const w = byNew.get(t)
      if (w !== undefined) {
        const raw = await tensorBytes(w.source, sources)
        if (raw.byteLength !== w.K * w.N * 4) throw new Error(`${w.source.name} holds ${raw.byteLength} bytes, not ${w.K}×${w.N} float32`)
        const floats = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
        const q = quantizeColumns(w.layout === 'NK' ? floats : transposeKN(floats, w.K, w.N), w.K, w.N, nb)
        yield {tensor: w.data, bytes: q.data}
        yield {tensor: w.scales, bytes: new Uint8Array(q.scales.buffer)}
        if (w.zeroPoints !== undefined && q.zeroPoints !== undefined) yield {tensor: w.zeroPoints, bytes: q.zeroPoints}
        options.onProgress?.({done: ++done, total, tensor: w.source.name ?? ''})
      } else if (sources.has(t)) {
        yield {tensor: t, bytes: await tensorBytes(t, sources)}
        options.onProgress?.({done: ++done, total, tensor: t.name ?? ''})
      }
    }
  }
  let written
  try {
    written = await writeModelFiles(model, join(outDir, outFile), tensors())
  } catch (cause) {
    throw new ModelError('MODEL_WRITE_FAILED', `Could not write ${join(outDir, outFile)}: ${cause instanceof Error ? cause.message : String(cause)}.`, {cause, details: {outDir}})
  }
  const source: ModelManifest['source'] = {kind: 'local', path: inDir}
  const m = await recordManifest(outDir, options.to, source)
  const ms = performance.now() - t0
  if (options.measureQuality === true) options.onStage?.('quality', 'Measuring the quality drop against fp32')
  const quality = options.measureQuality === true ? await quantizationQuality({dir: inDir, dtype: 'fp32'}, {dir: outDir, dtype: options.to}) : undefined
  return {
    dir: outDir,
    dtype: options.to,
    onnxFile: outFile,
    dataFile: written.dataFile === undefined ? undefined : `${outFile}_data`,
    bits,
    blockSize,
    symmetric,
    accuracyLevel,
    quantized: rewrite.quantized.length,
    kept: rewrite.kept,
    bytes: {
      fileBefore: await onnxFilesBytes(inDir, inFile),
      fileAfter: written.onnxBytes + written.dataBytes,
      weightsBefore: rewrite.weightBytesBefore,
      weightsAfter: rewrite.weightBytesAfter,
    },
    ...(quality === undefined ? {} : {quality}),
    ms,
    ...m,
  }
}

export {lastLogitsSimilarity, cosineSimilarity, quantizationQuality, QUALITY_TEXTS, type LogitsSimilarity, type ModelRef} from './quality.js'
