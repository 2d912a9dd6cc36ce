/**
 * The parent proxy process: settings from nle.yaml (proxy.*) overridden by flags, TLS material,
 * listening, and a graceful drain on SIGTERM/SIGINT. Used by `nle proxy` and
 * runtime/parent-proxy/index.ts.
 */
import {mkdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {parseArgs} from 'node:util'

import {DEFAULT_CONFIG_FILE, loadConfig} from '../config/load.js'
import {configSchema} from '../config/schema.js'
import {ExitCode, NleError, isNleError} from '../errors.js'
import {writeFileAtomic} from '../files.js'
import {type Logger, jsonLogger} from '../net/log.js'
import {type CredentialSource, type CredentialsServer, startCredentialsServer} from './credentials.js'
import {type WeightsServer, startWeightsServer} from './weights.js'
import {proxyOverrides, proxyParseArgsOptions, upstreamPath} from './flags.js'
import {proxyError} from './errors.js'
import {ParentProxy} from './proxy.js'
import {selfSignedCertificate} from './tls.js'
import {untilStopSignal} from '../net/signals.js'

export interface ProxySettings {
  upstreams: string[]
  host: string
  port: number
  httpPort?: number
  tls?: {cert: string; key: string}
  /** Make a self-signed certificate into this folder (cert.pem, key.pem) when no tls is given. */
  selfSignedDir?: string
  bodyLimitBytes: number
  concurrency: number
  queue: number
  upstreamTimeoutMs: number
  drainTimeoutMs: number
  /** Limits on what clients may hold (ParentProxy's defaults when absent). */
  maxConnections?: number
  maxConnectionsPerClient?: number
  maxBufferedBytes?: number
  headersTimeoutMs?: number
  requestTimeoutMs?: number
  /** KMS mode: serve the enclave's AWS credentials (GET /v1/credentials) on this Unix socket. */
  credentialsSocket?: string
  /** Where those credentials come from (default env; proxy.credentials.source defaults to imds). */
  credentialsSource?: CredentialSource
  /** A sealed model: serve its sealed files (../proxy/weights.ts) on this Unix socket. */
  weights?: {dir: string; socket: string}
}

/** Settings from a config file (when it exists or was named) and flag overrides. */
export async function resolveProxySettings(configFile: string | undefined, overrides: Partial<ProxySettings>): Promise<ProxySettings> {
  let proxy = configSchema.parse({version: 1, name: 'nle'}).proxy
  let dir = process.cwd()
  if (configFile !== undefined) {
    const loaded = await loadConfig(configFile)
    proxy = loaded.config.proxy
    dir = loaded.dir
  } else {
    try {
      const loaded = await loadConfig(DEFAULT_CONFIG_FILE)
      proxy = loaded.config.proxy
      dir = loaded.dir
    } catch (error) {
      if (!(isNleError(error) && error.code === 'CONFIG_NOT_FOUND')) throw error
    }
  }
  const abs = (p: string): string => (p.startsWith('/') ? p : join(dir, p))
  const settings: ProxySettings = {
    upstreams: (proxy.upstreams ?? []).map(upstreamPath),
    host: proxy.host,
    port: proxy.port,
    ...(proxy.httpPort === undefined ? {} : {httpPort: proxy.httpPort}),
    ...(proxy.tls ? {tls: {cert: abs(proxy.tls.cert), key: abs(proxy.tls.key)}} : {}),
    bodyLimitBytes: proxy.bodyLimitBytes,
    concurrency: proxy.concurrency,
    queue: proxy.queue,
    upstreamTimeoutMs: proxy.upstreamTimeoutMs,
    drainTimeoutMs: proxy.drainTimeoutMs,
    maxConnections: proxy.maxConnections,
    maxConnectionsPerClient: proxy.maxConnectionsPerClient,
    maxBufferedBytes: proxy.maxBufferedBytes,
    headersTimeoutMs: proxy.headersTimeoutMs,
    requestTimeoutMs: proxy.requestTimeoutMs,
    ...(proxy.credentials ? {credentialsSocket: abs(proxy.credentials.socket), credentialsSource: proxy.credentials.source} : {}),
  }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) (settings as unknown as Record<string, unknown>)[k] = v
  if (settings.credentialsSocket === undefined) {
    if (overrides.credentialsSource !== undefined) {
      throw new NleError('PROXY_USAGE', '--credentials-source needs a credentials socket.', {hint: 'Pass --credentials-socket PATH too, or set proxy.credentials.socket.'})
    }
    delete settings.credentialsSource
  } else {
    settings.credentialsSource ??= 'env'
  }
  return settings
}

export interface RunningProxy {
  proxy: ParentProxy
  https?: {host: string; port: number}
  http?: {host: string; port: number}
  /** The credentials endpoint, when one was asked for. */
  credentials?: {socket: string; source: CredentialSource}
  stop(): Promise<{forced: boolean}>
}

