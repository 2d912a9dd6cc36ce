/**
 * The ChatBackend over nle's attested channel: attest → verify against the lockfile → seal →
 * stream → open. `nle chat` (TUI and --once) uses it; tests use it against `nle dev`.
 */
import {readFile} from 'node:fs/promises'

import type {TrustedRoot} from '../attestation/roots.js'
import {insecureDevRoot} from '../attestation/roots.js'
import {NleClient} from '../client/client.js'
import {ExitCode, NleError} from '../errors.js'
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
}

export async function channelBackend(options: ChannelBackendOptions): Promise<ChatBackend & {close(): void}> {
  if (options.mode === 'kms') {
    throw new NleError('CHAT_MODE_UNAVAILABLE', 'KMS mode is not available in this version of nle chat.', {
      exitCode: ExitCode.USAGE,
      hint: 'Use --mode attested (the default).',
    })
  }
  const lock = await readLockfile(options.lockfile)
  let root: TrustedRoot | undefined
  if (options.devRootFile) root = insecureDevRoot(await readFile(options.devRootFile, 'utf8'))
  const ca = options.caFile ? await readFile(options.caFile, 'utf8') : undefined
  const client = new NleClient({
    target: options.target,
    expectedPcrs: lock.measurements,
    ...(root ? {insecureDevRoot: root} : {}),
    ...(options.allowDebug ? {allowDebug: true} : {}),
    ...(ca ? {tls: {ca}} : {}),
  })
  return {
    mode: 'attested',
    target: options.target,
    async attest(): Promise<AttestationSummary> {
      const a = await client.attest({fresh: true})
      return {
        moduleId: a.moduleId,
        pcr0: a.pcrs[0] ?? '',
        debug: a.debug,
        timestamp: a.timestamp,
        root: a.root === 'insecure-dev-root' ? 'nle dev root (not AWS)' : 'AWS Nitro root G1',
      }
    },
    async *send(messages: readonly ChatMessage[], signal: AbortSignal): AsyncIterable<string> {
      const stream = client.chatStream(
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
    close: () => client.close(),
  }
}
