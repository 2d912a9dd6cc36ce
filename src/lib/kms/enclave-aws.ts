/**
 * The enclave's way to AWS KMS. An enclave has no network: its KMS calls leave as a byte stream
 * through a Unix socket (`via`; socat → vsock → the parent's vsock-proxy → kms.<region>:443), with
 * TLS end to end between this client and KMS, so the parent relays only ciphertext. The calls
 * are signed with the host role's credentials, fetched from the parent proxy's credentials
 * endpoint over another Unix socket (socat → vsock → socat → the proxy's socket).
 *
 * In development both sockets may be absent or point at local things: `endpoint` is then the
 * local KMS endpoint's URL and `via` is not set (a direct connection).
 *
 * The client is KMS's JSON protocol (`X-Amz-Target: TrentService.<Operation>`) signed by
 * @smithy/signature-v4, not @aws-sdk/client-kms: the SDK client brings ~20 packages into the
 * enclave image, among them the default credential chain (files in ~/.aws, SSO, IMDS, process
 * credentials) that the enclave must never consult; the signer alone adds 3. The enclave calls one
 * operation (Decrypt with a Recipient) and Encrypt for tests; both are plain JSON with base64 blobs.
 */
import {createHash, createHmac} from 'node:crypto'
import type {Duplex} from 'node:stream'
import {Agent as HttpAgent, type ClientRequestArgs, request} from 'node:http'
import {Agent as HttpsAgent, request as httpsRequest} from 'node:https'
import {isIP, connect as netConnect} from 'node:net'
import {type ConnectionOptions, connect as tlsConnect} from 'node:tls'

import {SignatureV4} from '@smithy/signature-v4'
import type {AwsCredentialIdentity, AwsCredentialIdentityProvider, Checksum, SourceData} from '@smithy/types'

import {isNleError} from '../errors.js'
import {kmsError} from './errors.js'
import {CREDENTIALS_PATH} from '../protocol/routes.js'

export interface EnclaveKmsOptions {
  region: string
  /** KMS endpoint URL; default https://kms.<region>.amazonaws.com. In dev: the local KMS URL. */
  endpoint?: string
  /** Unix socket that carries the TCP stream to the endpoint (in the enclave: socat → vsock → parent's vsock-proxy). Absent: connect directly. */
  via?: string
  /** Unix socket of the parent proxy's credentials endpoint. */
  credentialsSocket: string
}

/** KMS calls fail fast: a client is waiting for its answer (one retry on a network error, 5xx or throttling). */
export const ENCLAVE_KMS_MAX_ATTEMPTS = 2
const CREDENTIALS_TIMEOUT_MS = 5000
const MAX_CREDENTIALS_BYTES = 64 * 1024

/** The default public KMS endpoint of a region. */
export function kmsEndpoint(region: string): string {
  return `https://kms.${region}.amazonaws.com`
}

/** A credentials provider that GETs /v1/credentials from the parent proxy over a Unix socket. */
export function credentialsFromSocket(path: string): AwsCredentialIdentityProvider {
  return async () => parseCredentials(await getOverSocket(path), path)
}

function getOverSocket(socketPath: string): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const unavailable = (why: string, cause?: unknown): Error =>
      kmsError('KMS_CREDENTIALS_UNAVAILABLE', `The credentials endpoint at ${socketPath} ${why}.`, {
        hint: 'In an enclave: the parent must run the credentials bridge (vsock → the parent proxy\'s --credentials-socket) and the parent proxy with --credentials-socket. In dev: start the proxy with --credentials-socket.',
        details: {socketPath},
        cause,
      })
    const req = request({socketPath, path: CREDENTIALS_PATH, method: 'GET', agent: false, timeout: CREDENTIALS_TIMEOUT_MS, headers: {accept: 'application/json'}}, (res) => {
      const parts: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > MAX_CREDENTIALS_BYTES) req.destroy(unavailable('answered more than 64 KiB'))
        else parts.push(chunk)
      })
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8')}))
      res.on('error', (cause) => reject(unavailable('broke off its answer', cause)))
    })
    req.on('timeout', () => req.destroy(unavailable(`did not answer within ${CREDENTIALS_TIMEOUT_MS / 1000} s`)))
    req.on('error', (cause: NodeJS.ErrnoException) => {
      if (isNleError(cause)) return reject(cause)
      const why = cause.code === 'ENOENT' ? 'does not exist' : cause.code === 'ECONNREFUSED' ? 'refused the connection' : `failed (${cause.code ?? cause.message})`
      reject(unavailable(why, cause))
    })
    req.end()
  })
}

