// A decoder graph that computes logits for the last position only.
//
// Generation needs one row of logits per step, but an exported decoder computes the LM head for every
// position of its input: at prefill that is a [prompt × hidden] · [hidden × vocab] product (about 14% of
// gpt2-medium's prefill FLOPs at 128 tokens) and a [prompt × vocab] output that onnxruntime-node then
// copies into JavaScript (25 MB at 128 tokens, 206 MB at 1,024). When the LM head is the usual final
// MatMul(hidden, W) with W a weight (or the transpose of one, for tied embeddings), this inserts
// Slice(hidden, last position) before it.
//
// The weights are not copied: the rewritten graph is small, and each initializer points into the
// original file as ONNX external data (location, offset, length), which ORT reads from the model's
// folder. Only the framing of the file (field tags and lengths) is walked here, with positional reads
// that skip over raw weight bytes; every message is decoded and encoded by onnx-proto.
import {open, realpath} from 'node:fs/promises'
import {basename, dirname} from 'node:path'

import {inMemory, memoryHandle} from './memory.js'
import {type Field, Framing} from './onnx-file.js'
import {decodeExact} from './onnx-fields.js'
import {onnx} from './onnx-graph.js'

/** Field numbers of the ONNX messages walked here (onnx.proto). */
const MODEL_GRAPH = 7
const GRAPH_INITIALIZER = 5
const TENSOR_RAW_DATA = 9
const LENGTH_DELIMITED = 2
/** Smaller tensors stay inline: shape inference reads constants such as Split sizes and Reshape shapes. */
const EXTERNAL_MIN_BYTES = 64 << 10
/** Non-weight bytes (graph structure, small tensors) above this total mean it is not the kind of file this rewrite expects. */
const MAX_STRUCTURE_BYTES = 64 << 20

/** Why the rewrite does not apply to a model: the original graph is loaded instead. */
class NotApplicable extends Error {}

export const LAST_HIDDEN = 'nle_last_position_hidden'

type Graph = InstanceType<typeof onnx.GraphProto>
type Tensor = InstanceType<typeof onnx.TensorProto>

/** The rewritten model and the folder its external data is relative to, or why there is none. */
export type LastLogitsModel = {bytes: Uint8Array; folder: string} | {reason: string}

/** What the load-time rewrite found and did to the quantized (com.microsoft MatMulNBits) products. */
export interface NBitsReport {
  /** MatMulNBits nodes in the graph (branches included). */
  nodes: number
  /** The accuracy levels the file gives them (0 = unset: fp32 compute on the CPU), distinct, sorted. */
  fileLevels: number[]
  /** The level they run at: the file's, or `accuracyLevel` for those the file left at 0. */
  runLevels: number[]
}

/** How the engine loads a model file: the rewritten graph (if any rewrite applied) and what it did. */
export interface ModelPlan {
  /** The rewritten graph and the folder its external data is relative to; undefined: load the original file. */
  model: {bytes: Uint8Array; folder: string} | undefined
  /** Undefined when the LM head sees the last position only; otherwise why not. */
  fullHeadReason: string | undefined
  nbits: NBitsReport
}

export interface PlanOptions {
  /** Feed the LM head the last position only (default true). */
  lastLogitsOnly?: boolean
  /**
   * The accuracy level for MatMulNBits nodes the file leaves at 0 (default undefined: keep the
   * file's). Level 4 computes with int8 activations: for 4-bit weights about 5× faster than level 0
   * on the CPU (measured on products shaped like Qwen2.5-0.5B's MLP), for 8-bit weights about 35×.
   */
  accuracyLevel?: number
}

/**
 * Reads the model at `path` once and applies the load-time rewrites that apply: the LM head fed the
 * last position only, and the accuracy level of quantized products. The result's bytes hold weights
 * as external data in the original file; load them with the external-initializers folder set to
 * `folder`. A symlinked file (a Hugging Face cache snapshot) is resolved first: ORT refuses external
 * data outside that folder. Nothing that goes wrong here is fatal: the original file is loaded and
 * the reason is reported.
 */
