/**
 * The parent proxy's credentials endpoint for KMS mode: the enclave signs its KMS Decrypt calls
 * with the host role's credentials, and this is where it gets them (in the enclave: a Unix socket
 * bridged by socat over vsock to this one).
 *
 * - only on a Unix socket (mode 0600), never on the proxy's TCP listeners;
 * - `GET /v1/credentials` → 200 `{"AccessKeyId","SecretAccessKey","Token"?,"Expiration"?}` (the
 *   ECS container-credentials shape); other paths 404, other methods 405;
 * - 503 `{"error":{"code":"PROXY_CREDENTIALS_UNAVAILABLE",…}}` when the source gives nothing;
 * - sources: `env` (AWS_ACCESS_KEY_ID/… of this process; development) and `imds` (the instance
 *   role through IMDSv2, on an EC2 host), both the AWS SDK's own providers;
 * - credentials are cached until 5 minutes before their Expiration;
 * - one access line per request (method, path, status, latency, source, error name): never a
 *   credential value.
 */
import {rm} from 'node:fs/promises'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'

import {fromEnv} from '@aws-sdk/credential-provider-env'
// The IMDS provider of the AWS SDK itself: @aws-sdk/credential-providers' fromInstanceMetadata is a
// thin wrapper around this package, which the SDK clients already depend on (same version in the
// lockfile), so this adds no new code to the install.
import {fromInstanceMetadata} from '@smithy/credential-provider-imds'
import type {AwsCredentialIdentity, AwsCredentialIdentityProvider} from '@smithy/types'

import type {Logger} from '../net/log.js'
import {accessRecord, knownRoutes, toLogger} from '../net/access.js'
import {jsonError, sendJson} from '../net/json.js'
import {HttpService} from '../net/service.js'
import {CREDENTIALS_PATH} from '../protocol/routes.js'

export const CREDENTIAL_SOURCES = ['env', 'imds'] as const
export type CredentialSource = (typeof CREDENTIAL_SOURCES)[number]
/** Cached credentials are fetched again this long before they expire. */
export const REFRESH_BEFORE_EXPIRY_MS = 5 * 60 * 1000
/** How long close() lets a request in flight finish. */
const CLOSE_WAIT_MS = 10_000

/** The ECS container-credentials JSON shape (what credentialsFromSocket reads). */
export interface CredentialsBody {
  AccessKeyId: string
  SecretAccessKey: string
  Token?: string
  Expiration?: string
}

/** The AWS SDK provider behind a source. */
export function credentialProvider(source: CredentialSource): AwsCredentialIdentityProvider {
  if (source === 'env') return fromEnv()
  // IMDSv2 only (no v1 fallback without a session token); a few retries for a busy metadata service.
  // The SDK would warn on console when it extends stale credentials; the access line says enough.
  const quiet = {debug() {}, info() {}, warn() {}, error() {}}
  return fromInstanceMetadata({timeout: 1000, maxRetries: 2, ec2MetadataV1Disabled: true, logger: quiet})
}

export interface CredentialsServerOptions {
  socketPath: string
  source: CredentialSource
  logger: Logger
  /** Replaces the source's provider (tests). */
  provider?: AwsCredentialIdentityProvider
  now?: () => number
}

export interface CredentialsServer {
  socketPath: string
  source: CredentialSource
  close(): Promise<void>
}

/** A caching front of a provider: one fetch at a time, reused until 5 minutes before expiry. */
export function cachingProvider(provider: AwsCredentialIdentityProvider, now: () => number = Date.now): () => Promise<AwsCredentialIdentity> {
  let cached: {credentials: AwsCredentialIdentity; until: number} | undefined
  let pending: Promise<AwsCredentialIdentity> | undefined
  return () => {
    if (cached && now() < cached.until) return Promise.resolve(cached.credentials)
    pending ??= (async () => {
      try {
        const credentials = await provider()
        const expires = credentials.expiration?.getTime()
        cached = {credentials, until: expires === undefined || Number.isNaN(expires) ? Number.POSITIVE_INFINITY : expires - REFRESH_BEFORE_EXPIRY_MS}
        return credentials
      } finally {
        pending = undefined
      }
    })()
    return pending
  }
}

function toBody(c: AwsCredentialIdentity): CredentialsBody {
  return {
    AccessKeyId: c.accessKeyId,
    SecretAccessKey: c.secretAccessKey,
    ...(c.sessionToken ? {Token: c.sessionToken} : {}),
    ...(c.expiration ? {Expiration: c.expiration.toISOString()} : {}),
  }
}

/** Serve the credentials endpoint on a Unix socket (a stale socket file is replaced). */
export async function startCredentialsServer(options: CredentialsServerOptions): Promise<CredentialsServer> {
  const {socketPath, source, logger} = options
  const credentials = cachingProvider(options.provider ?? credentialProvider(source), options.now)

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    // The access line (HttpService writes it): sizes and code; never a credential.
    const log = accessRecord(res)
    req.resume()
    if (path !== CREDENTIALS_PATH) return void jsonError(res, 'PROXY_NOT_FOUND', 'No such endpoint.', {log})
    if (req.method !== 'GET') return void jsonError(res, 'PROXY_NOT_FOUND', `Use GET for ${CREDENTIALS_PATH}.`, {status: 405, headers: {allow: 'GET'}, log})
    try {
      log.bytesOut = sendJson(res, 200, toBody(await credentials()))
    } catch (cause) {
      // The provider's error name only: its message could one day carry more than we want logged.
      const error = (cause as Error)?.name ?? 'Error'
      logger.log('warn', 'credentials_unavailable', {source, error})
      jsonError(res, 'PROXY_CREDENTIALS_UNAVAILABLE', `No AWS credentials from the ${source} source (${error}).`, {log})
    }
  }

  const server: Server = createServer({keepAliveTimeout: 5000}, (req, res) => void handle(req, res))
  const service = new HttpService(server, {access: {route: knownRoutes([CREDENTIALS_PATH]), write: toLogger(logger)}})
  await service.listenPrivate(socketPath, {code: 'PROXY_LISTEN_FAILED', details: {socketPath}})
  logger.log('info', 'credentials_listening', {socket: socketPath, source})
  return {
    socketPath,
    source,
    close: async () => {
      // A request in flight finishes (a credentials fetch takes at most a few seconds); one still open after CLOSE_WAIT_MS is cut.
      await service.drain(CLOSE_WAIT_MS)
      await rm(socketPath, {force: true})
    },
  }
}
