// The worker thread that runs an Engine (and its onnxruntime session) off the main event loop.
// Messages stay inside the process (worker_threads' in-process channel); nothing here logs.
import {parentPort, workerData} from 'node:worker_threads'

import {Engine, type EngineOptions, type GenerateInput, type GenerateOptions, kvShapeOf} from './engine.js'
import {registerMemoryModel} from '../model/memory.js'
import type {MainToWorker, WorkerToMain} from './worker-protocol.js'
import {serializeError} from './worker-protocol.js'

const port = parentPort
if (port === null) throw new Error('engine-worker.ts runs as a worker thread')
const post = (m: WorkerToMain): void => port.postMessage(m)
const {dir, options, memory} = workerData as {dir: string; options: EngineOptions; memory?: Record<string, Uint8Array>}
// A model opened in memory (a sealed one): its files stay in this thread, registered for the readers.
if (memory !== undefined) registerMemoryModel(dir, memory)

const inFlight = new Map<number, AbortController>()

async function run(id: number, input: GenerateInput, options: Omit<GenerateOptions, 'signal'>, aborted: boolean, engine: Engine): Promise<void> {
  const ac = new AbortController()
  if (aborted) ac.abort()
  inFlight.set(id, ac)
  try {
    const it = engine.stream(input, {...options, signal: ac.signal})
    for (;;) {
      const r = await it.next()
      if (r.done) {
        post({type: 'done', id, result: r.value})
        return
      }
      post({type: 'chunk', id, chunk: r.value})
    }
  } catch (error) {
    post({type: 'error', id, error: serializeError(error)})
  } finally {
    inFlight.delete(id)
  }
}

try {
  const engine = await Engine.load(dir, options)
  post({
    type: 'ready',
    info: {
      threads: engine.threads,
      onnxFile: engine.onnxFile,
      batching: engine.batching,
      decoder: {lastLogitsOnly: engine.decoder.lastLogitsOnly, fullHeadReason: engine.decoder.fullHeadReason, nbits: engine.decoder.nbits, kv: kvShapeOf(engine.decoder.io)},
    },
  })
  port.on('message', (m: MainToWorker) => {
    switch (m.type) {
      case 'generate':
        void run(m.id, m.input, m.options, m.aborted, engine)
        break
      case 'cancel':
        inFlight.get(m.id)?.abort()
        break
      case 'stats':
        post({type: 'stats', id: m.id, stats: engine.stats()})
        break
      case 'close':
        for (const ac of inFlight.values()) ac.abort()
        void engine.close().then(() => {
          post({type: 'closed'})
          port.close()
        })
        break
    }
  })
} catch (error) {
  post({type: 'loadError', error: serializeError(error)})
  port.close()
}
