/**
 * The one access-log line of every nle server (the enclave server, the parent proxy, its
 * credentials socket, the gateway, the local KMS): the same fields, in the same order, written by
 * `HttpService` when a response closes.
 *
 *   {"event": "access", "method", "route", "status", "bytesIn", "bytesOut", "ms", "complete", "requestId", "code", …extra}
 *
 * Content-free by construction: the line is built here from the method (one of the standard ones,
 * else `(other)`), the route the owner names for the path without its query (`(other)` for any path
 * it does not know), the status, byte counts, the duration, whether the response was sent whole, a
 * request id and an error code. Nothing of a body, a query string or a header can reach it; a
 * server's extra fields after those are numbers and booleans only.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'
import {randomBytes} from 'node:crypto'
import {performance} from 'node:perf_hooks'

import type {LogValue, Logger} from './log.js'

/** The fields of every access line, in this order (after `event`). */
export const ACCESS_FIELDS = ['method', 'route', 'status', 'bytesIn', 'bytesOut', 'ms', 'complete', 'requestId', 'code'] as const

/** What a server notes about a request while handling it (HttpService makes one per request). */
export interface AccessRecord {
  /** Request-body bytes read. */
  bytesIn: number
  /** Response-body bytes written. */
  bytesOut: number
  /** Replaces the id the service made (the enclave server: the channel's request id). Hex or `prefix-n` only. */
  requestId: string
  /** The error code of a refused or failed request. */
  code?: string | undefined
  /** A server's own fields, after the common ones: numbers and booleans only. */
  extra: Record<string, number | boolean | undefined>
}

/** One access line, as written: `event` and the common fields in order, then the extras. */
export type AccessLine = {event: 'access'; method: string; route: string; status: number; bytesIn: number; bytesOut: number; ms: number; complete: boolean; requestId: string; code: string | null} & Record<string, LogValue>

export interface AccessLogOptions {
  /** The route as logged, from the path without its query: a route the server knows, else `(other)`. */
  route: (path: string) => string
  /** Write the line (to the server's logger). */
  write: (line: AccessLine) => void
}

export const OTHER = '(other)'
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'])
const records = new WeakMap<ServerResponse, AccessRecord>()
const SAFE_ID = /^[0-9a-z-]{1,64}$/

/** A request-id maker: a random prefix per service, then a counter. */
export function requestIds(): () => string {
  const prefix = randomBytes(4).toString('hex')
  let n = 0
  return () => `${prefix}-${++n}`
}

/** The record of a response's request (made by HttpService when the request arrived; a blank one outside a service). */
export function accessRecord(res: ServerResponse): AccessRecord {
  let r = records.get(res)
  if (!r) {
    r = {bytesIn: 0, bytesOut: 0, requestId: '', extra: {}}
    records.set(res, r)
  }
  return r
}

/** Start timing a request; returns what writes its line when the response closes. */
export function watchAccess(req: IncomingMessage, res: ServerResponse, options: AccessLogOptions, nextId: () => string): void {
  const t0 = performance.now()
  const record = accessRecord(res)
  record.requestId = nextId()
  res.once('close', () => options.write(accessLine(req, res, record, options.route, performance.now() - t0)))
}

/** The line of a finished request: the common fields in order, then the numeric and boolean extras. */
export function accessLine(req: IncomingMessage, res: ServerResponse, record: AccessRecord, route: (path: string) => string, ms: number): AccessLine {
  const method = req.method !== undefined && METHODS.has(req.method) ? req.method : OTHER
  const path = (req.url ?? '/').split('?')[0] ?? '/'
  const line: AccessLine = {
    event: 'access',
    method,
    route: route(path),
    status: res.statusCode,
    bytesIn: record.bytesIn,
    bytesOut: record.bytesOut,
    ms: Math.round(ms * 10) / 10,
    complete: res.writableFinished,
    requestId: SAFE_ID.test(record.requestId) ? record.requestId : OTHER,
    code: record.code !== undefined && /^[A-Za-z0-9_]{1,80}$/.test(record.code) ? record.code : null,
  }
  for (const [k, v] of Object.entries(record.extra)) if ((typeof v === 'number' || typeof v === 'boolean') && !(k in line)) line[k] = v
  return line
}

/** A route function for a fixed set of paths. */
export function knownRoutes(paths: Iterable<string>): (path: string) => string {
  const known = new Set(paths)
  return (path) => (known.has(path) ? path : OTHER)
}

/** Write access lines to a JSON logger (`{ts, level, component, event: "access", …}`). */
export function toLogger(logger: Logger): (line: AccessLine) => void {
  return ({event, ...fields}) => logger.log('info', event, fields)
}
