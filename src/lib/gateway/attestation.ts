/**
 * The gateway's attestation state: what GET /nle/attestation shows and what every request is checked
 * against before anything is sent.
 *
 * The state follows the client's attestation events (`NleClient.onAttestation`), so a verification
 * the client makes by itself — after a 421 (the enclave no longer holds the key it attested to), or
 * when its own TTL ran out — is recorded as it happens. The gateway asks for a fresh verification
 * itself at start, when the attestation is older than the TTL, after the upstream connection failed
 * (`markStale`), after a failure once `failureRetryMs` passed, and when asked (`?fresh=1`).
 *
 * Fails closed: while the last verification failed, `ensure` throws that failure (answered 503).
 */
import type {VerifiedAttestation} from '../attestation/verify.js'
import type {AttestationEvent, AttestationListener} from '../client/index.js'
import {isNleError} from '../errors.js'
import {type HttpFailure, toHttpFailure} from './errors.js'

export type AttestReason = 'start' | 'ttl' | 'reconnect' | 'rotated' | 'retry' | 'requested'

export type AttestationLogEvent =
  | {event: 'attested'; reason: AttestReason; pcr0: string; moduleId: string}
  | {event: 'attestation_failed'; reason: AttestReason; code: string}

export type AttestationStatus = 'pending' | 'verified' | 'failed'

export interface AttestationState {
  status: AttestationStatus
  mode: 'attested' | 'kms'
  upstream: string
  moduleId?: string
  pcrs?: Record<string, string>
  debug?: boolean
  root?: string
  /** The document's own timestamp. */
  documentTime?: string
  verifiedAt?: string
  reason?: AttestReason
  error?: HttpFailure['body']['error']
  failedAt?: string
}

/**
 * What the attestation state needs of the upstream (NleClient fits). `onAttestation` must report
 * the outcome of every verification — the ones `attest({fresh: true})` asks for included — before
 * the call that caused it settles.
 */
export interface AttestingUpstream {
  attest(options?: {fresh?: boolean; signal?: AbortSignal}): Promise<VerifiedAttestation>
  onAttestation(listener: AttestationListener): () => void
}

export interface AttestationPolicy {
  mode: 'attested' | 'kms'
  /** Shown at /nle/attestation. */
  upstreamDisplay: string
  /** Verify afresh once the attestation is this old. */
  ttlMs: number
  /** After a failed verification, answer from that failure for this long before trying again. */
  failureRetryMs: number
  log?: ((event: AttestationLogEvent) => void) | undefined
}

export class AttestationTracker {
  private verified: VerifiedAttestation | null = null
  private at = 0
  private reason: AttestReason = 'start'
  private failure: {error: unknown; at: number} | null = null
  private stale = false
  /** Why the verification this tracker asked for is made, while it is under way. */
  private asking: AttestReason | null = null
  private attesting: Promise<void> | null = null
  /** Events seen: tells whether the upstream reported the verification this tracker asked for. */
  private seen = 0
  private readonly unsubscribe: () => void

  constructor(
    private readonly upstream: AttestingUpstream,
    private readonly policy: AttestationPolicy,
  ) {
    this.unsubscribe = upstream.onAttestation((event) => this.follow(event))
  }

  /** The current verified attestation, verifying afresh per the policy. Throws ATTEST_* / CLIENT_*. */
  async ensure(force = false): Promise<VerifiedAttestation> {
    const now = Date.now()
    if (this.failure && !force && now - this.failure.at < this.policy.failureRetryMs) throw this.failure.error
    const reason = this.due(force, now)
    if (reason !== null) {
      this.attesting ??= this.verify(reason)
      await this.attesting
    }
    return this.current()
  }

  /** Why to verify afresh now, or null: the attestation held is good. */
  private due(force: boolean, now: number): AttestReason | null {
    if (force) return 'requested'
    if (!this.verified) return this.failure ? 'retry' : 'start'
    if (this.stale) return 'reconnect'
    if (now - this.at >= this.policy.ttlMs) return 'ttl'
    return null
  }

  /** The verified attestation as it is now (no network): throws the failure while verification fails. */
  current(): VerifiedAttestation {
    if (this.verified) return this.verified
    throw this.failure?.error ?? new Error('The attestation is not verified yet.')
  }

  /** When the current attestation was verified (ms since the epoch). */
  get verifiedAt(): number {
    return this.at
  }

  /** The upstream connection failed: verify afresh before the next request. */
  markStale(): void {
    this.stale = true
  }

  /** Stop following the upstream's events. */
  close(): void {
    this.unsubscribe()
  }

  /** What GET /nle/attestation shows. */
  state(): AttestationState {
    const base = {mode: this.policy.mode, upstream: this.policy.upstreamDisplay}
    if (this.verified) {
      const a = this.verified
      const pcrs: Record<string, string> = {}
      for (const [i, v] of Object.entries(a.pcrs)) pcrs[`PCR${i}`] = v
      return {
        status: 'verified',
        ...base,
        moduleId: a.moduleId,
        pcrs,
        debug: a.debug,
        root: a.root,
        documentTime: a.timestamp.toISOString(),
        verifiedAt: new Date(this.at).toISOString(),
        reason: this.reason,
      }
    }
    if (this.failure) return {status: 'failed', ...base, error: toHttpFailure(this.failure.error).body.error, failedAt: new Date(this.failure.at).toISOString()}
    return {status: 'pending', ...base}
  }

  private async verify(reason: AttestReason): Promise<void> {
    this.asking = reason
    const before = this.seen
    try {
      const a = await this.upstream.attest({fresh: true})
      if (this.seen === before) this.follow({ok: true, cause: 'requested', attestation: a}) // not reported: the call's own outcome counts
    } catch (error) {
      if (this.seen === before) this.follow({ok: false, cause: 'requested', code: isNleError(error) ? error.code : 'UNKNOWN', error})
    } finally {
      this.asking = null
      this.attesting = null
    }
  }

  private follow(event: AttestationEvent): void {
    this.seen++
    // Not asked for here: the client re-attested by itself (its TTL, or a 421 after a key rotation).
    const reason = this.asking ?? (event.cause === 'expired' ? 'ttl' : 'rotated')
    if (event.ok) {
      const a = event.attestation
      this.verified = a
      this.at = Date.now()
      this.reason = reason
      this.failure = null
      this.stale = false
      this.policy.log?.({event: 'attested', reason, pcr0: a.pcrs[0] ?? '', moduleId: a.moduleId})
      return
    }
    // A connection failure met by the client on its own is answered by the request that met it
    // (502/503/504) and marks the state stale; a document that did not verify fails the state.
    if (this.asking === null && !event.code.startsWith('ATTEST_')) {
      this.stale = true
      return
    }
    this.verified = null
    this.failure = {error: event.error, at: Date.now()}
    this.policy.log?.({event: 'attestation_failed', reason, code: event.code})
  }
}