export async function startParentProxy(settings: ProxySettings, logger: Logger): Promise<RunningProxy> {
  let tls: {cert: string; key: string} | undefined
  if (settings.tls) {
    try {
      tls = {cert: await readFile(settings.tls.cert, 'utf8'), key: await readFile(settings.tls.key, 'utf8')}
    } catch (cause) {
      throw proxyError('PROXY_TLS_INVALID', `Cannot read the TLS certificate or key (${(cause as NodeJS.ErrnoException).code ?? 'error'}).`, {cause, details: {cert: settings.tls.cert, key: settings.tls.key}})
    }
  } else if (settings.selfSignedDir) {
    const dev = await selfSignedCertificate(['localhost', '127.0.0.1', '::1'])
    await mkdir(settings.selfSignedDir, {recursive: true})
    // Atomically, so the key is 0600 even where an older key.pem was 0644 (a plain writeFile keeps
    // an existing file's mode), and a reader never sees half a PEM.
    await writeFileAtomic(join(settings.selfSignedDir, 'cert.pem'), dev.certPem)
    await writeFileAtomic(join(settings.selfSignedDir, 'key.pem'), dev.keyPem, {mode: 0o600})
    tls = {cert: dev.certPem, key: dev.keyPem}
    logger.log('warn', 'self_signed_certificate', {dir: settings.selfSignedDir})
  }
  if (!tls && settings.httpPort === undefined) {
    throw proxyError('PROXY_TLS_INVALID', 'No TLS certificate and no loopback HTTP port: nothing to listen on.', {
      hint: 'Set proxy.tls.cert/key, pass --self-signed DIR for a development certificate, or --http-port for loopback HTTP.',
    })
  }
  const proxy = new ParentProxy({...settings, logger})
  // The credentials endpoint lives on its own Unix socket, never on the proxy's TCP listeners.
  let credentials: CredentialsServer | undefined
  if (settings.credentialsSocket !== undefined) {
    credentials = await startCredentialsServer({socketPath: settings.credentialsSocket, source: settings.credentialsSource ?? 'env', logger})
  }
  // The weights server (a sealed model): ciphertext for the enclave, on its own Unix socket too.
  let weights: WeightsServer | undefined
  if (settings.weights !== undefined) {
    try {
      weights = await startWeightsServer({dir: settings.weights.dir, socketPath: settings.weights.socket, logger})
    } catch (error) {
      await credentials?.close()
      throw error
    }
  }
  let bound: Awaited<ReturnType<ParentProxy['listen']>>
  try {
    bound = await proxy.listen({
      ...(tls ? {https: {host: settings.host, port: settings.port, ...tls}} : {}),
      ...(settings.httpPort === undefined ? {} : {http: {port: settings.httpPort}}),
    })
  } catch (error) {
    await proxy.drain(0)
    await credentials?.close()
    await weights?.close()
    throw error
  }
  logger.log('info', 'listening', {
    https: bound.https ? `${bound.https.host}:${bound.https.port}` : undefined,
    http: bound.http ? `${bound.http.host}:${bound.http.port}` : undefined,
    upstreams: settings.upstreams.length,
    credentials: credentials?.socketPath,
    weights: weights?.socketPath,
  })
  return {
    proxy,
    ...bound,
    ...(credentials ? {credentials: {socket: credentials.socketPath, source: credentials.source}} : {}),
    stop: async () => {
      const drained = await proxy.drain(settings.drainTimeoutMs)
      await credentials?.close()
      await weights?.close()
      return drained
    },
  }
}

/** Resolves when a signal arrived and the drain finished. */
export async function waitForSignals(running: RunningProxy, logger: Logger): Promise<number> {
  const signal = await untilStopSignal()
  logger.log('info', 'shutdown', {signal, inFlight: running.proxy.stats().inFlight})
  try {
    const {forced} = await running.stop()
    // Counts only (what was served and refused), never an address.
    const {served, refusedConnections, refusedBodies} = running.proxy.stats()
    logger.log('info', 'drained', {forced, served, refusedConnections, refusedBodies})
    return ExitCode.OK
  } catch {
    return ExitCode.INTERNAL
  }
}

/** Flags → settings (the runtime entry; `nle proxy` has the same flags, from the same table). */
export async function settingsFromArgv(argv: string[]): Promise<ProxySettings> {
  let values
  try {
    values = parseArgs({args: argv, options: proxyParseArgsOptions(), strict: true, allowPositionals: false}).values
  } catch (cause) {
    throw new NleError('PROXY_USAGE', (cause as Error).message, {hint: 'Run `nle proxy --help` for the flags.'})
  }
  const {configFile, overrides} = proxyOverrides(values)
  return resolveProxySettings(configFile, overrides)
}

export async function runParentProxy(argv: string[]): Promise<number> {
  const logger = jsonLogger({component: 'parent-proxy'})
  try {
    const running = await startParentProxy(await settingsFromArgv(argv), logger)
    return await waitForSignals(running, logger)
  } catch (error) {
    const e = isNleError(error) ? error : new NleError('PROXY_INTERNAL', (error as Error)?.message ?? String(error))
    logger.log('error', 'start_failed', {code: e.code, message: e.message, hint: e.hint, exitCode: e.exitCode})
    return e.exitCode
  }
}
