import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {DEFAULT_CONFIG_FILE} from '../lib/config/load.js'
import {jsonLogger} from '../lib/server/log.js'
import {credentialSource, resolveProxySettings, startParentProxy, upstreamPath, waitForSignals} from '../lib/proxy/index.js'

export default class Proxy extends BaseCommand<typeof Proxy> {
  static override jsonLines = true
  static override summary = 'Run the parent proxy: TLS in front of the enclave server\'s socket, relaying sealed requests only.'
  static override description = `Listens with HTTPS (proxy.tls, or a development certificate made with --self-signed DIR) and optionally plain HTTP on 127.0.0.1 (--http-port), and relays GET /v1/attestation, POST /v1/chat/completions and GET /healthz to the enclave socket(s), round-robin. Bodies are sealed end to end: the proxy sees ciphertext and logs only method, path, status, sizes and latency.

Limits from nle.yaml (proxy.*), overridable here: body size (413), concurrency and queue (429 with Retry-After), upstream timeout (504); 502 when no enclave socket answers. Against hostile clients: connections in all and per client address (closed on accept beyond them), 8 KiB of headers, deadlines for the handshake + headers and for the whole request (408, closed), and the request-body bytes held at once (a body that does not fit is refused with 429 before it is read). SIGTERM drains in-flight streams (proxy.drainTimeoutMs) and exits 0. Logs are JSON lines on stderr; with --json, stdout carries line-delimited JSON events too: listening (addresses), stopped (exit status), error (code, message, hint).

KMS mode: --credentials-socket (proxy.credentials.socket) also serves GET /v1/credentials on that Unix socket (mode 0600, never on TCP): the host role's AWS credentials, from IMDSv2 (--credentials-source imds) or this process's AWS_* environment (env), for the enclave's KMS calls. Credential values are never logged.`
  static override examples = [
    '<%= config.bin %> proxy --config /etc/nle/app/nle.yaml --upstream unix:/run/nle/app.sock',
    '<%= config.bin %> proxy --upstream unix:/tmp/nle/server.sock --self-signed .nle/tls --http-port 8080',
    '<%= config.bin %> proxy --upstream unix:/run/nle/app.sock --max-connections 2048 --max-connections-per-client 8 --request-timeout-ms 15000',
    '<%= config.bin %> proxy --config /etc/nle/app/nle.yaml --upstream unix:/run/nle/app.sock --credentials-socket /run/nle/app-credentials.sock --credentials-source imds',
  ]
  static override flags = {
    config: Flags.file({char: 'c', description: `Path to nle.yaml (default ./${DEFAULT_CONFIG_FILE} when present).`}),
    upstream: Flags.string({description: 'Enclave server socket, unix:/abs/path.sock (repeat for several enclaves).', multiple: true}),
    host: Flags.string({description: 'HTTPS listen address (default proxy.host).'}),
    port: Flags.integer({description: 'HTTPS port (default proxy.port; 0 = any free port).', min: 0, max: 65535}),
    'http-port': Flags.integer({description: 'Also serve plain HTTP on 127.0.0.1 at this port.', min: 0, max: 65535}),
    cert: Flags.file({description: 'PEM certificate (overrides proxy.tls.cert).', dependsOn: ['key']}),
    key: Flags.file({description: 'PEM private key (overrides proxy.tls.key).', dependsOn: ['cert']}),
    'self-signed': Flags.directory({description: 'Without proxy.tls: make a development certificate into this folder (cert.pem, key.pem).'}),
    'body-limit': Flags.integer({description: 'Largest request body in bytes (proxy.bodyLimitBytes).', min: 1}),
    concurrency: Flags.integer({description: 'Requests in flight to the enclave (proxy.concurrency).', min: 1}),
    queue: Flags.integer({description: 'Requests that may wait for a slot (proxy.queue).', min: 0}),
    'upstream-timeout-ms': Flags.integer({description: 'proxy.upstreamTimeoutMs.', min: 1}),
    'drain-timeout-ms': Flags.integer({description: 'proxy.drainTimeoutMs.', min: 0}),
    'max-connections': Flags.integer({description: 'Client connections open at once (proxy.maxConnections, default 512).', min: 1}),
    'max-connections-per-client': Flags.integer({description: 'Client connections open at once from one address; IPv6 per /64 (proxy.maxConnectionsPerClient, default 128).', min: 1}),
    'max-buffered-bytes': Flags.integer({description: 'Request-body bytes held at once; beyond, 429 without reading (proxy.maxBufferedBytes, default 32 MiB).', min: 1}),
    'headers-timeout-ms': Flags.integer({description: 'Time for the TLS handshake and the request headers (proxy.headersTimeoutMs, default 10000).', min: 1}),
    'request-timeout-ms': Flags.integer({description: 'Time to send the whole request, body included (proxy.requestTimeoutMs, default 30000).', min: 1}),
    'credentials-socket': Flags.string({description: 'KMS mode: serve the enclave\'s AWS credentials on this Unix socket (proxy.credentials.socket).'}),
    'credentials-source': Flags.string({description: 'Where those credentials come from (default env; proxy.credentials.source).', options: ['env', 'imds']}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const settings = await resolveProxySettings(f.config, {
      ...(f.upstream ? {upstreams: f.upstream.map(upstreamPath)} : {}),
      host: f.host,
      port: f.port,
      httpPort: f['http-port'],
      ...(f.cert && f.key ? {tls: {cert: f.cert, key: f.key}} : {}),
      selfSignedDir: f['self-signed'],
      bodyLimitBytes: f['body-limit'],
      concurrency: f.concurrency,
      queue: f.queue,
      upstreamTimeoutMs: f['upstream-timeout-ms'],
      drainTimeoutMs: f['drain-timeout-ms'],
      maxConnections: f['max-connections'],
      maxConnectionsPerClient: f['max-connections-per-client'],
      maxBufferedBytes: f['max-buffered-bytes'],
      headersTimeoutMs: f['headers-timeout-ms'],
      requestTimeoutMs: f['request-timeout-ms'],
      credentialsSocket: f['credentials-socket'],
      credentialsSource: credentialSource(f['credentials-source']),
    })
    const logger = jsonLogger({component: 'parent-proxy'})
    const running = await startParentProxy(settings, logger)
    const address = (a?: {host: string; port: number}): string | undefined => (a ? `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}` : undefined)
    if (this.jsonEnabled()) {
      this.emitEvent('listening', {
        ...(running.https ? {https: address(running.https)} : {}),
        ...(running.http ? {http: address(running.http)} : {}),
        upstreams: settings.upstreams.length,
        ...(running.credentials ? {credentials: running.credentials} : {}),
      })
    }
    const exitCode = await waitForSignals(running, logger)
    if (this.jsonEnabled()) this.emitEvent('stopped', {exitCode})
    process.exitCode = exitCode
  }
}
