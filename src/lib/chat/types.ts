/**
 * What `nle chat` needs from a backend, whatever carries the words: the attested HPKE channel,
 * KMS mode, or a fake in tests. The UI never sends a word before `attest()` has succeeded.
 */
import type {ChatMessage} from '../protocol/chat.js'

export type {ChatMessage}

export type ChatMode = 'attested' | 'kms'

export interface AttestationSummary {
  /** Module id of the enclave (e.g. "i-0abc…-enc0123…"). */
  moduleId: string
  /** Lowercase hex PCR0 the document carried. */
  pcr0: string
  /** The document's PCR0..2 are all zero: a debug-mode enclave, whose memory the host can read. */
  debug: boolean
  /** When the document was issued. */
  timestamp: Date
  /** Which root the chain ended at, e.g. "AWS Nitro Enclaves root G1" or "nle dev root". */
  root: string
}

export interface ChatBackend {
  readonly mode: ChatMode
  /** Where the enclave is, for the header, e.g. "https://host:8443" or "unix:/run/nle/x.sock". */
  readonly target: string
  /** Fetch and verify a fresh attestation. Rejects with an NleError when it does not verify. */
  attest(): Promise<AttestationSummary>
  /** Send the conversation; yields the answer's text as it is generated. */
  send(messages: readonly ChatMessage[], signal: AbortSignal): AsyncIterable<string>
  /** Switch mode; may require a new attestation. Absent when the backend has one mode. */
  setMode?(mode: ChatMode): Promise<void>
}
