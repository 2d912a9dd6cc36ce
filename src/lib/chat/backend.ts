/**
 * The ChatBackend over nle's channel: attest → verify against the lockfile → seal → stream → open.
 * Two modes share the attestation check: `attested` seals to the enclave's attested HPKE key;
 * `kms` wraps each request's key with KMS Encrypt under the user's own identity, so that only an
 * enclave the key policy admits can read it. `nle chat` (TUI and --once) uses it; tests use it
 * against `nle dev`.
 */
import {readFile} from 'node:fs/promises'

import type {TrustedRoot} from '../attestation/roots.js'
import {insecureDevRoot} from '../attestation/roots.js'
import {NleClient} from '../client/client.js'
import {type ClientKms, type ClientKmsSettings, clientKms} from '../client/kms.js'
import {NleError} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import type {AttestationSummary, ChatBackend, ChatMessage, ChatMode} from './types.js'

export interface ChannelBackendOptions {
  target: string
  lockfile: string
  /** PEM of the NSM simulator's root (dev only). Without it only AWS's root is trusted. */
  devRootFile?: string
  /** PEM to trust for the proxy's TLS certificate (the dev stack's self-signed one). */
  caFile?: string
  allowDebug?: boolean
  maxTokens?: number
  temperature?: number
  mode?: ChatMode
  /** Where KMS mode wraps its keys; asked for the first time KMS mode is used. Absent: no KMS mode. */
  kms?: () => Promise<ClientKmsSettings>
}

export async function channelBackend(options: ChannelBackendOptions): Promise<ChatBackend & {close(): void}> {
  const lock = await readLockfile(options.lockfile)
  let root: TrustedRoot | undefined
  if (options.devRootFile) root = insecureDevRoot(await readFile(options.devRootFile, 'utf8'))
  const ca = options.caFile ? await readFile(options.caFile, 'utf8') : undefined
  const common = {
    target: options.target,
    expectedPcrs: lock.measurements,
    ...(root ? {insecureDevRoot: root} : {}),
    ...(options.allowDebug ? {allowDebug: true} : {}),
    ...(ca ? {tls: {ca}} : {}),
  }
  const attested = new NleClient(common)
  let kms: {client: NleClient; wrap: ClientKms} | undefined
  const kmsClient = async (): Promise<NleClient> => {
    if (kms) return kms.client
    if (!options.kms) {
      throw new NleError('CHAT_MODE_UNAVAILABLE', 'KMS mode needs a KMS key.', {hint: 'Set kms.keyId in nle.yaml (or pass --kms-key-id), or use --mode attested.'})
    }
    const wrap = clientKms(await options.kms())
    kms = {client: new NleClient({...common, kms: {wrap: wrap.wrap}}), wrap}
    return kms.client
  }
  let mode: ChatMode = options.mode ?? 'attested'
  if (mode === 'kms') await kmsClient() // fail now, not at the first question
  const current = async (): Promise<NleClient> => (mode === 'kms' ? kmsClient() : attested)
  return {
    get mode() {
      return mode
    },
    target: options.target,
    async attest(): Promise<AttestationSummary> {
      const a = await (await current()).attest({fresh: true})
      return {
        moduleId: a.moduleId,
        pcr0: a.pcrs[0] ?? '',
        debug: a.debug,
        timestamp: a.timestamp,
        root: a.root === 'insecure-dev-root' ? 'nle dev root (not AWS)' : 'AWS Nitro root G1',
      }
    },
    async setMode(next: ChatMode): Promise<void> {
      if (next === 'kms') await kmsClient()
      mode = next
    },
    async *send(messages: readonly ChatMessage[], signal: AbortSignal): AsyncIterable<string> {
      const stream = (await current()).chatStream(
        {
          messages: [...messages],
          ...(options.maxTokens ? {max_tokens: options.maxTokens} : {}),
          ...(options.temperature === undefined ? {} : {temperature: options.temperature}),
        },
        {signal},
      )
      for await (const chunk of stream) {
        const text = chunk.choices?.[0]?.delta?.content
        if (text) yield text
      }
    },
    close: () => {
      attested.close()
      kms?.client.close()
      kms?.wrap.close()
    },
  }
}
