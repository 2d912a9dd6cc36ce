// Messages between the main thread and the engine worker (in-process; structured clone).
import {NleError, isErrorCode} from '../errors.js'
import type {BatchingInfo, GenerateInput, GenerateOptions} from './engine.js'
import {EngineError, type EngineErrorCode} from './errors.js'
import type {GenerateResult, SchedulerStats, StreamChunk} from './scheduler.js'
import type {KvShape} from '../model/kv-size.js'
import type {NBitsReport} from '../model/last-logits.js'

export interface DecoderInfo {
  lastLogitsOnly: boolean
  fullHeadReason: string | undefined
  nbits: NBitsReport
  /** The KV cache as the graph declares it (../model/kv-size.ts). */
  kv: KvShape
}

export interface WorkerReadyInfo {
  threads: number
  onnxFile: string
  batching: BatchingInfo
  decoder: DecoderInfo
}

export type MainToWorker =
  | {type: 'generate'; id: number; input: GenerateInput; options: Omit<GenerateOptions, 'signal'>; aborted: boolean}
  | {type: 'cancel'; id: number}
  | {type: 'stats'; id: number}
  | {type: 'close'}

export type WorkerToMain =
  | {type: 'ready'; info: WorkerReadyInfo}
  | {type: 'loadError'; error: SerializedError}
  | {type: 'chunk'; id: number; chunk: StreamChunk}
  | {type: 'done'; id: number; result: GenerateResult}
  | {type: 'error'; id: number; error: SerializedError}
  | {type: 'stats'; id: number; stats: SchedulerStats}
  | {type: 'closed'}

export interface SerializedError {
  code?: string
  message: string
  hint?: string
  exitCode?: number
  details?: Record<string, unknown>
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof NleError) return error.toJSON()
  return {message: error instanceof Error ? error.message : String(error)}
}

/** The error again on this side: an EngineError for engine codes, an NleError for other codes. */
export function deserializeError(e: SerializedError): Error {
  if (e.code === undefined) return new EngineError('ENGINE_INFERENCE_FAILED', 'The engine worker failed.', {details: {reason: e.message.slice(0, 300)}})
  const options = {...(e.hint === undefined ? {} : {hint: e.hint}), ...(e.details === undefined ? {} : {details: e.details})}
  if (e.code.startsWith('ENGINE_') && isErrorCode(e.code)) return new EngineError(e.code as EngineErrorCode, e.message, options)
  // The exit status follows from the code (the catalogue); a code this side does not know is the engine's failure.
  if (isErrorCode(e.code)) return new NleError(e.code, e.message, options)
  return new EngineError('ENGINE_INFERENCE_FAILED', 'The engine worker failed.', {details: {reason: e.message.slice(0, 300), code: e.code.slice(0, 80)}})
}
