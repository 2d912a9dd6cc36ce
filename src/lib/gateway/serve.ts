/**
 * `nle gateway`: from the command's settings to a running gateway — the access token, the enclave
 * client (openEnclaveClient: the project's lockfile, the dev stack when there is one), the model id
 * and token limit of the project — and the lines it prints about itself. Never a body, never the
 * token itself.
 */
import {resolve} from 'node:path'

import {type EnclaveClientFlags, openEnclaveClient} from '../client/open.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../config/load.js'
import {isNleError} from '../errors.js'
import {DEFAULT_LOCKFILE, readLockfile} from '../lockfile.js'
import {gatewayError} from './errors.js'
import type {AttestationState} from './attestation.js'
import {type Gateway, type GatewayEvent, modelIdFromLockfile, startGateway} from './gateway.js'
import {parseListen} from './listen.js'
import {type GatewayToken, TOKEN_ENV, gatewayToken} from './token.js'

export interface ServeGatewayOptions {
  enclave: EnclaveClientFlags
  listen: string
  socket?: string | undefined
  tokenFile: string
  requireToken: boolean
  allowOrigins: string[]
  attestationTtlMs: number
  timeoutMs: number
  warn: (message: string) => void
  log: (event: GatewayEvent) => void
}

export interface ServedGateway {
  url: string
  /** What to give an OpenAI client as its base URL. */
  openaiBaseUrl: string
  target: string
  mode: 'attested' | 'kms'
  access: GatewayToken | undefined
  attestation: AttestationState
  /** Stops serving and closes the enclave client. */
  stop(): Promise<void>
}

export async function serveGateway(o: ServeGatewayOptions): Promise<ServedGateway> {
  parseListen(o.listen) // a non-loopback address is refused before anything is read or contacted
  if (!o.requireToken && o.socket === undefined) {
    throw gatewayError('GATEWAY_TOKEN_REQUIRED', '--no-token is allowed only with --socket: any local user can connect to a loopback port.', {hint: 'Drop --no-token, or add --socket PATH.'})
  }
  const access = o.requireToken ? await gatewayToken(resolve(o.tokenFile)) : undefined
  // The measurements come from the project (or --lockfile), never from the dev stack's endpoints file.
  const connection = await openEnclaveClient({
    flags: o.enclave,
    warn: o.warn,
    client: {attestationTtlMs: o.attestationTtlMs, timeoutMs: o.timeoutMs},
    noTarget: () => gatewayError('GATEWAY_NO_UPSTREAM', 'No enclave to front: no --upstream, and no `nle dev` running in this folder.', {hint: 'Start `nle dev` in this project, or pass --upstream https://HOST:PORT.'}),
  })
  let started: {gateway: Gateway; url: string; attestation: AttestationState}
  try {
    const modelId = modelIdFromLockfile(await readLockfile(connection.lockfile ?? DEFAULT_LOCKFILE))
    const maxTokens = await projectMaxTokens()
    started = await startGateway({
      upstream: connection.client,
      upstreamDisplay: connection.target,
      listen: o.listen,
      ...(o.socket === undefined ? {} : {socketPath: resolve(o.socket)}),
      token: access?.token ?? null,
      allowOrigins: o.allowOrigins,
      attestationTtlMs: o.attestationTtlMs,
      mode: connection.client.mode,
      modelId,
      ...(maxTokens === undefined ? {} : {limits: {maxTokens}}),
      log: o.log,
    })
  } catch (error) {
    connection.close()
    throw error
  }
  const {gateway, url, attestation} = started
  return {
    url,
    openaiBaseUrl: `${url.startsWith('unix:') ? 'http://localhost' : url}/v1`,
    target: connection.target,
    mode: connection.client.mode,
    access,
    attestation,
    stop: async () => {
      await gateway.stop()
      connection.close()
    },
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

/** The `listening` event of `--json`: where, how, the attestation — where the token is kept, never the token. */
export function listeningEvent(g: ServedGateway) {
  const a = g.attestation
  return {
    url: g.url,
    openaiBaseUrl: g.openaiBaseUrl,
    mode: g.mode,
    token: g.access ? {required: true as const, ...(g.access.file ? {file: g.access.file} : {env: TOKEN_ENV})} : {required: false as const},
    attestation: a.status === 'verified' ? {status: a.status, pcr0: a.pcrs?.PCR0, moduleId: a.moduleId, root: a.root, debug: a.debug, verifiedAt: a.verifiedAt} : {status: a.status, error: a.error},
  }
}

/** What a person reads when the gateway starts. */
export function listeningLines(g: ServedGateway): string[] {
  const a = g.attestation
  return [
    `nle gateway listening on ${g.url} (OpenAI base URL: ${g.openaiBaseUrl}) → ${g.target} · mode ${g.mode}`,
    g.access?.file ? `access token ${g.access.created ? 'made in' : 'in'} ${g.access.file}: OPENAI_API_KEY=$(cat ${g.access.file})` : g.access ? `access token: the value of ${TOKEN_ENV}` : 'no access token: only this user can connect to the socket',
    a.status === 'verified'
      ? `enclave verified: PCR0 ${a.pcrs?.PCR0?.slice(0, 16) ?? '?'}… (${a.root === 'insecure-dev-root' ? 'nle dev root (not AWS)' : 'AWS Nitro root G1'})${a.debug ? ' DEBUG MODE' : ''}`
      : `enclave NOT verified (${a.error?.code ?? 'unknown'}): requests are refused with 503 until it verifies.`,
    'Ctrl-C stops it.',
  ]
}

/** One stderr line per event: JSON with --json, short text otherwise. Metadata only, never a body. */
export function eventLine(e: GatewayEvent, json: boolean): string {
  if (json) return JSON.stringify(e)
  if (e.event === 'access') return `${e.method} ${e.route} ${e.status} ${e.bytesIn}B→${e.bytesOut}B ${e.ms}ms${e.code ? ` ${e.code}` : ''}`
  if (e.event === 'attested') return `attestation verified (${e.reason}): PCR0 ${e.pcr0.slice(0, 16)}…`
  return `attestation FAILED (${e.reason}): ${e.code}; answering 503`
}
