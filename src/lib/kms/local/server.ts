/**
 * `nle kms serve`: a local KMS endpoint for development and tests, loopback only.
 *
 * Speaks the KMS JSON 1.1 protocol of @aws-sdk/client-kms (POST /, `X-Amz-Target:
 * TrentService.<Operation>`, JSON with base64 blobs, errors as HTTP 4xx `{"__type", "message"}`),
 * plus the two query-protocol calls `nle policy apply` makes besides KMS: STS GetCallerIdentity and
 * IAM GetRole (for the identities it knows). Every request must carry a valid SigV4 signature by
 * one of the configured identities, scoped to the endpoint's region (STS and IAM: also us-east-1,
 * where AWS scopes them), covering X-Amz-Target and Content-Type. Bodies are read concurrently, up
 * to MAX_BODY_BYTES and within bodyTimeoutMs; the requests whose bodies arrived are then handled
 * one at a time (a slow client cannot stall the others); the state is written atomically after
 * each change. Nothing is logged but operation, identity and outcome.
 */
import {randomUUID} from 'node:crypto'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'

import type {TrustedRoot} from '../../attestation/roots.js'
import {kmsError} from '../errors.js'
import {KmsApiError, LocalKms} from './operations.js'
import {verifySigV4} from './sigv4.js'
import {type LocalIdentity, type LocalState, saveState} from './state.js'
import {accessRecord, knownRoutes} from '../../net/access.js'
import {readBody} from '../../net/body.js'
import {sendJson} from '../../net/json.js'
import {HttpService} from '../../net/service.js'

export const LOOPBACK_HOSTS = ['127.0.0.1', '::1', 'localhost'] as const
export const MAX_BODY_BYTES = 1024 * 1024
/** Time a client has to send a whole request (headers and body). */
export const DEFAULT_BODY_TIMEOUT_MS = 10_000
/** Connections open at once (the SDK keeps a few per client). */
export const MAX_CONNECTIONS = 128
/** Default largest attestation-document age accepted (KMS's own limit is not documented). */
export const DEFAULT_MAX_ATTESTATION_AGE_MS = 5 * 60 * 1000

export interface LocalKmsOptions {
  host?: string
  /** 0 = any free port. */
  port?: number
  state: LocalState
  /** Where to persist the state; in memory only when absent. */
  statePath?: string
  /**
   * The attestation trust root (the NSM simulator's dev root, or AWS's). A function is asked on
   * each Recipient request, so a dev stack can start the endpoint before the simulator exists.
   */
  root: TrustedRoot | (() => TrustedRoot)
  maxAttestationAgeMs?: number
  /** Time a client has to send its whole body (default DEFAULT_BODY_TIMEOUT_MS); 408 after it. */
  bodyTimeoutMs?: number
  now?: () => number
  /** One line per request (no bodies, no secrets): the operation and the caller, and the access line (net/access.ts) as JSON. */
  log?: (line: string) => void
}

export interface RunningLocalKms {
  url: string
  port: number
  host: string
  state: LocalState
  close: () => Promise<void>
}

function isLoopbackAddress(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address === '::ffff:127.0.0.1'
}

/** The whole body, at most MAX_BODY_BYTES, within timeoutMs; else a KmsApiError (413, 408, 400). */
async function readRequestBody(req: IncomingMessage, timeoutMs: number): Promise<Buffer> {
  const outcome = await readBody(req, {limit: MAX_BODY_BYTES, timeoutMs})
  if (outcome.ok) return outcome.body
  if (outcome.reason === 'too-large') throw new KmsApiError('ValidationException', 'Request body too large.', 413)
  if (outcome.reason === 'timeout') throw new KmsApiError('RequestTimeoutException', 'The request body did not arrive in time.', 408)
  throw new KmsApiError('ValidationException', 'The connection closed before the body was complete.', 400)
}

/** Regions a signature may be scoped to: the endpoint's; STS and IAM also us-east-1 (global). */
function scopeAllowed(service: string, region: string, endpointRegion: string): boolean {
  return region === endpointRegion || ((service === 'sts' || service === 'iam') && region === 'us-east-1')
}

const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

