/**
 * Start-up with a sealed model: read nle-sealed.json (in the image, so PCR2 pins it), unwrap its
 * data key with KMS Decrypt and a Recipient (only an enclave whose PCRs the key policy admits gets
 * it), stream the sealed files from the parent's weights server, check and decrypt every chunk and
 * every file into memory (../model/seal/open.ts), and load the engine from those buffers
 * (../model/memory.ts): the weights never exist as a file, in the enclave or on a dev host.
 */
import {readFile} from 'node:fs/promises'
import {performance} from 'node:perf_hooks'

import {type NleError, isNleError} from '../errors.js'
import {MANIFEST_FILE} from '../model/manifest.js'
import {MEMORY_ROOT, registerMemoryModel, unregisterMemoryModel} from '../model/memory.js'
import {sealError} from '../model/seal/errors.js'
import {MAX_SEALED_MANIFEST_BYTES, parseSealedManifest} from '../model/seal/format.js'
import {type UnwrapModelKey, openSealedModel} from '../model/seal/open.js'
import {weightsFromSocket} from '../model/seal/weights-client.js'
import type {Dtype} from '../model/layout.js'
import type {Logger} from '../net/log.js'
import {type ServingModel, type ServingOptions, loadServingModel} from './model.js'

export interface SealedModelSpec {
  sealed: {manifest: string; weightsSocket: string}
  /** The pinned model manifest digest: the sealed manifest must name exactly this model. */
  digest: string
  dtype?: Dtype
  threads?: number
  /**
   * How long start-up waits for the parent's side to come up (default 120 s): `nle run` starts the
   * weights server, the credentials endpoint and KMS's vsock-proxy after the enclave. Only "nothing
   * listening" and "KMS not reachable" are waited out; a wrong byte or a refusal stops at once.
   */
  waitMs?: number
}

function transient(error: unknown): boolean {
  if (!isNleError(error)) return false
  if (error.code === 'SEAL_KEY_UNAVAILABLE') return true
  return error.code === 'SEAL_WEIGHTS_UNAVAILABLE' && (error.details as {notListening?: boolean} | undefined)?.notListening === true
}

/** Read and parse nle-sealed.json (SEAL_MANIFEST_INVALID when missing or not the format). */
export async function readSealedManifest(path: string): Promise<ReturnType<typeof parseSealedManifest>> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (cause) {
    throw sealError('SEAL_MANIFEST_INVALID', `The sealed manifest ${path} is missing.`, {cause, details: {path}})
  }
  if (bytes.length > MAX_SEALED_MANIFEST_BYTES) throw sealError('SEAL_MANIFEST_INVALID', `${path} is too large.`, {details: {path}})
  return parseSealedManifest(bytes, path)
}

/** Open the sealed model into memory and load it (SEAL_* on any mismatch, SERVER_MODEL_* from the engine). */
export async function loadSealedServingModel(spec: SealedModelSpec, unwrapFor: (keyId: string) => UnwrapModelKey, serving: ServingOptions, logger: Logger): Promise<ServingModel> {
  const sealed = await readSealedManifest(spec.sealed.manifest)
  const t0 = performance.now()
  let lastPct = -1
  const waitMs = spec.waitMs ?? 120_000
  const open = (): ReturnType<typeof openSealedModel> => openSealedModel({
    sealed,
    expectedModelDigest: spec.digest,
    // The key the sealed manifest names (PCR2 pins the manifest): KMS refuses a blob of any other.
    unwrap: unwrapFor(sealed.key.keyId),
    fetch: weightsFromSocket(spec.sealed.weightsSocket),
    onProgress: (p) => {
      const pct = p.bytesTotal === 0 ? 100 : Math.floor((100 * p.bytesDone) / p.bytesTotal)
      if (pct >= lastPct + 25) {
        lastPct = pct
        logger.log('info', 'model_unsealing', {percent: pct, files: p.files})
      }
    },
  })
  let opened: Awaited<ReturnType<typeof openSealedModel>>
  for (let attempt = 1, delay = 500; ; attempt++, delay = Math.min(5000, delay * 2)) {
    try {
      opened = await open()
      break
    } catch (error) {
      if (!transient(error) || performance.now() - t0 + delay > waitMs) throw error
      logger.log('warn', 'model_waiting', {attempt, code: (error as NleError).code, retryMs: delay})
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
  logger.log('info', 'model_unsealed', {files: opened.files.size, bytes: opened.plainBytes, chunks: sealed.files.reduce((s, f) => s + f.chunks.length, 0), ms: Math.round(performance.now() - t0)})
  const dir = `${MEMORY_ROOT}/${spec.digest.slice('sha256:'.length, 'sha256:'.length + 16)}`
  const files = new Map(opened.files)
  files.set(MANIFEST_FILE, opened.manifestBytes)
  registerMemoryModel(dir, files)
  try {
    return await loadServingModel(
      {path: dir, digest: spec.digest, verified: opened.manifest, ...(spec.dtype ? {dtype: spec.dtype} : {}), ...(spec.threads === undefined ? {} : {threads: spec.threads})},
      serving,
      logger,
    )
  } finally {
    // The worker holds the buffers now (transferred); nothing stays registered on this thread.
    unregisterMemoryModel(dir)
  }
}
