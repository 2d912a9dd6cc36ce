// `nle model run`: one generation on this machine with the engine the enclave runs, for trying a
// model before an image is built and for checking a model against a reference (ids in, ids out).
import {readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {type Dtype} from '../model/layout.js'
import {MANIFEST_FILE, readManifest} from '../model/manifest.js'
import {Engine, type GenerateInput, type GenerateResult} from './engine.js'
import {EngineError} from './errors.js'
import type {TemplateMessage} from './tokenizer.js'

export interface RunModelOptions {
  dir: string
  input: {prompt: string} | {messagesFile: string} | {ids: string}
  /** Default: the dtype the saved model's manifest names, else fp32. */
  dtype?: Dtype
  maxTokens?: number
  temperature?: number
  seed?: number
  threads?: number
  /** Called with each piece of text as it is generated. */
  onText?: (text: string) => void
  /** Reads the messages file when it is "-" (default: this process's standard input, up to 16 MiB). */
  stdin?: () => Promise<string>
}

export interface RunModelResult {
  model: {dir: string; dtype: Dtype; onnxFile: string; lastLogitsOnly: boolean; fullHeadReason?: string}
  promptIds: number[]
  tokenIds: number[]
  text: string
  finishReason: GenerateResult['finishReason']
  seed: number
  metrics: GenerateResult['metrics']
}

const badInput = (message: string, hint: string): EngineError => new EngineError('ENGINE_BAD_OPTIONS', message, {hint})

/** Parses "1,2,3" into token ids. */
export function parseIds(text: string): number[] {
  const parts = text.split(',').map((p) => p.trim())
  if (parts.length === 0 || parts.some((p) => !/^\d{1,9}$/.test(p))) {
    throw badInput(`--ids must be token ids separated by commas (got "${text.slice(0, 60)}").`, 'Example: --ids 15496,11,616,1438,318')
  }
  return parts.map(Number)
}

/** Reads chat messages from a JSON file: an array of {role, content}, or {"messages": [...]}. */
export async function readMessages(path: string, stdin: () => Promise<string> = readStdin): Promise<TemplateMessage[]> {
  let text: string
  try {
    text = path === '-' ? await stdin() : await readFile(path, 'utf8')
  } catch (cause) {
    throw new EngineError('ENGINE_BAD_OPTIONS', `The messages file ${path} cannot be read.`, {cause, hint: 'Pass a JSON file of [{"role": "user", "content": "…"}], or - for standard input.'})
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (cause) {
    throw new EngineError('ENGINE_BAD_OPTIONS', `The messages file ${path} is not JSON.`, {cause, hint: 'It holds [{"role": "user", "content": "…"}, …].'})
  }
  const list = Array.isArray(value) ? value : typeof value === 'object' && value !== null ? (value as {messages?: unknown}).messages : undefined
  if (!Array.isArray(list) || list.length === 0 || !list.every((m) => typeof m === 'object' && m !== null && typeof m.role === 'string' && typeof m.content === 'string')) {
    throw badInput(`The messages file ${path} is not a non-empty list of {role, content} strings.`, 'It holds [{"role": "system", "content": "…"}, {"role": "user", "content": "…"}].')
  }
  return (list as TemplateMessage[]).map((m) => ({role: m.role, content: m.content}))
}

const MAX_STDIN_BYTES = 16 << 20

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length
    if (size > MAX_STDIN_BYTES) throw new Error(`more than ${MAX_STDIN_BYTES >> 20} MiB on standard input`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

export async function runModel(options: RunModelOptions): Promise<RunModelResult> {
  let input: GenerateInput
  if ('prompt' in options.input) input = {prompt: options.input.prompt}
  else if ('ids' in options.input) input = {inputIds: parseIds(options.input.ids)}
  else input = {messages: await readMessages(options.input.messagesFile, options.stdin)}
  // A saved model runs the file its manifest names (as the enclave server does).
  const hasManifest = await stat(join(options.dir, MANIFEST_FILE)).then((st) => st.isFile(), () => false)
  const manifest = hasManifest ? await readManifest(options.dir) : undefined
  const dtype = options.dtype ?? manifest?.dtype ?? 'fp32'
  const onnxFile = manifest !== undefined && manifest.dtype === dtype ? manifest.onnx.file : undefined
  const engine = await Engine.load(options.dir, {dtype, ...(onnxFile === undefined ? {} : {onnxFile}), ...(options.threads === undefined ? {} : {threads: options.threads})})
  try {
    const promptIds = engine.promptIds(input)
    const it = engine.stream({inputIds: promptIds}, {
      ...(options.maxTokens === undefined ? {} : {maxTokens: options.maxTokens}),
      temperature: options.temperature ?? 0,
      ...(options.seed === undefined ? {} : {seed: options.seed}),
    })
    let r = await it.next()
    while (r.done !== true) {
      if (r.value.text.length > 0) options.onText?.(r.value.text)
      r = await it.next()
    }
    const result = r.value
    return {
      model: {
        dir: options.dir,
        dtype,
        onnxFile: engine.onnxFile,
        lastLogitsOnly: engine.decoder.lastLogitsOnly,
        ...(engine.decoder.fullHeadReason === undefined ? {} : {fullHeadReason: engine.decoder.fullHeadReason}),
      },
      promptIds,
      tokenIds: result.tokenIds,
      text: result.text,
      finishReason: result.finishReason,
      seed: result.seed,
      metrics: result.metrics,
    }
  } finally {
    await engine.close()
  }
}