function queryResponse(service: 'sts' | 'iam', action: string, params: URLSearchParams, identity: LocalIdentity, state: LocalState): {status: number; body: string} {
  const requestId = randomUUID()
  const ns = service === 'sts' ? 'https://sts.amazonaws.com/doc/2011-06-15/' : 'https://iam.amazonaws.com/doc/2010-05-08/'
  const error = (status: number, code: string, message: string): {status: number; body: string} => ({
    status,
    body: `<ErrorResponse xmlns="${ns}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
  })
  if (service === 'sts' && action === 'GetCallerIdentity') {
    const role = /^arn:aws:iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(identity.arn)
    const arn = role ? `arn:aws:sts::${role[1]}:assumed-role/${role[2]}/nle-local` : identity.arn
    return {
      status: 200,
      body: `<GetCallerIdentityResponse xmlns="${ns}"><GetCallerIdentityResult><Arn>${xmlEscape(arn)}</Arn><UserId>${xmlEscape(identity.accessKeyId)}</UserId><Account>${state.accountId}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
    }
  }
  if (service === 'iam' && action === 'GetRole') {
    const name = params.get('RoleName') ?? ''
    const known = state.identities.find((i) => new RegExp(`^arn:aws:iam::\\d{12}:role/(?:.*/)?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`).test(i.arn))
    if (!known) return error(404, 'NoSuchEntity', `The role with name ${name} cannot be found.`)
    const path = known.arn.slice(known.arn.indexOf(':role') + 5, known.arn.lastIndexOf('/') + 1)
    return {
      status: 200,
      body: `<GetRoleResponse xmlns="${ns}"><GetRoleResult><Role><Path>${xmlEscape(path)}</Path><RoleName>${xmlEscape(name)}</RoleName><RoleId>AROANLELOCAL${name.length}</RoleId><Arn>${xmlEscape(known.arn)}</Arn><CreateDate>2026-01-01T00:00:00Z</CreateDate><AssumeRolePolicyDocument>%7B%7D</AssumeRolePolicyDocument></Role></GetRoleResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></GetRoleResponse>`,
    }
  }
  return error(400, 'InvalidAction', `The local endpoint does not implement ${service} ${action}.`)
}

