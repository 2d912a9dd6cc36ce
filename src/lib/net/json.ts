/**
 * JSON answers of every listener: one writer (`sendJson`) with the headers they all send, and the
 * one clear error shape `{error: {code, message}}` of the enclave server, the parent proxy and the
 * credentials socket (`jsonError`, its status from the wire table). The gateway's OpenAI-shaped and
 * the local KMS's AWS-shaped errors keep their own bodies and write through `sendJson`.
 */
import type {ServerResponse} from 'node:http'

import {type WireErrorCode, wireStatus} from '../protocol/status.js'

/** Extra or overriding headers; `undefined` leaves a default header out. */
export type JsonHeaders = Record<string, string | number | undefined>

/**
 * Write `body` as a whole JSON answer (content-type application/json, content-length,
 * cache-control no-store, then `headers` over those) and end the response. Returns the bytes of
 * the body written.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: JsonHeaders = {}): number {
  const text = JSON.stringify(body)
  const bytes = Buffer.byteLength(text)
  const all: Record<string, string | number> = {}
  for (const [k, v] of Object.entries({'content-type': 'application/json', 'content-length': bytes, 'cache-control': 'no-store', ...headers})) if (v !== undefined) all[k] = v
  res.writeHead(status, all).end(text)
  return bytes
}

export interface JsonErrorOptions {
  /** The status when it is not the wire table's for the code. */
  status?: number
  headers?: JsonHeaders
  /** Where the code and the bytes written are noted (an access log entry). */
  log?: {code?: string; bytesOut: number}
}

/** A clear error `{error: {code, message}}`, with the status the wire table gives its code. Returns the bytes written. */
export function jsonError(res: ServerResponse, code: WireErrorCode | (string & {}), message: string, options: JsonErrorOptions = {}): number {
  const bytes = sendJson(res, options.status ?? wireStatus(code), {error: {code, message}}, options.headers)
  if (options.log) {
    options.log.code = code
    options.log.bytesOut = bytes
  }
  return bytes
}