export async function planModel(path: string, options: PlanOptions = {}): Promise<ModelPlan> {
  const nbits: NBitsReport = {nodes: 0, fileLevels: [], runLevels: []}
  try {
    // A model opened in memory (a sealed one): its bytes, never a file of that name on disk.
    const memory = inMemory(path)
    const bytes = memory?.files.get(memory.rel)
    if (memory !== undefined && bytes === undefined) throw new NotApplicable(`${path} is not in the in-memory model`)
    const real = memory === undefined ? await realpath(path) : path
    const file = bytes === undefined ? await open(real, 'r') : memoryHandle(bytes)
    try {
      const size = (await file.stat()).size
      const cursor = new Framing(file, MAX_STRUCTURE_BYTES)
      const rest: Buffer[] = []
      let read: {graph: Graph; external: boolean} | undefined
      for await (const f of cursor.fields(0, size)) {
        if (f.field === MODEL_GRAPH && f.wire === LENGTH_DELIMITED) {
          if (read !== undefined) throw new NotApplicable('the model has two graph fields')
          read = await readGraph(cursor, f, basename(real))
        } else {
          rest.push(await cursor.keep(f.start, f.end))
        }
      }
      if (read === undefined) throw new NotApplicable('the model has no graph')
      const model = decodeExact(onnx.ModelProto, 'ModelProto', Buffer.concat(rest), 'the model')
      const raised = setNBitsAccuracy(read.graph, options.accuracyLevel, nbits)
      let fullHeadReason: string | undefined
      if (options.lastLogitsOnly === false) fullHeadReason = 'turned off'
      else {
        const opset = (model.opsetImport ?? []).find((o) => ['', 'ai.onnx'].includes(o.domain ?? ''))?.version
        // Slice takes starts/ends/axes as inputs from opset 10, and negative axes from 11.
        const sliced = opset === undefined || opset === null || Number(opset) < 11 ? `opset ${String(opset)} is below 11` : sliceLastPosition(read.graph)
        if (sliced !== true) fullHeadReason = sliced
      }
      if (fullHeadReason !== undefined && !raised) return {model: undefined, fullHeadReason, nbits}
      // Weights that were external already are relative to the folder the model was named in.
      if (read.external && real !== path) throw new NotApplicable('a symlinked model file with external data of its own')
      model.graph = read.graph
      return {model: {bytes: onnx.ModelProto.encode(model).finish(), folder: dirname(read.external ? path : real)}, fullHeadReason, nbits}
    } finally {
      await file.close()
    }
  } catch (error) {
    return {model: undefined, fullHeadReason: error instanceof Error ? error.message : String(error), nbits}
  }
}

/** The model at `path` with its LM head fed the last position only, or why there is none (see planModel). */
export async function lastPositionLogitsModel(path: string): Promise<LastLogitsModel> {
  const plan = await planModel(path)
  return plan.model !== undefined && plan.fullHeadReason === undefined ? plan.model : {reason: plan.fullHeadReason ?? 'no rewrite applied'}
}

/**
 * Counts the MatMulNBits nodes of a graph and its subgraphs into `report`; with a level, sets it on
 * those the file leaves at 0. Returns whether any node was changed.
 */
export function setNBitsAccuracy(graph: Graph, level: number | undefined, report: NBitsReport): boolean {
  let changed = false
  const files = new Set(report.fileLevels)
  const runs = new Set(report.runLevels)
  const visit = (g: {node?: Graph['node'] | null}): void => {
    for (const node of g.node ?? []) {
      for (const a of node.attribute ?? []) {
        if (a.g) visit(a.g)
        for (const sub of a.graphs ?? []) visit(sub)
      }
      if (node.opType !== 'MatMulNBits' || node.domain !== 'com.microsoft') continue
      report.nodes++
      node.attribute ??= []
      let attr = node.attribute.find((a) => a.name === 'accuracy_level')
      const fileLevel = attr ? Number(attr.i ?? 0) : 0
      files.add(fileLevel)
      if (level !== undefined && fileLevel === 0 && level !== 0) {
        if (attr === undefined) {
          attr = onnx.AttributeProto.create({name: 'accuracy_level', type: onnx.AttributeProto.AttributeType.INT})
          node.attribute.push(attr)
        }
        attr.type = onnx.AttributeProto.AttributeType.INT
        attr.i = level
        changed = true
        runs.add(level)
      } else runs.add(fileLevel)
    }
  }
  visit(graph)
  report.fileLevels = [...files].sort((a, b) => a - b)
  report.runLevels = [...runs].sort((a, b) => a - b)
  return changed
}