function parseCredentials(answer: {status: number; body: string}, socketPath: string): AwsCredentialIdentity {
  let json: unknown
  try {
    json = JSON.parse(answer.body)
  } catch {
    json = undefined
  }
  if (answer.status !== 200) {
    const code = (json as {error?: {code?: unknown}} | undefined)?.error?.code
    throw kmsError('KMS_CREDENTIALS_UNAVAILABLE', `The credentials endpoint at ${socketPath} answered HTTP ${answer.status}${typeof code === 'string' ? ` (${code})` : ''}.`, {
      hint: 'Check the parent proxy\'s log: its credential source (IMDS on the host, or AWS_* in its environment) gave nothing.',
      details: {socketPath, status: answer.status, ...(typeof code === 'string' ? {code} : {})},
    })
  }
  const c = json as {AccessKeyId?: unknown; SecretAccessKey?: unknown; Token?: unknown; Expiration?: unknown} | undefined
  const bad = (what: string): Error =>
    kmsError('KMS_CREDENTIALS_INVALID', `The credentials endpoint at ${socketPath} answered ${what}.`, {
      hint: 'The socket is not the parent proxy\'s credentials endpoint, or it is a different version of nle.',
      details: {socketPath},
    })
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw bad('something that is not a JSON object')
  if (typeof c.AccessKeyId !== 'string' || c.AccessKeyId === '' || typeof c.SecretAccessKey !== 'string' || c.SecretAccessKey === '') throw bad('no AccessKeyId/SecretAccessKey')
  if (c.Token !== undefined && typeof c.Token !== 'string') throw bad('a Token that is not a string')
  let expiration: Date | undefined
  if (c.Expiration !== undefined) {
    expiration = typeof c.Expiration === 'string' ? new Date(c.Expiration) : new Date(Number.NaN)
    if (Number.isNaN(expiration.getTime())) throw bad('an Expiration that is not an ISO-8601 date')
  }
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    ...(typeof c.Token === 'string' && c.Token !== '' ? {sessionToken: c.Token} : {}),
    ...(expiration ? {expiration} : {}),
  }
}

/**
 * HTTP agents whose every connection is a stream through the Unix socket `via`. For https the TLS
 * session runs over that stream, with SNI and certificate checks against the endpoint's host name
 * (never the socket), so whatever relays the bytes cannot read or alter them.
 */
export function viaAgents(via: string, servername: string, tls: Pick<ConnectionOptions, 'ca'> = {}): {httpAgent: HttpAgent; httpsAgent: HttpsAgent} {
  class ViaHttpAgent extends HttpAgent {
    override createConnection(_options: ClientRequestArgs): Duplex {
      return netConnect(via)
    }
  }
  class ViaHttpsAgent extends HttpsAgent {
    override createConnection(_options: ClientRequestArgs): Duplex {
      // `host` is what the certificate is checked against; SNI carries it too unless it is an address.
      return tlsConnect({socket: netConnect(via), host: servername, ...(isIP(servername) ? {} : {servername}), ...tls})
    }
  }
  return {httpAgent: new ViaHttpAgent({keepAlive: true}), httpsAgent: new ViaHttpsAgent({keepAlive: true})}
}

const CONNECT_TIMEOUT_MS = 5000
const REQUEST_TIMEOUT_MS = 30_000
/** KMS answers are small (a CiphertextForRecipient envelope is ~1 KiB); anything larger is refused. */
const MAX_KMS_ANSWER_BYTES = 256 * 1024
const RETRYABLE = new Set(['ThrottlingException', 'KMSInternalException', 'ServiceUnavailableException', 'DependencyTimeoutException'])

