/**
 * The one table of the errors that leave the enclave server or the parent proxy in clear (before
 * an answer is sealed, or instead of one): each code's HTTP status and what it means to a client.
 * The server and the proxy answer with `wireStatus(code)`; the client turns the code it reads back
 * into its own error by the same row (`wireMeaning`), and by the status alone only for a code it
 * does not know. Errors after a request opened are sealed and travel inside a 200 (docs/channel.md).
 */

/** What a client makes of it: its CLIENT_* code follows from this. */
export type WireMeaning = 'not-found' | 'bad-request' | 'too-large' | 'busy' | 'unavailable' | 'timeout' | 'refused' | 'kms-denied' | 'kms-unavailable' | 'internal'

export const WIRE_ERRORS = {
  // the enclave server
  SERVER_NOT_FOUND: {status: 404, meaning: 'not-found'},
  SERVER_METHOD_NOT_ALLOWED: {status: 405, meaning: 'not-found'},
  SERVER_BAD_NONCE: {status: 400, meaning: 'bad-request'},
  SERVER_UNSUPPORTED_MEDIA_TYPE: {status: 415, meaning: 'bad-request'},
  SERVER_BODY_TOO_LARGE: {status: 413, meaning: 'too-large'},
  SERVER_BUSY: {status: 429, meaning: 'busy'},
  SERVER_DRAINING: {status: 503, meaning: 'unavailable'},
  SERVER_NSM_FAILED: {status: 503, meaning: 'unavailable'},
  SERVER_INTERNAL: {status: 500, meaning: 'internal'},
  // a request that did not open (channel/)
  CHANNEL_MALFORMED: {status: 400, meaning: 'refused'},
  CHANNEL_REQUEST_AUTH_FAILED: {status: 400, meaning: 'refused'},
  CHANNEL_REPLAY: {status: 400, meaning: 'refused'},
  CHANNEL_STALE: {status: 400, meaning: 'refused'},
  CHANNEL_UNKNOWN_KEY: {status: 421, meaning: 'refused'},
  CHANNEL_LIMIT: {status: 429, meaning: 'busy'},
  CHANNEL_KMS_DENIED: {status: 403, meaning: 'kms-denied'},
  CHANNEL_KMS_UNAVAILABLE: {status: 503, meaning: 'kms-unavailable'},
  CHANNEL_KMS_DISABLED: {status: 501, meaning: 'kms-unavailable'},
  // the parent proxy
  PROXY_NOT_FOUND: {status: 404, meaning: 'not-found'},
  PROXY_METHOD_NOT_ALLOWED: {status: 405, meaning: 'not-found'},
  PROXY_BODY_TOO_LARGE: {status: 413, meaning: 'too-large'},
  PROXY_BUSY: {status: 429, meaning: 'busy'},
  PROXY_DRAINING: {status: 503, meaning: 'unavailable'},
  PROXY_CREDENTIALS_UNAVAILABLE: {status: 503, meaning: 'unavailable'},
  PROXY_UPSTREAM_UNAVAILABLE: {status: 502, meaning: 'unavailable'},
  PROXY_UPSTREAM_TIMEOUT: {status: 504, meaning: 'timeout'},
  PROXY_INTERNAL: {status: 500, meaning: 'internal'},
} as const satisfies Record<string, {status: number; meaning: WireMeaning}>

export type WireErrorCode = keyof typeof WIRE_ERRORS

/** The status a clear error is answered with: the table's, 400 for a code it does not list (any other request refusal). */
export function wireStatus(code: string): number {
  return Object.hasOwn(WIRE_ERRORS, code) ? WIRE_ERRORS[code as WireErrorCode].status : 400
}

/** What a clear error means: by its code when the table knows it, else by the status alone. */
export function wireMeaning(status: number, code: string | undefined): WireMeaning {
  if (code !== undefined && Object.hasOwn(WIRE_ERRORS, code)) return WIRE_ERRORS[code as WireErrorCode].meaning
  if (code?.startsWith('CHANNEL_')) return 'refused'
  switch (status) {
    case 404:
    case 405:
      return 'not-found'
    case 413:
      return 'too-large'
    case 429:
      return 'busy'
    case 502:
    case 503:
      return 'unavailable'
    case 504:
      return 'timeout'
    default:
      return status >= 500 ? 'internal' : 'bad-request'
  }
}