async function readGraph(cursor: Framing, at: Field, location: string): Promise<{graph: Graph; external: boolean}> {
  const structure: Buffer[] = []
  const initializers: Tensor[] = []
  for await (const f of cursor.fields(at.payload, at.end)) {
    if (f.field === GRAPH_INITIALIZER && f.wire === LENGTH_DELIMITED) initializers.push(await readInitializer(cursor, f, location))
    else structure.push(await cursor.keep(f.start, f.end))
  }
  const graph = decodeExact(onnx.GraphProto, 'GraphProto', Buffer.concat(structure), 'the graph')
  graph.initializer = initializers
  const external = initializers.some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL && !(t as Tagged)[OURS])
  return {graph, external}
}

const OURS = Symbol('external data pointing into the model file')
type Tagged = Tensor & {[OURS]?: true}

/** One initializer; raw bytes of EXTERNAL_MIN_BYTES or more stay in the file, referenced as external data. */
async function readInitializer(cursor: Framing, at: Field, location: string): Promise<Tensor> {
  if (at.end - at.payload < EXTERNAL_MIN_BYTES) return decodeExact(onnx.TensorProto, 'TensorProto', await cursor.keep(at.payload, at.end), 'an initializer')
  const header: Buffer[] = []
  let raw: Field | undefined
  for await (const f of cursor.fields(at.payload, at.end)) {
    if (f.field === TENSOR_RAW_DATA && f.wire === LENGTH_DELIMITED) raw = f
    else header.push(await cursor.keep(f.start, f.end))
  }
  const tensor: Tagged = decodeExact(onnx.TensorProto, 'TensorProto', Buffer.concat(header), 'an initializer')
  if (raw !== undefined && raw.end > raw.payload) {
    if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) throw new NotApplicable(`initializer ${tensor.name} has both raw and external data`)
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
    tensor.externalData = [
      onnx.StringStringEntryProto.create({key: 'location', value: location}),
      onnx.StringStringEntryProto.create({key: 'offset', value: String(raw.payload)}),
      onnx.StringStringEntryProto.create({key: 'length', value: String(raw.end - raw.payload)}),
    ]
    tensor[OURS] = true
  }
  return tensor
}

type Node = Graph['node'][number]
type Attribute = NonNullable<Node['attribute']>[number]

/** Position-wise ops that may sit between the LM head and `logits` (Llama's export casts the head's output). */
const PASS_THROUGH = new Set(['Cast', 'Identity'])
/** Ops that may turn a weight into the head's right-hand side (a tied embedding's transpose, an fp16 cast). */
const WEIGHT_VIEW = new Set(['Transpose', 'Cast', 'Identity'])

/**
 * Inserts Slice(hidden, starts=-1, ends=max, axes=-2) in front of the LM head: the node that makes
 * `logits` is MatMul(hidden, W) — W an initializer, or a Transpose or Cast of one — or com.microsoft
 * MatMulNBits (a quantized head), possibly followed by Cast/Identity, and nothing else reads the
 * head's output. An `If` that makes `logits` (Optimum's merged decoder) is handled by slicing the
 * head in each branch. Returns true when it did, or why not.
 */