/** Start the endpoint. Refuses any address that is not loopback. */
export async function startLocalKms(options: LocalKmsOptions): Promise<RunningLocalKms> {
  const host = options.host ?? '127.0.0.1'
  if (!(LOOPBACK_HOSTS as readonly string[]).includes(host)) {
    throw kmsError('KMS_NOT_LOOPBACK', `The local KMS endpoint listens on loopback only, not ${host}.`, {hint: 'Use --host 127.0.0.1 (default) or ::1.'})
  }
  const now = options.now ?? Date.now
  const log = options.log ?? (() => undefined)
  const state = options.state
  const save = async (): Promise<void> => {
    if (options.statePath) await saveState(options.statePath, state)
  }
  const kms = new LocalKms({state, root: options.root, maxAttestationAgeMs: options.maxAttestationAgeMs ?? DEFAULT_MAX_ATTESTATION_AGE_MS, now, save})
  let queue: Promise<unknown> = Promise.resolve()

  const respond = (res: ServerResponse, status: number, contentType: string, body: string): void => {
    accessRecord(res).bytesOut = Buffer.byteLength(body)
    res.writeHead(status, {'content-type': contentType, 'content-length': Buffer.byteLength(body), 'x-amzn-requestid': randomUUID()})
    res.end(body)
  }
  // The KMS JSON 1.1 protocol's content type and request id, without the no-store of nle's own answers.
  const awsJson = (res: ServerResponse, status: number, body: unknown): void => {
    accessRecord(res).bytesOut = sendJson(res, status, body, {'content-type': 'application/x-amz-json-1.1', 'cache-control': undefined, 'x-amzn-requestid': randomUUID()})
  }
  const jsonError = (res: ServerResponse, error: KmsApiError): void => {
    accessRecord(res).code = error.type
    awsJson(res, error.status, {__type: error.type, message: error.message})
  }

  async function handle(req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const query: Record<string, string | string[]> = {}
    for (const [k, v] of url.searchParams) query[k] = v
    const auth = await verifySigV4({method: req.method ?? 'POST', path: url.pathname, query, headers: req.headers, body}, state.identities, now())
    const target = typeof req.headers['x-amz-target'] === 'string' ? req.headers['x-amz-target'] : undefined
    if (!auth.ok) {
      log(`denied ${target ?? url.pathname}: ${auth.type}`)
      jsonError(res, new KmsApiError(auth.type, auth.message, auth.type === 'MissingAuthenticationTokenException' ? 403 : 400))
      return
    }
    if (!scopeAllowed(auth.service, auth.region, state.region)) {
      // What AWS answers for a signature scoped to another region than the endpoint's.
      log(`denied ${target ?? url.pathname}: credential scope ${auth.region}`)
      jsonError(res, new KmsApiError('InvalidSignatureException', `Credential should be scoped to a valid region, not '${auth.region}'.`, 400))
      return
    }
    if (target === undefined) {
      // Query protocol (STS / IAM).
      const params = new URLSearchParams(body.toString('utf8'))
      const action = params.get('Action') ?? ''
      const service = auth.service === 'sts' || auth.service === 'iam' ? auth.service : undefined
      if (!service) {
        jsonError(res, new KmsApiError('UnknownOperationException', 'Missing X-Amz-Target.'))
        return
      }
      const out = queryResponse(service, action, params, auth.identity, state)
      log(`${service}:${action} by ${auth.identity.arn} -> ${out.status}`)
      respond(res, out.status, 'text/xml', out.body)
      return
    }
    const m = /^TrentService\.([A-Za-z]+)$/.exec(target)
    if (!m || auth.service !== 'kms') {
      jsonError(res, new KmsApiError('UnknownOperationException', `Unknown target ${target}.`))
      return
    }
    const operation = m[1]!
    let input: unknown
    try {
      input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'))
    } catch {
      jsonError(res, new KmsApiError('SerializationException', 'The body is not JSON.'))
      return
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      jsonError(res, new KmsApiError('SerializationException', 'The body is not a JSON object.'))
      return
    }
    try {
      const output = await kms.handle(operation, input as Record<string, unknown>, auth.identity)
      log(`kms:${operation} by ${auth.identity.arn} -> 200`)
      awsJson(res, 200, output)
    } catch (error) {
      if (error instanceof KmsApiError) {
        log(`kms:${operation} by ${auth.identity.arn} -> ${error.status} ${error.type}`)
        jsonError(res, error)
        return
      }
      throw error
    }
  }

  const bodyTimeoutMs = options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS
  const server: Server = createServer(
    // Node's own deadlines too (headers, and the request as a whole), checked every second.
    {headersTimeout: bodyTimeoutMs, requestTimeout: bodyTimeoutMs, connectionsCheckingInterval: 1000, maxHeaderSize: 16 * 1024},
    (req, res) => void accept(req, res),
  )
  server.maxConnections = MAX_CONNECTIONS

  /** Read the body (concurrently, bounded), then queue the request: only handling is serialised. */
  async function accept(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isLoopbackAddress(req.socket.remoteAddress ?? '')) {
      res.destroy()
      return
    }
    if (req.method !== 'POST') {
      jsonError(res, new KmsApiError('UnknownOperationException', 'Only POST is supported.', 405))
      return
    }
    let body: Buffer
    try {
      body = await readRequestBody(req, bodyTimeoutMs)
      accessRecord(res).bytesIn = body.length
    } catch (error) {
      const e = error instanceof KmsApiError ? error : new KmsApiError('ValidationException', 'The request body could not be read.', 400)
      log(`refused a request body: ${e.type}`)
      if (!res.headersSent && !res.destroyed) {
        res.setHeader('connection', 'close')
        jsonError(res, e)
      }
      return
    }
    const run = queue.then(() => handle(req, res, body))
    queue = run.catch(() => undefined)
    run.catch((error: unknown) => {
      if (error instanceof KmsApiError) {
        if (!res.headersSent) jsonError(res, error)
        return
      }
      log(`internal error: ${(error as Error)?.message ?? String(error)}`)
      if (!res.headersSent) jsonError(res, new KmsApiError('KMSInternalException', 'Internal error.', 500))
    })
  }
  // Every request is POST / (the operation is a header): the route is "/" or "(other)".
  const service = new HttpService(server, {access: {route: knownRoutes(['/']), write: (line) => log(JSON.stringify(line))}})
  await service.listen({host, port: options.port ?? 0}, {code: 'KMS_LISTEN_FAILED', inUseHint: 'Another process uses that port: stop it, or pick another with --port'})
  const address = service.address()!
  if (!isLoopbackAddress(address.address)) {
    server.close()
    throw kmsError('KMS_NOT_LOOPBACK', `The endpoint bound to ${address.address}, which is not loopback.`)
  }
  if (options.statePath) await saveState(options.statePath, state)
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    host: address.address,
    state,
    close: () => service.close(),
  }
}
