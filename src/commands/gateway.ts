import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {durationFlag, enclaveClientFlags, enclaveModeFlags, enclaveTrustFlags} from '../cli/flags.js'
import {DEFAULT_LISTEN, DEFAULT_TOKEN_FILE, TOKEN_ENV, eventLine, listeningEvent, listeningLines, serveGateway} from '../lib/gateway/index.js'
import {untilStopSignal} from '../lib/net/signals.js'

export interface GatewayResult {
  url: string
  stopped: true
}

export default class Gateway extends BaseCommand<typeof Gateway> {
  static override jsonLines = true
  static override summary = 'Serve a local OpenAI-compatible endpoint that attests the enclave and seals every request.'
  static override description = `Any OpenAI client (SDKs, curl, chat front ends) can talk to the enclave through it: point the client's base URL at the printed URL + /v1 and its API key at the gateway's access token.

Access: every request needs Authorization: Bearer <token> — the OpenAI SDKs send their API key that way — because any local user can reach a loopback port and would otherwise ask in your name (and, in KMS mode, with your AWS identity). The token is ${TOKEN_ENV} when set, else read from --token-file (default ${DEFAULT_TOKEN_FILE}; it must be yours, mode 0600), else made there on first use. With --socket PATH it listens on a Unix socket (mode 0600) instead of TCP, and --no-token is then allowed. Browser pages are refused (403) unless their origin is named with --allow-origin (never Origin: null); POST bodies must be application/json (415 otherwise), so a page cannot post a form or text/plain to it. The gateway verifies the enclave's attestation against the measurements in nle.lock.json at start and again per its policy (--attestation-ttl, after the upstream reconnects, or when the enclave rotated its key), seals each request to the attested key and opens each answer and stream chunk. While verification fails it answers 503 and forwards nothing.

It listens on loopback only (questions and answers are in clear between the client and the gateway) and never logs bodies. GET /nle/attestation shows what it verified.

It serves POST /v1/chat/completions, /v1/completions and /v1/responses (text in and out, whole or streamed) and GET /v1/models (one model id, stable for the image in the lockfile, with the attestation state). Parameters it cannot honour (tools, response_format other than text, logprobs, penalties, image parts…) are refused with 400 unsupported_parameter naming the param, never ignored; a prompt longer than the model's context is 400 context_length_exceeded, before any stream starts.

Statuses: 400 bad request, 413 too large, 429 proxy/enclave busy (Retry-After passed through), 502 upstream unreachable or answer broken in transit, 503 attestation failed or enclave down, 504 upstream timeout. Errors are OpenAI-shaped: {"error": {"message", "type", "code", "param"}}.

Inside a project where \`nle dev\` is running, the upstream, the dev root, the proxy certificate and the lockfile are found automatically.`
  static override examples = [
    '<%= config.bin %> gateway',
    '<%= config.bin %> gateway --upstream https://enclave-host:8443 --lockfile nle.lock.json --listen 127.0.0.1:8787',
    'OPENAI_BASE_URL=http://127.0.0.1:8787/v1 OPENAI_API_KEY=$(cat .nle/gateway.token) my-openai-app',
    '<%= config.bin %> gateway --allow-origin http://localhost:3000',
    '<%= config.bin %> gateway --socket /run/user/1000/nle-gateway.sock --no-token',
  ]
  static override flags = {
    ...enclaveTrustFlags,
    ...enclaveModeFlags,
    upstream: Flags.string({description: 'The parent proxy URL (https://…), or unix:/path.sock for the enclave socket. Default: the running `nle dev` stack.'}),
    listen: Flags.string({description: 'Loopback address to serve on (host:port or port; port 0 = any free port).', default: DEFAULT_LISTEN}),
    socket: Flags.string({description: 'Serve on this Unix socket (mode 0600) instead of --listen.'}),
    'token-file': Flags.file({description: `Where the access token is kept (made, mode 0600, when absent; ${TOKEN_ENV} overrides).`, default: DEFAULT_TOKEN_FILE}),
    token: Flags.boolean({description: 'Require the access token (--no-token: only with --socket).', default: true, allowNo: true}),
    'allow-origin': Flags.string({description: 'A browser origin (scheme://host:port) allowed to call the gateway, with CORS (repeatable). None by default.', multiple: true}),
    'attestation-ttl': durationFlag({description: 'Re-verify the attestation after this long', defaultMs: 300_000}),
    timeout: durationFlag({description: 'How long to wait for the enclave to start answering', defaultMs: 120_000}),
  }

  async run(): Promise<GatewayResult | undefined> {
    const f = this.flags
    const json = this.jsonEnabled()
    const served = await serveGateway({
      enclave: enclaveClientFlags(f.upstream, f),
      listen: f.listen,
      socket: f.socket,
      tokenFile: f['token-file'],
      requireToken: f.token,
      allowOrigins: f['allow-origin'] ?? [],
      attestationTtlMs: f['attestation-ttl'],
      timeoutMs: f.timeout,
      warn: (m) => this.warn(m),
      log: (e) => process.stderr.write(eventLine(e, json) + '\n'),
    })
    // Listen for SIGINT/SIGTERM before saying it listens: a script may send one as soon as it reads that.
    const signalled = untilStopSignal()
    // --json: stdout is one envelope per line (listening, stopped; an error too).
    if (json) this.emitEvent('listening', listeningEvent(served))
    else for (const line of listeningLines(served)) this.log(line)
    await signalled
    await served.stop()
    if (json) {
      this.emitEvent('stopped', {url: served.url})
      return undefined
    }
    this.log('nle gateway stopped.')
    return {url: served.url, stopped: true}
  }
}
