/**
 * The ChatBackend over nle's channel: attest → verify against the lockfile → seal → stream → open.
 * Two modes share the attestation check: `attested` seals to the enclave's attested HPKE key;
 * `kms` wraps each request's key with KMS Encrypt under the user's own identity, so that only an
 * enclave the key policy admits can read it. `nle chat` (TUI and --once) uses it; tests use it
 * against `nle dev`.
 */
import type {EnclaveConnection} from '../client/open.js'
import type {AttestationSummary, ChatBackend, ChatMessage, ChatMode} from './types.js'

export interface ChannelBackendOptions {
  maxTokens?: number
  temperature?: number
}

/** The chat backend over an opened enclave connection (`openEnclaveClient`); closing it closes the connection. */
export function channelBackend(connection: EnclaveConnection, options: ChannelBackendOptions = {}): ChatBackend & {close(): void} {
  let mode: ChatMode = connection.mode
  const current = async () => connection.clientFor(mode)
  return {
    get mode() {
      return mode
    },
    target: connection.target,
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
      await connection.clientFor(next) // KMS mode without a key fails here, and the mode stays
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
    close: () => connection.close(),
  }
}