export function sliceLastPosition(graph: Graph): true | string {
  const int64 = (name: string, value: bigint): Tensor =>
    onnx.TensorProto.create({name, dims: [1], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(new BigInt64Array([value]).buffer)})
  // Outer-scope initializers are visible inside If branches, so one set of constants serves all heads.
  const constants = [int64(`${LAST_HIDDEN}_starts`, -1n), int64(`${LAST_HIDDEN}_ends`, 2n ** 63n - 1n), int64(`${LAST_HIDDEN}_axes`, -2n)]
  const weights = new Set(graph.initializer.map((t) => t.name ?? ''))
  const producers = new Map<string, Node>()
  for (const node of graph.node) for (const out of node.output ?? []) producers.set(out, node)
  const last = producers.get('logits')
  let result: true | string
  if (last?.opType === 'If' && (last.domain ?? '') === '') {
    const index = (last.output ?? []).indexOf('logits')
    const branches = (last.attribute ?? []).filter((a: Attribute) => a.name === 'then_branch' || a.name === 'else_branch').map((a: Attribute) => a.g)
    if (branches.length !== 2 || branches.some((b: unknown) => b === null || b === undefined)) return 'logits come from an If without two branches'
    if (graph.node.some((n) => n.input?.includes('logits'))) return 'other nodes read logits'
    result = true
    let n = 0
    for (const branch of branches as Graph[]) {
      const out = branch.output[index]?.name ?? undefined
      const r = out === undefined ? 'an If branch has no logits output' : sliceHead(branch, out, weights, `${LAST_HIDDEN}_${n++}`)
      if (r !== true) {
        result = `in the merged decoder's branch: ${r}`
        break
      }
      if (out !== undefined) fixPositions(branch, out)
    }
  } else {
    result = sliceHead(graph, 'logits', weights, LAST_HIDDEN)
  }
  if (result !== true) return result
  graph.initializer.push(...constants)
  fixPositions(graph, 'logits')
  return true
}

/** The output now has one position, whatever the input's length. */
function fixPositions(graph: Graph, name: string): void {
  for (const info of [...graph.output, ...graph.valueInfo]) {
    const dims = info.name === name ? info.type?.tensorType?.shape?.dim : undefined
    if (dims !== undefined && dims !== null && dims.length === 3) dims[1] = onnx.TensorShapeProto.Dimension.create({dimValue: 1})
  }
}

/** Slices the hidden state in front of the head that makes `output` in `graph`; `outerWeights` are initializers of enclosing graphs. */
function sliceHead(graph: Graph, output: string, outerWeights: ReadonlySet<string>, sliceName: string): true | string {
  const producers = new Map<string, Node>()
  for (const node of graph.node) for (const out of node.output ?? []) producers.set(out, node)
  const readers = (name: string): number => graph.node.filter((n) => n.input?.includes(name)).length
  const weights = new Set([...outerWeights, ...graph.initializer.map((t) => t.name ?? '')])
  const chain: string[] = []
  let name = output
  let head = producers.get(name)
  while (head !== undefined && PASS_THROUGH.has(head.opType ?? '') && (head.domain ?? '') === '' && head.input?.length === 1) {
    name = head.input[0] as string
    chain.push(name)
    if (readers(name) !== 1) return `other nodes read the LM head's output ${name}`
    head = producers.get(name)
  }
  const domain = head?.domain ?? ''
  const isMatMul = head?.opType === 'MatMul' && domain === '' && head.input?.length === 2
  const isNBits = head?.opType === 'MatMulNBits' && domain === 'com.microsoft' && (head.input?.length ?? 0) >= 3
  if (head === undefined || (!isMatMul && !isNBits)) {
    return `logits come from ${head?.opType ?? 'no node'}${chain.length > 0 ? ' (behind a Cast)' : ''}, not from a final MatMul`
  }
  if (output === 'logits' && graph.node.some((n) => n.input?.includes('logits'))) return 'other nodes read logits'
  const [hidden, w] = head.input as [string, string]
  const isWeight = (t: string, depth = 0): boolean => {
    if (weights.has(t)) return true
    const p = producers.get(t)
    return depth < 3 && p !== undefined && WEIGHT_VIEW.has(p.opType ?? '') && (p.domain ?? '') === '' && p.input?.length === 1 && isWeight(p.input[0] as string, depth + 1)
  }
  if (!isWeight(w) || producers.get(hidden) === undefined) return 'the final MatMul is not hidden state times a weight'
  const slice = onnx.NodeProto.create({
    opType: 'Slice',
    name: `/${sliceName}/Slice`,
    input: [hidden, `${LAST_HIDDEN}_starts`, `${LAST_HIDDEN}_ends`, `${LAST_HIDDEN}_axes`],
    output: [sliceName],
  })
  head.input = [sliceName, ...(head.input ?? []).slice(1)]
  // Nodes are topologically sorted in ONNX: the slice goes right before the head.
  graph.node.splice(graph.node.indexOf(head), 0, slice)
  for (const t of [head.output?.[0] ?? '', ...chain]) fixPositions(graph, t)
  return true
}
