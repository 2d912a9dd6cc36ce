/**
 * The enclave's half of KMS mode: unwrap a request's data key with KMS Decrypt and a `Recipient`.
 *
 * The enclave holds an RSA-2048 key pair made at start (never leaves its memory). Its public key
 * goes into an attestation document from the NSM; KMS checks the document's signature and PCRs
 * against the key policy (`kms:RecipientAttestation:PCR*`) and returns the plaintext only inside
 * `CiphertextForRecipient`, a CMS envelope to that RSA key. The host role's credentials sign the
 * call, but the host cannot read the answer: it has no NSM to attest a key of its own.
 */
import type {KeyObject} from 'node:crypto'


import type {AttestationRequest} from '../attestation/nsm-client.js'
import {channelError} from '../channel/errors.js'
import type {UnwrapDataKey} from '../channel/kms-request.js'
import {isNleError} from '../errors.js'
import type {KmsDecryptInput, KmsDecryptOutput} from '../kms/enclave-aws.js'
import {decryptEnvelope, generateRecipientKeyPair} from '../kms/recipient.js'

export interface RecipientDecryptInput {
  ciphertextBlob: Uint8Array
  encryptionContext: Record<string, string>
  attestationDocument: Uint8Array
  keyId?: string
}

/** KMS Decrypt with a Recipient; resolves with CiphertextForRecipient. */
export type RecipientDecrypt = (input: RecipientDecryptInput) => Promise<Uint8Array>

export interface RecipientUnwrapOptions {
  nsm: {attestation(request?: AttestationRequest): Promise<Uint8Array>}
  decrypt: RecipientDecrypt
  /** Pin the KMS key (its ARN): a blob of any other key is refused by KMS (IncorrectKeyException). */
  keyId?: string
  /** How long one attestation document is reused for Recipient calls (default 60 s; KMS accepts ~5 min). */
  documentTtlMs?: number
  now?: () => number
}

/** The enclave's UnwrapDataKey: one RSA key per process, a cached attestation document. */
export function recipientUnwrap(options: RecipientUnwrapOptions): UnwrapDataKey & {stats(): {decrypts: number; documents: number}} {
  let keyPair: {publicKeyDer: Uint8Array; privateKey: KeyObject} | undefined
  let cached: {document: Uint8Array; at: number} | undefined
  const now = options.now ?? Date.now
  const ttl = options.documentTtlMs ?? 60_000
  const stats = {decrypts: 0, documents: 0}
  const documentFor = async (fresh: boolean): Promise<Uint8Array> => {
    keyPair ??= generateRecipientKeyPair()
    if (!fresh && cached && now() - cached.at < ttl) return cached.document
    const document = await options.nsm.attestation({publicKey: keyPair.publicKeyDer, nonce: null})
    stats.documents++
    cached = {document, at: now()}
    return document
  }
  const unwrap = async (wrapped: Uint8Array, encryptionContext: Record<string, string>): Promise<Uint8Array> => {
    let envelope: Uint8Array
    try {
      envelope = await options.decrypt({ciphertextBlob: wrapped, encryptionContext, attestationDocument: await documentFor(false), ...(options.keyId ? {keyId: options.keyId} : {})})
    } catch (error) {
      // A document KMS found too old (clock skew, a long pause): one retry with a fresh one.
      if (!(isNleError(error) && error.code === 'CHANNEL_KMS_REJECTED' && /attestation/i.test(error.message))) throw error
      envelope = await options.decrypt({ciphertextBlob: wrapped, encryptionContext, attestationDocument: await documentFor(true), ...(options.keyId ? {keyId: options.keyId} : {})})
    }
    stats.decrypts++
    try {
      return new Uint8Array(decryptEnvelope(envelope, keyPair!.privateKey))
    } catch (cause) {
      throw channelError('CHANNEL_KMS_REJECTED', 'CiphertextForRecipient from KMS does not open with the enclave key.', {cause})
    }
  }
  return Object.assign(unwrap, {stats: () => ({...stats})})
}

