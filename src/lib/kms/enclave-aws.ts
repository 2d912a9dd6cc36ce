/**
 * The enclave's way to AWS KMS. An enclave has no network: its KMS calls leave as a byte stream
 * through a Unix socket (`via`; socat → vsock → the parent's vsock-proxy → kms.<region>:443), with
 * TLS end to end between the SDK in here and KMS, so the parent relays only ciphertext. The calls
 * are signed with the host role's credentials, fetched from the parent proxy's credentials
 * endpoint over another Unix socket (socat → vsock → socat → the proxy's socket).
 *
 * In development both sockets may be absent or point at local things: `endpoint` is then the
 * local KMS endpoint's URL and `via` is not set (a direct connection).
 */
import type {Duplex} from 'node:stream'
import {Agent as HttpAgent, type ClientRequestArgs, request} from 'node:http'
import {Agent as HttpsAgent} from 'node:https'
import {isIP, connect as netConnect} from 'node:net'
import {type ConnectionOptions, connect as tlsConnect} from 'node:tls'

import {KMSClient} from '@aws-sdk/client-kms'
import {NodeHttpHandler} from '@smithy/node-http-handler'
import type {AwsCredentialIdentity, AwsCredentialIdentityProvider} from '@smithy/types'

import {isNleError} from '../errors.js'
import {kmsError} from './errors.js'

export interface EnclaveKmsOptions {
  region: string
  /** KMS endpoint URL; default https://kms.<region>.amazonaws.com. In dev: the local KMS URL. */
  endpoint?: string
  /** Unix socket that carries the TCP stream to the endpoint (in the enclave: socat → vsock → parent's vsock-proxy). Absent: connect directly. */
  via?: string
  /** Unix socket of the parent proxy's credentials endpoint. */
  credentialsSocket: string
}

/** KMS calls fail fast: a client is waiting for its answer, and the SDK's default is 3 attempts. */
export const ENCLAVE_KMS_MAX_ATTEMPTS = 2
const CREDENTIALS_PATH = '/v1/credentials'
const CREDENTIALS_TIMEOUT_MS = 5000
const MAX_CREDENTIALS_BYTES = 64 * 1024

/** The default public KMS endpoint of a region. */
export function kmsEndpoint(region: string): string {
  return `https://kms.${region}.amazonaws.com`
}

/** An AWS SDK credentials provider that GETs /v1/credentials from the parent proxy over a Unix socket. */
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

/** A KMS client for the enclave: host-role credentials from the socket, traffic through `via`. */
export function enclaveKmsClient(options: EnclaveKmsOptions): KMSClient {
  const endpoint = options.endpoint ?? kmsEndpoint(options.region)
  let host: string
  try {
    host = new URL(endpoint).hostname
  } catch (cause) {
    throw kmsError('KMS_AWS_ERROR', `The KMS endpoint ${JSON.stringify(endpoint)} is not a URL.`, {cause, details: {endpoint}})
  }
  return new KMSClient({
    region: options.region,
    endpoint,
    credentials: credentialsFromSocket(options.credentialsSocket),
    maxAttempts: ENCLAVE_KMS_MAX_ATTEMPTS,
    ...(options.via ? {requestHandler: new NodeHttpHandler({...viaAgents(options.via, host), connectionTimeout: 5000, requestTimeout: 30_000})} : {}),
  })
}
