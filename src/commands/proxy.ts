import {BaseCommand} from '../cli/base-command.js'
import type {EventResult} from '../cli/results.js'
import {textFlags} from '../cli/flags.js'
import {jsonLogger} from '../lib/net/log.js'
import {PROXY_FLAGS, proxyOverrides, resolveProxySettings, startParentProxy, waitForSignals} from '../lib/proxy/index.js'

export default class Proxy extends BaseCommand<typeof Proxy> {
  static override jsonLines = true
  static override summary = 'Run the parent proxy: TLS in front of the enclave server\'s socket, relaying sealed requests only.'
  static override description = `Listens with HTTPS (proxy.tls, or a development certificate made with --self-signed DIR) and optionally plain HTTP on 127.0.0.1 (--http-port), and relays GET /v1/attestation, POST /v1/chat/completions and GET /healthz to the enclave socket(s), round-robin. Bodies are sealed end to end: the proxy sees ciphertext and logs only method, path, status, sizes and latency.

Limits from nle.yaml (proxy.*), overridable here: body size (413), concurrency and queue (429 with Retry-After), upstream timeout (504); 502 when no enclave socket answers. Against hostile clients: connections in all and per client address (closed on accept beyond them), 8 KiB of headers, deadlines for the handshake + headers and for the whole request (408, closed), and the request-body bytes held at once (a body that does not fit is refused with 429 before it is read). SIGTERM drains in-flight streams (proxy.drainTimeoutMs) and exits 0. Logs are JSON lines on stderr; with --json, stdout carries one JSON envelope per line too (docs/json.md): the events listening (addresses), stopped (its exitCode the exit status), error (code, message, hint).

KMS mode: --credentials-socket (proxy.credentials.socket) also serves GET /v1/credentials on that Unix socket (mode 0600, never on TCP): the host role's AWS credentials, from IMDSv2 (--credentials-source imds) or this process's AWS_* environment (env), for the enclave's KMS calls. Credential values are never logged.`
  static override examples = [
    '<%= config.bin %> proxy --config /etc/nle/app/nle.yaml --upstream unix:/run/nle/app.sock',
    '<%= config.bin %> proxy --upstream unix:/tmp/nle/server.sock --self-signed .nle/tls --http-port 8080',
    '<%= config.bin %> proxy --upstream unix:/run/nle/app.sock --max-connections 2048 --max-connections-per-client 8 --request-timeout 15s',
    '<%= config.bin %> proxy --config /etc/nle/app/nle.yaml --upstream unix:/run/nle/app.sock --credentials-socket /run/nle/app-credentials.sock --credentials-source imds',
  ]
  static override flags = textFlags(PROXY_FLAGS)

  async run(): Promise<void> {
    const {configFile, overrides} = proxyOverrides(this.flags)
    const settings = await resolveProxySettings(configFile, overrides)
    const logger = jsonLogger({component: 'parent-proxy'})
    const running = await startParentProxy(settings, logger)
    // Listen for SIGINT/SIGTERM before saying it listens: a script may send one as soon as it reads that.
    const stopped = waitForSignals(running, logger)
    const address = (a?: {host: string; port: number}): string | undefined => (a ? `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}` : undefined)
    if (this.jsonEnabled()) {
      this.emitEvent('listening', {
        ...(running.https ? {https: address(running.https)} : {}),
        ...(running.http ? {http: address(running.http)} : {}),
        upstreams: settings.upstreams.length,
        ...(running.credentials ? {credentials: running.credentials} : {}),
      } satisfies EventResult<'proxy', 'listening'>)
    }
    const exitCode = await stopped
    if (this.jsonEnabled()) this.emitEvent('stopped', {}, {exitCode})
    process.exitCode = exitCode
  }
}