/** Errors of KMS Decrypt → channel errors (names of AWS KMS's exceptions). */
export function mapKmsError(error: unknown): Error {
  if (isNleError(error) && error.code.startsWith('CHANNEL_')) return error
  if (isNleError(error)) {
    // The enclave's own AWS plumbing (credentials endpoint, vsock path): KMS was not reached.
    return channelError('CHANNEL_KMS_UNAVAILABLE', `KMS could not be reached from the enclave (${error.code}).`, {
      hint: error.hint ?? "Check the parent's credentials endpoint and KMS vsock-proxy (`nle status`).",
      cause: error,
    })
  }
  const name = (error as {name?: string})?.name ?? ''
  const message = (error as Error)?.message ?? String(error)
  if (name === 'AccessDeniedException') {
    return channelError('CHANNEL_KMS_DENIED', 'KMS refused to release the data key to this enclave.', {
      hint: 'The key policy does not admit these measurements for the host role: run `nle policy check` and `nle policy apply`.',
      cause: error,
    })
  }
  if (['InvalidCiphertextException', 'IncorrectKeyException', 'ValidationException', 'NotFoundException', 'DisabledException', 'KMSInvalidStateException', 'InvalidKeyUsageException'].includes(name)) {
    return channelError('CHANNEL_KMS_REJECTED', `KMS rejected the request's wrapped key (${name}): ${message}`, {cause: error})
  }
  return channelError('CHANNEL_KMS_UNAVAILABLE', `KMS could not be reached from the enclave (${name || 'error'}).`, {
    hint: "Check the parent's KMS vsock-proxy and credentials endpoint (or, in dev, the local KMS endpoint).",
    cause: error,
  })
}

/** RecipientDecrypt over a KMS client (in the enclave: ../kms/enclave-aws.ts makes it). */
export function kmsRecipientDecrypt(client: {decrypt(input: KmsDecryptInput): Promise<KmsDecryptOutput>}): RecipientDecrypt {
  return async (input) => {
    let out
    try {
      out = await client.decrypt({
        CiphertextBlob: input.ciphertextBlob,
        EncryptionContext: input.encryptionContext,
        ...(input.keyId ? {KeyId: input.keyId} : {}),
        Recipient: {AttestationDocument: input.attestationDocument, KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256'},
      })
    } catch (error) {
      throw mapKmsError(error)
    }
    if (!out.CiphertextForRecipient) {
      // Plaintext without a recipient envelope would mean the key material crossed the host in clear.
      throw channelError('CHANNEL_KMS_REJECTED', 'KMS answered without CiphertextForRecipient.', {hint: 'The endpoint is not KMS, or ignored the Recipient.'})
    }
    return out.CiphertextForRecipient
  }
}

export interface UnwrapLimits {
  /** Sustained KMS calls per second (token bucket refill; default 5). */
  perSecond?: number
  /** Calls allowed at once after a quiet spell (bucket size; default 20). */
  burst?: number
  /** KMS calls in flight at once (default 4). */
  concurrency?: number
  now?: () => number
}

/**
 * A token bucket and a concurrency cap in front of KMS: anyone who can reach the socket can make a
 * request that passes the free checks (the attested key is public), so without this a flood would
 * be a flood of KMS Decrypt calls, signed with the host role's credentials, eating its KMS quota.
 * Over the limit it throws CHANNEL_LIMIT (HTTP 429) without calling KMS.
 */
export function limitUnwrap<T extends UnwrapDataKey>(unwrap: T, limits: UnwrapLimits = {}): UnwrapDataKey & {stats(): {admitted: number; limited: number}} {
  const perSecond = limits.perSecond ?? 5
  const burst = limits.burst ?? 20
  const concurrency = limits.concurrency ?? 4
  // A monotonic clock: a wall clock stepped backwards would drive the bucket negative.
  const now = limits.now ?? ((): number => performance.now())
  let tokens = burst
  let at = now()
  let inFlight = 0
  const stats = {admitted: 0, limited: 0}
  const limited = async (wrapped: Uint8Array, encryptionContext: Record<string, string>): Promise<Uint8Array> => {
    const t = now()
    tokens = Math.min(burst, tokens + ((t - at) / 1000) * perSecond)
    at = t
    if (tokens < 1 || inFlight >= concurrency) {
      stats.limited++
      throw channelError('CHANNEL_LIMIT', 'Too many KMS-mode requests: the enclave limits how often it asks KMS.', {hint: 'Retry in a moment.', details: {retryAfter: 1}})
    }
    tokens -= 1
    inFlight++
    stats.admitted++
    try {
      return await unwrap(wrapped, encryptionContext)
    } finally {
      inFlight--
    }
  }
  return Object.assign(limited, {stats: () => ({...stats})})
}
