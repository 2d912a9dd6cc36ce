/**
 * The parent proxy's flags, once: `nle proxy` (oclif) and the runtime entry
 * (runtime/parent-proxy, `node:util` parseArgs) are both generated from this table, and both turn
 * the values into settings with `proxyOverrides`. Every value arrives as text and is checked here.
 */
import {parseDuration} from '../duration.js'
import {NleError} from '../errors.js'
import {CREDENTIAL_SOURCES, type CredentialSource} from './credentials.js'
import type {ProxySettings} from './main.js'

export type ProxyFlagKind = 'file' | 'directory' | 'string' | 'strings' | 'count' | 'port' | 'duration'

export interface ProxyFlag {
  kind: ProxyFlagKind
  description: string
  /** Smallest accepted count (count flags). */
  min?: number
  options?: readonly string[]
  dependsOn?: readonly string[]
  char?: 'c'
}

const usage = (message: string): NleError => new NleError('PROXY_USAGE', message, {hint: 'Run `nle proxy --help` for the flags.'})

export const PROXY_FLAGS = {
  config: {kind: 'file', char: 'c', description: 'Path to nle.yaml (default ./nle.yaml when present).'},
  upstream: {kind: 'strings', description: 'Enclave server socket, unix:/abs/path.sock (repeat for several enclaves).'},
  host: {kind: 'string', description: 'HTTPS listen address (default proxy.host).'},
  port: {kind: 'port', description: 'HTTPS port (default proxy.port; 0 = any free port).'},
  'http-port': {kind: 'port', description: 'Also serve plain HTTP on 127.0.0.1 at this port.'},
  cert: {kind: 'file', description: 'PEM certificate (overrides proxy.tls.cert).', dependsOn: ['key']},
  key: {kind: 'file', description: 'PEM private key (overrides proxy.tls.key).', dependsOn: ['cert']},
  'self-signed': {kind: 'directory', description: 'Without proxy.tls: make a development certificate into this folder (cert.pem, key.pem).'},
  'body-limit': {kind: 'count', min: 1, description: 'Largest request body in bytes (proxy.bodyLimitBytes).'},
  concurrency: {kind: 'count', min: 1, description: 'Requests in flight to the enclave (proxy.concurrency).'},
  queue: {kind: 'count', min: 0, description: 'Requests that may wait for a slot (proxy.queue).'},
  'upstream-timeout': {kind: 'duration', description: 'Longest wait for the enclave\'s answer, 504 past it (proxy.upstreamTimeoutMs).'},
  'drain-timeout': {kind: 'duration', description: 'How long a stop waits for in-flight streams (proxy.drainTimeoutMs).'},
  'max-connections': {kind: 'count', min: 1, description: 'Client connections open at once (proxy.maxConnections, default 512).'},
  'max-connections-per-client': {kind: 'count', min: 1, description: 'Client connections open at once from one address; IPv6 per /64 (proxy.maxConnectionsPerClient, default 128).'},
  'max-buffered-bytes': {kind: 'count', min: 1, description: 'Request-body bytes held at once; beyond, 429 without reading (proxy.maxBufferedBytes, default 32 MiB).'},
  'headers-timeout': {kind: 'duration', description: 'Time for the TLS handshake and the request headers (proxy.headersTimeoutMs, default 10s).'},
  'request-timeout': {kind: 'duration', description: 'Time to send the whole request, body included (proxy.requestTimeoutMs, default 30s).'},
  'credentials-socket': {kind: 'string', description: 'KMS mode: serve the enclave\'s AWS credentials on this Unix socket (proxy.credentials.socket).'},
  'credentials-source': {kind: 'string', options: ['env', 'imds'], description: 'Where those credentials come from (default env; proxy.credentials.source).'},
  'weights-dir': {kind: 'directory', description: 'Sealed model: serve the sealed files of this folder (model.sealedPath) to the enclave.', dependsOn: ['weights-socket']},
  'weights-socket': {kind: 'string', description: 'Sealed model: the weights server\'s Unix socket (bridged to vsock model.weightsVsockPort).', dependsOn: ['weights-dir']},
} as const satisfies Record<string, ProxyFlag>

/** `unix:/path` or `/path` → the socket path. */
export function upstreamPath(spec: string): string {
  const path = spec.startsWith('unix:') ? spec.slice(5) : spec
  if (!path.startsWith('/')) throw usage(`An upstream is a Unix socket (unix:/abs/path.sock), not ${JSON.stringify(spec)}.`)
  return path
}