/** SHA-256 (or HMAC-SHA-256 with a secret) for the signer, from node:crypto. */
class NodeSha256 implements Checksum {
  private hash: {update(data: Uint8Array): unknown; digest(): Buffer}
  constructor(private readonly secret?: SourceData) {
    this.hash = this.fresh()
  }
  private fresh(): {update(data: Uint8Array): unknown; digest(): Buffer} {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBytes(this.secret))
  }
  update(data: Uint8Array): void {
    this.hash.update(data)
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()))
  }
  reset(): void {
    this.hash = this.fresh()
  }
}

function toBytes(data: SourceData): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8')
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  return new Uint8Array(data)
}

/** An error KMS answered: `name` is its exception name (AccessDeniedException, …), as server/kms-mode.ts maps them. */
export class KmsServiceError extends Error {
  constructor(
    override readonly name: string,
    message: string,
    readonly status: number,
  ) {
    super(message)
  }
}

export interface KmsDecryptInput {
  CiphertextBlob: Uint8Array
  EncryptionContext?: Record<string, string>
  KeyId?: string
  Recipient?: {AttestationDocument: Uint8Array; KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256'}
}
export interface KmsDecryptOutput {
  KeyId?: string
  Plaintext?: Uint8Array
  CiphertextForRecipient?: Uint8Array
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64')
const unb64 = (v: unknown): Uint8Array | undefined => (typeof v === 'string' ? new Uint8Array(Buffer.from(v, 'base64')) : undefined)

/** The enclave's KMS client: Decrypt (and Encrypt), signed with the socket's credentials. */
export class EnclaveKmsClient {
  readonly endpoint: URL
  readonly maxAttempts = ENCLAVE_KMS_MAX_ATTEMPTS
  private readonly signer: SignatureV4
  private readonly agents: {httpAgent: HttpAgent; httpsAgent: HttpsAgent}

  constructor(
    options: EnclaveKmsOptions,
    /** Tests: extra TLS trust for the endpoint (the enclave uses Node's CA store). */
    tls: Pick<ConnectionOptions, 'ca'> = {},
  ) {
    const endpoint = options.endpoint ?? kmsEndpoint(options.region)
    try {
      this.endpoint = new URL(endpoint)
    } catch (cause) {
      throw kmsError('KMS_AWS_ERROR', `The KMS endpoint ${JSON.stringify(endpoint)} is not a URL.`, {cause, details: {endpoint}})
    }
    this.signer = new SignatureV4({service: 'kms', region: options.region, credentials: credentialsFromSocket(options.credentialsSocket), sha256: NodeSha256})
    this.agents = options.via
      ? viaAgents(options.via, this.endpoint.hostname, tls)
      : {httpAgent: new HttpAgent({keepAlive: true}), httpsAgent: new HttpsAgent({keepAlive: true, ...tls})}
  }

  async decrypt(input: KmsDecryptInput): Promise<KmsDecryptOutput> {
    const out = await this.call('Decrypt', {
      CiphertextBlob: b64(input.CiphertextBlob),
      ...(input.EncryptionContext ? {EncryptionContext: input.EncryptionContext} : {}),
      ...(input.KeyId ? {KeyId: input.KeyId} : {}),
      ...(input.Recipient ? {Recipient: {AttestationDocument: b64(input.Recipient.AttestationDocument), KeyEncryptionAlgorithm: input.Recipient.KeyEncryptionAlgorithm}} : {}),
    })
    const result: KmsDecryptOutput = {}
    if (typeof out.KeyId === 'string') result.KeyId = out.KeyId
    const plaintext = unb64(out.Plaintext)
    if (plaintext) result.Plaintext = plaintext
    const forRecipient = unb64(out.CiphertextForRecipient)
    if (forRecipient) result.CiphertextForRecipient = forRecipient
    return result
  }

