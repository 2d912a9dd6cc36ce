/**
 * `nle model seal` for a project: seal model.path into model.sealedPath under a fresh data key
 * from KMS GenerateDataKey under the model key (kms.modelKeyId, else kms.keyId), with the
 * encryption context naming the model manifest's digest. Runs with the operator's credentials
 * (the SDK's chain, or --profile / --endpoint-url for a local `nle kms serve`), who holds the
 * plaintext model anyway; the host role and the enclave never need GenerateDataKey.
 */
import {resolve} from 'node:path'

import {GenerateDataKeyCommand, type KMSClient} from '@aws-sdk/client-kms'

import {loadConfig} from '../../config/load.js'
import {type AwsOptions, awsClients} from '../../kms/aws.js'
import {sealError} from './errors.js'
import {type GenerateDataKey, type SealProgress, type SealResult, sealModel} from './seal.js'

/** GenerateDataKey (AES_256) under `keyId` with the given encryption context. */
export function kmsGenerateDataKey(client: KMSClient, keyId: string): GenerateDataKey {
  return async (encryptionContext) => {
    let out
    try {
      out = await client.send(new GenerateDataKeyCommand({KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: encryptionContext}))
    } catch (cause) {
      const e = cause as {name?: string; message?: string}
      throw sealError('SEAL_KEY_GENERATE_FAILED', `KMS GenerateDataKey under ${keyId} failed: ${e.name ?? 'Error'}: ${e.message ?? String(cause)}`, {
        cause,
        details: {keyId, awsError: e.name ?? 'Error'},
      })
    }
    if (!out.Plaintext || !out.CiphertextBlob || !out.KeyId) throw sealError('SEAL_KEY_GENERATE_FAILED', 'KMS GenerateDataKey answered without a key.', {details: {keyId}})
    return {plaintext: out.Plaintext, ciphertextBlob: out.CiphertextBlob, keyId: out.KeyId}
  }
}

export interface SealProjectOptions {
  configFile: string
  /** Override the model key (default kms.modelKeyId, then kms.keyId). */
  keyId?: string
  /** Override the output folder (default model.sealedPath). */
  outDir?: string
  region?: string
  profile?: string
  endpointUrl?: string
  credentials?: AwsOptions['credentials']
  chunkBytes?: number
  force?: boolean
  onProgress?: (p: SealProgress) => void
}

/** The model key of a project: kms.modelKeyId, else kms.keyId. */
export function modelKeyOf(kms: {keyId?: string | undefined; modelKeyId?: string | undefined}): string | undefined {
  return kms.modelKeyId ?? kms.keyId
}

export async function sealProject(options: SealProjectOptions): Promise<SealResult & {modelDir: string}> {
  const {config, dir} = await loadConfig(options.configFile)
  const keyId = options.keyId ?? modelKeyOf(config.kms)
  if (keyId === undefined) throw sealError('SEAL_NO_KEY', 'nle.yaml names no KMS key to seal the model under (kms.modelKeyId or kms.keyId).')
  const region = options.region ?? config.kms.region
  const clients = awsClients({
    ...(region ? {region} : {}),
    ...(options.profile ? {profile: options.profile} : {}),
    ...(options.endpointUrl ? {endpointUrl: options.endpointUrl} : {}),
    ...(options.credentials ? {credentials: options.credentials} : {}),
  })
  const modelDir = resolve(dir, config.model.path)
  try {
    const result = await sealModel({
      modelDir,
      outDir: resolve(dir, options.outDir ?? config.model.sealedPath),
      generateDataKey: kmsGenerateDataKey(clients.kms, keyId),
      ...(options.chunkBytes === undefined ? {} : {chunkBytes: options.chunkBytes}),
      ...(options.force === undefined ? {} : {force: options.force}),
      ...(options.onProgress ? {onProgress: options.onProgress} : {}),
    })
    return {...result, modelDir}
  } finally {
    clients.kms.destroy()
    clients.iam.destroy()
    clients.sts.destroy()
  }
}

/** What `nle model seal` reports (its --json result). */
export interface SealReport {
  status: 'ok'
  modelDir: string
  outDir: string
  manifest: string
  modelDigest: string
  sealedManifestDigest: string
  keyId: string
  files: number
  chunks: number
  plainBytes: number
  sealedBytes: number
}

/** The report of a sealing. */
export function sealReport(r: SealResult & {modelDir: string}): SealReport {
  return {
    status: 'ok',
    modelDir: r.modelDir,
    outDir: r.outDir,
    manifest: r.manifestPath,
    modelDigest: r.modelDigest,
    sealedManifestDigest: r.sealedManifestDigest,
    keyId: r.keyId,
    files: r.files,
    chunks: r.chunks,
    plainBytes: r.plainBytes,
    sealedBytes: r.sealedBytes,
  }
}