/** `env` or `imds`, else a usage error. */
export function credentialSource(value: string | undefined): CredentialSource | undefined {
  if (value === undefined || (CREDENTIAL_SOURCES as readonly string[]).includes(value)) return value as CredentialSource | undefined
  throw usage(`--credentials-source is env or imds, not ${JSON.stringify(value)}.`)
}

export type ProxyFlagName = keyof typeof PROXY_FLAGS
export type ProxyFlagValues = Partial<Record<ProxyFlagName, string | string[]>>

/** The options of `node:util` parseArgs for these flags. */
export function proxyParseArgsOptions(): Record<ProxyFlagName, {type: 'string'; multiple?: true; short?: string}> {
  const out = {} as Record<ProxyFlagName, {type: 'string'; multiple?: true; short?: string}>
  for (const [name, flag] of Object.entries(PROXY_FLAGS) as [ProxyFlagName, ProxyFlag][]) {
    out[name] = {type: 'string', ...(flag.kind === 'strings' ? {multiple: true as const} : {}), ...(flag.char ? {short: flag.char} : {})}
  }
  return out
}

function count(name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw usage(`--${name} must be a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}, not ${JSON.stringify(text)}.`)
  return Number(text)
}

/** The flags' values (as text) → the config file to read and the settings that override it. */
export function proxyOverrides(values: ProxyFlagValues): {configFile: string | undefined; overrides: Partial<ProxySettings>} {
  const one = (name: ProxyFlagName): string | undefined => {
    const v = values[name]
    return Array.isArray(v) ? v.at(-1) : v
  }
  for (const [name, flag] of Object.entries(PROXY_FLAGS) as [ProxyFlagName, ProxyFlag][]) {
    const v = one(name)
    if (v === undefined) continue
    if (flag.options && !flag.options.includes(v)) throw usage(`--${name} is one of ${flag.options.join(', ')}, not ${JSON.stringify(v)}.`)
    for (const other of flag.dependsOn ?? []) if (one(other as ProxyFlagName) === undefined) throw usage(`--${name} needs --${other}.`)
  }
  const n = (name: ProxyFlagName): number | undefined => {
    const v = one(name)
    if (v === undefined) return undefined
    const flag: ProxyFlag = PROXY_FLAGS[name]
    if (flag.kind === 'duration') return parseDuration(v, `--${name}`)
    if (flag.kind === 'port') return count(name, v, 0, 65535)
    return count(name, v, flag.min ?? 0)
  }
  const upstream = values.upstream === undefined ? undefined : ([] as string[]).concat(values.upstream)
  const cert = one('cert')
  const key = one('key')
  const source = one('credentials-source')
  const overrides: Partial<ProxySettings> = {
    ...(upstream ? {upstreams: upstream.map(upstreamPath)} : {}),
    ...(cert && key ? {tls: {cert, key}} : {}),
  }
  const set = <K extends keyof ProxySettings>(k: K, v: ProxySettings[K] | undefined): void => {
    if (v !== undefined) overrides[k] = v
  }
  set('host', one('host'))
  set('port', n('port'))
  set('httpPort', n('http-port'))
  set('selfSignedDir', one('self-signed'))
  set('bodyLimitBytes', n('body-limit'))
  set('concurrency', n('concurrency'))
  set('queue', n('queue'))
  set('upstreamTimeoutMs', n('upstream-timeout'))
  set('drainTimeoutMs', n('drain-timeout'))
  set('maxConnections', n('max-connections'))
  set('maxConnectionsPerClient', n('max-connections-per-client'))
  set('maxBufferedBytes', n('max-buffered-bytes'))
  set('headersTimeoutMs', n('headers-timeout'))
  set('requestTimeoutMs', n('request-timeout'))
  set('credentialsSocket', one('credentials-socket'))
  set('credentialsSource', source === undefined ? undefined : credentialSource(source))
  const weightsDir = one('weights-dir')
  const weightsSocket = one('weights-socket')
  if ((weightsDir === undefined) !== (weightsSocket === undefined)) throw usage('--weights-dir and --weights-socket go together.')
  if (weightsDir !== undefined && weightsSocket !== undefined) overrides.weights = {dir: weightsDir, socket: weightsSocket}
  return {configFile: one('config'), overrides}
}