  async encrypt(input: {KeyId: string; Plaintext: Uint8Array; EncryptionContext?: Record<string, string>}): Promise<{CiphertextBlob: Uint8Array; KeyId?: string}> {
    const out = await this.call('Encrypt', {KeyId: input.KeyId, Plaintext: b64(input.Plaintext), ...(input.EncryptionContext ? {EncryptionContext: input.EncryptionContext} : {})})
    const blob = unb64(out.CiphertextBlob)
    if (!blob) throw new KmsServiceError('InvalidResponse', 'KMS answered Encrypt without CiphertextBlob.', 200)
    return {CiphertextBlob: blob, ...(typeof out.KeyId === 'string' ? {KeyId: out.KeyId} : {})}
  }

  /** One KMS operation; retried once on a network error, a 5xx or throttling. */
  async call(operation: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(operation, body)
      } catch (error) {
        const retryable = isNleError(error) ? false : error instanceof KmsServiceError ? error.status >= 500 || RETRYABLE.has(error.name) : true
        if (!retryable || attempt >= this.maxAttempts) throw error
      }
    }
  }

  private async once(operation: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const payload = JSON.stringify(body)
    const url = this.endpoint
    const https = url.protocol === 'https:'
    const signed = await this.signer.sign({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? {port: Number(url.port)} : {}),
      path: url.pathname || '/',
      query: {},
      headers: {host: url.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': `TrentService.${operation}`, 'content-length': String(Buffer.byteLength(payload))},
      body: payload,
    })
    const answer = await new Promise<{status: number; headers: Record<string, string | string[] | undefined>; body: string}>((resolve, reject) => {
      const send = https ? httpsRequest : request
      const req = send(
        {
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port || (https ? 443 : 80),
          path: url.pathname || '/',
          method: 'POST',
          headers: signed.headers,
          agent: https ? this.agents.httpsAgent : this.agents.httpAgent,
          timeout: CONNECT_TIMEOUT_MS,
        },
        (res) => {
          res.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`KMS did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`)))
          const parts: Buffer[] = []
          let size = 0
          res.on('data', (chunk: Buffer) => {
            size += chunk.length
            if (size > MAX_KMS_ANSWER_BYTES) req.destroy(new KmsServiceError('InvalidResponse', `KMS answered more than ${MAX_KMS_ANSWER_BYTES / 1024} KiB`, 200))
            else parts.push(chunk)
          })
          res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8')}))
          res.on('error', reject)
        },
      )
      req.on('timeout', () => req.destroy(new Error(`no connection to KMS within ${CONNECT_TIMEOUT_MS / 1000} s`)))
      req.on('error', reject)
      req.end(payload)
    })
    let json: unknown
    try {
      json = answer.body === '' ? {} : JSON.parse(answer.body)
    } catch {
      json = undefined
    }
    if (answer.status >= 200 && answer.status < 300 && json !== null && typeof json === 'object' && !Array.isArray(json)) return json as Record<string, unknown>
    const fields = (json ?? {}) as {__type?: unknown; message?: unknown; Message?: unknown}
    const header = answer.headers['x-amzn-errortype']
    const type = typeof fields.__type === 'string' ? fields.__type : typeof header === 'string' ? header : 'UnknownError'
    // "com.amazonaws.kms#AccessDeniedException" or "AccessDeniedException:http://…" → AccessDeniedException
    const name = type.replace(/^.*#/, '').replace(/:.*$/, '')
    const message = typeof fields.message === 'string' ? fields.message : typeof fields.Message === 'string' ? fields.Message : `HTTP ${answer.status}`
    throw new KmsServiceError(name, message, answer.status)
  }

  destroy(): void {
    this.agents.httpAgent.destroy()
    this.agents.httpsAgent.destroy()
  }
}

/** A KMS client for the enclave: host-role credentials from the socket, traffic through `via`. */
export function enclaveKmsClient(options: EnclaveKmsOptions, tls: Pick<ConnectionOptions, 'ca'> = {}): EnclaveKmsClient {
  return new EnclaveKmsClient(options, tls)
}
