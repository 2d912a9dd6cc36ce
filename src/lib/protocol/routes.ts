/**
 * What crosses the wire between the nle client, the parent proxy and the enclave server: the
 * routes, their methods and the media types. The one definition; the client, proxy and server
 * import it and never each other.
 */

/** GET ?nonce=<64 hex>: the enclave's attestation document (raw COSE_Sign1, or JSON {"document"}). */
export const ATTESTATION_PATH = '/v1/attestation'
/** POST a sealed chat-completions request; the answer is sealed (whole, or an SSE stream of sealed chunks). */
export const CHAT_PATH = '/v1/chat/completions'
/** GET: liveness, status only, no secrets. */
export const HEALTH_PATH = '/healthz'
/** GET: Prometheus counters (the enclave server's). */
export const METRICS_PATH = '/metrics'
/** GET on the proxy's credentials socket (KMS mode): the host role's AWS credentials for the enclave. */
export const CREDENTIALS_PATH = '/v1/credentials'

/** The routes the parent proxy relays to the enclave, and their one method each. */
export const PROXIED_ROUTES: Readonly<Record<string, 'GET' | 'POST'>> = {
  [ATTESTATION_PATH]: 'GET',
  [CHAT_PATH]: 'POST',
  [HEALTH_PATH]: 'GET',
}

/** The challenge a client sends with ATTESTATION_PATH, in bytes. */
export const NONCE_BYTES = 32

/** A request sealed to the enclave's attested key (HPKE; see docs/channel.md). */
export const SEALED_REQUEST_TYPE = 'application/nle-sealed-request'
/** The same, with the request key also wrapped by KMS under the caller's identity (KMS mode). */
export const KMS_REQUEST_TYPE = 'application/nle-kms-request'
/** A whole sealed answer. */
export const SEALED_RESPONSE_TYPE = 'application/nle-sealed-response'
/** A streamed answer: server-sent events whose data are sealed chunks. */
export const EVENT_STREAM_TYPE = 'text/event-stream'
