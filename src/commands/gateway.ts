import {resolve} from 'node:path'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {durationFlag, enclaveClientFlags, enclaveModeFlags, enclaveTrustFlags} from '../cli/flags.js'
import {openEnclaveClient} from '../lib/client/open.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {isNleError} from '../lib/errors.js'
import {type AttestationState, DEFAULT_LISTEN, DEFAULT_TOKEN_FILE, type GatewayEvent, TOKEN_ENV, gatewayError, gatewayToken, modelIdFromLockfile, parseListen, startGateway} from '../lib/gateway/index.js'
import {DEFAULT_LOCKFILE, readLockfile} from '../lib/lockfile.js'
import {untilStopSignal} from '../lib/net/signals.js'

export interface GatewayResult {
  url: string
  stopped: true
}

const URL_OF = (url: string): string => (url.startsWith('unix:') ? 'http://localhost' : url)

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
    parseListen(f.listen) // a non-loopback address is refused before anything is read or contacted
    if (!f.token && f.socket === undefined) {
      throw gatewayError('GATEWAY_TOKEN_REQUIRED', '--no-token is allowed only with --socket: any local user can connect to a loopback port.', {hint: 'Drop --no-token, or add --socket PATH.'})
    }
    const access = f.token ? await gatewayToken(resolve(f['token-file'])) : undefined
    const ttlMs = f['attestation-ttl']
    // The measurements come from the project (or --lockfile), never from the dev stack's endpoints file.
    const connection = await openEnclaveClient({
      flags: enclaveClientFlags(f.upstream, f),
      warn: (m) => this.warn(m),
      client: {attestationTtlMs: ttlMs, timeoutMs: f.timeout},
      noTarget: () =>
        gatewayError('GATEWAY_NO_UPSTREAM', 'No enclave to front: no --upstream, and no `nle dev` running in this folder.', {
          hint: 'Start `nle dev` in this project, or pass --upstream https://HOST:PORT.',
        }),
    })
    const {client, target} = connection
    const modelId = modelIdFromLockfile(await readLockfile(connection.lockfile ?? DEFAULT_LOCKFILE))
    const maxTokens = await projectMaxTokens()
    const json = this.jsonEnabled()
    const log = (e: GatewayEvent): void => {
      // Metadata only: never a body. JSON lines on stderr with --json, short lines otherwise.
      if (json) process.stderr.write(JSON.stringify(e) + '\n')
      else if (e.event === 'access') process.stderr.write(`${e.method} ${e.path} ${e.status} ${e.bytesIn}B→${e.bytesOut}B ${e.ms}ms${e.code ? ` ${e.code}` : ''}\n`)
      else if (e.event === 'attested') process.stderr.write(`attestation verified (${e.reason}): PCR0 ${e.pcr0.slice(0, 16)}…\n`)
      else process.stderr.write(`attestation FAILED (${e.reason}): ${e.code}; answering 503\n`)
    }
    let started
    try {
      started = await startGateway({
        upstream: client,
        upstreamDisplay: target,
        listen: f.listen,
        ...(f.socket === undefined ? {} : {socketPath: resolve(f.socket)}),
        token: access?.token ?? null,
        allowOrigins: f['allow-origin'] ?? [],
        attestationTtlMs: ttlMs,
        mode: client.mode,
        modelId,
        ...(maxTokens === undefined ? {} : {limits: {maxTokens}}),
        log,
      })
    } catch (error) {
      connection.close()
      throw error
    }
    const {gateway, url, attestation} = started
    if (json) {
      // The token itself is never printed: where it is kept is.
      process.stdout.write(JSON.stringify({event: 'listening', ready: true, url, openaiBaseUrl: `${URL_OF(url)}/v1`, mode: client.mode, token: access ? {required: true, ...(access.file ? {file: access.file} : {env: TOKEN_ENV})} : {required: false}, attestation: summary(attestation)}) + '\n')
    } else {
      this.log(`nle gateway listening on ${url} (OpenAI base URL: ${URL_OF(url)}/v1) → ${target} · mode ${client.mode}`)
      if (access?.file) this.log(`access token ${access.created ? 'made in' : 'in'} ${access.file}: OPENAI_API_KEY=$(cat ${access.file})`)
      else if (access) this.log(`access token: the value of ${TOKEN_ENV}`)
      else this.log('no access token: only this user can connect to the socket')
      if (attestation.status === 'verified') {
        this.log(`enclave verified: PCR0 ${attestation.pcrs?.PCR0?.slice(0, 16) ?? '?'}… (${attestation.root === 'insecure-dev-root' ? 'nle dev root (not AWS)' : 'AWS Nitro root G1'})${attestation.debug ? ' DEBUG MODE' : ''}`)
      } else {
        this.log(`enclave NOT verified (${attestation.error?.code ?? 'unknown'}): requests are refused with 503 until it verifies.`)
      }
      this.log('Ctrl-C stops it.')
    }
    await untilStopSignal()
    await gateway.stop()
    connection.close()
    // --json: stdout is line-delimited JSON events (listening, stopped; errors too), never a pretty-printed object.
    if (json) {
      process.stdout.write(JSON.stringify({event: 'stopped', url, stopped: true}) + '\n')
      return undefined
    }
    this.log('nle gateway stopped.')
    return {url, stopped: true}
  }
}

/** The project's runtime.maxTokens (nle.yaml here), so a larger max_tokens is refused rather than cut; none outside a project. */
async function projectMaxTokens(): Promise<number | undefined> {
  try {
    return (await loadConfig(DEFAULT_CONFIG_FILE)).config.runtime.maxTokens
  } catch (error) {
    if (isNleError(error) && error.code === 'CONFIG_NOT_FOUND') return undefined
    throw error
  }
}

function summary(a: AttestationState): Record<string, unknown> {
  return a.status === 'verified'
    ? {status: a.status, pcr0: a.pcrs?.PCR0, moduleId: a.moduleId, root: a.root, debug: a.debug, verifiedAt: a.verifiedAt}
    : {status: a.status, error: a.error}
}
