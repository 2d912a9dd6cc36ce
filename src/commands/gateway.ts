import {readFile} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {insecureDevRoot} from '../lib/attestation/roots.js'
import {NleClient} from '../lib/client/index.js'
import {clientKms, resolveClientKms} from '../lib/client/kms.js'
import {DEFAULT_CONFIG_FILE} from '../lib/config/load.js'
import {projectLockfile, readEndpoints} from '../lib/dev/endpoints.js'
import {type AttestationState, DEFAULT_LISTEN, type GatewayEvent, gatewayError, parseListen, startGateway} from '../lib/gateway/index.js'
import {DEFAULT_LOCKFILE} from '../lib/lockfile.js'

export interface GatewayResult {
  url: string
  stopped: true
}

export default class Gateway extends BaseCommand<typeof Gateway> {
  static override summary = 'Serve a local OpenAI-compatible endpoint that attests the enclave and seals every request.'
  static override description = `Any OpenAI client (SDKs, curl, chat front ends) can talk to the enclave through it: point the client's base URL at the printed URL + /v1 (any API key). The gateway verifies the enclave's attestation against the measurements in nle.lock.json at start and again per its policy (--attestation-ttl, after the upstream reconnects, or when the enclave rotated its key), seals each request to the attested key and opens each answer and stream chunk. While verification fails it answers 503 and forwards nothing.

It listens on loopback only (questions and answers are in clear between the client and the gateway) and never logs bodies. GET /nle/attestation shows what it verified.

Statuses: 400 bad request, 413 too large, 429 proxy/enclave busy (Retry-After passed through), 502 upstream unreachable or answer broken in transit, 503 attestation failed or enclave down, 504 upstream timeout. Errors are OpenAI-shaped: {"error": {"message", "type", "code"}}.

Inside a project where \`nle dev\` is running, the upstream, the dev root, the proxy certificate and the lockfile are found automatically.`
  static override examples = [
    '<%= config.bin %> gateway',
    '<%= config.bin %> gateway --upstream https://enclave-host:8443 --lockfile nle.lock.json --listen 127.0.0.1:8787',
    'OPENAI_BASE_URL=http://127.0.0.1:8787/v1 OPENAI_API_KEY=unused my-openai-app',
  ]
  static override flags = {
    upstream: Flags.string({description: 'The parent proxy URL (https://…), or unix:/path.sock for the enclave socket. Default: the running `nle dev` stack.'}),
    listen: Flags.string({description: 'Loopback address to serve on (host:port or port; port 0 = any free port).', default: DEFAULT_LISTEN}),
    mode: Flags.string({description: 'How requests are protected: sealed to the attested key, or also gated by the KMS key policy.', options: ['attested', 'kms'], default: 'attested'}),
    'kms-key-id': Flags.string({description: 'KMS mode: the key (ARN, id or alias). Default: kms.keyId of nle.yaml, or the dev stack\'s key.'}),
    'kms-region': Flags.string({description: 'KMS mode: the key\'s region. Default: kms.region of nle.yaml.'}),
    profile: Flags.string({description: 'KMS mode: the AWS profile to sign KMS Encrypt with.'}),
    lockfile: Flags.file({description: `Measurements the enclave must attest to (default: build.lockfile of ./nle.yaml, else ${DEFAULT_LOCKFILE}).`}),
    'dev-root': Flags.file({description: "INSECURE, development only: trust this NSM-simulator root instead of AWS's."}),
    ca: Flags.file({description: "PEM certificate to trust for the proxy's TLS (e.g. a self-signed one)."}),
    'allow-debug': Flags.boolean({description: 'Accept a debug-mode enclave (all-zero PCRs). Its memory is readable by the host.', default: false}),
    'attestation-ttl': Flags.integer({description: 'Re-verify the attestation after this many seconds.', default: 300, min: 1}),
    timeout: Flags.integer({description: 'Seconds to wait for the enclave to start answering.', default: 120, min: 1}),
  }

  async run(): Promise<GatewayResult> {
    const f = this.flags
    parseListen(f.listen) // a non-loopback address is refused before anything is read or contacted
    const dev = f.upstream ? undefined : await readEndpoints(process.cwd(), (m) => this.warn(m))
    const target = f.upstream ?? dev?.proxyUrl
    if (!target) {
      throw gatewayError('GATEWAY_NO_UPSTREAM', 'No enclave to front: no --upstream, and no `nle dev` running in this folder.', {
        hint: 'Start `nle dev` in this project, or pass --upstream https://HOST:PORT.',
      })
    }
    const devRootFile = f['dev-root'] ?? dev?.devRootFile
    const caFile = f.ca ?? dev?.caFile
    const ttlMs = f['attestation-ttl'] * 1000
    // KMS mode: each request's key is wrapped by KMS Encrypt under this machine's AWS identity.
    const kms =
      f.mode === 'kms'
        ? clientKms(
            await resolveClientKms({
              ...(dev ? {dev} : {}),
              configFile: DEFAULT_CONFIG_FILE,
              flags: {...(f['kms-key-id'] ? {keyId: f['kms-key-id']} : {}), ...(f['kms-region'] ? {region: f['kms-region']} : {}), ...(f.profile ? {profile: f.profile} : {})},
            })(),
          )
        : undefined
    // The measurements come from the project (or --lockfile), never from the dev stack's endpoints file.
    const client = await NleClient.fromLockfile(f.lockfile ?? (await projectLockfile(process.cwd())), {
      target,
      attestationTtlMs: ttlMs,
      timeoutMs: f.timeout * 1000,
      ...(devRootFile ? {insecureDevRoot: insecureDevRoot(await readFile(devRootFile, 'utf8'))} : {}),
      ...(caFile ? {tls: {ca: await readFile(caFile, 'utf8')}} : {}),
      ...(f['allow-debug'] ? {allowDebug: true} : {}),
      ...(kms ? {kms: {wrap: kms.wrap}} : {}),
    })
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
      started = await startGateway({upstream: client, upstreamDisplay: target, listen: f.listen, attestationTtlMs: ttlMs, mode: client.mode, log})
    } catch (error) {
      client.close()
      kms?.close()
      throw error
    }
    const {gateway, url, attestation} = started
    if (json) {
      process.stdout.write(JSON.stringify({ready: true, url, openaiBaseUrl: `${url}/v1`, mode: client.mode, attestation: summary(attestation)}) + '\n')
    } else {
      this.log(`nle gateway listening on ${url} (OpenAI base URL: ${url}/v1) → ${target} · mode ${client.mode}`)
      if (attestation.status === 'verified') {
        this.log(`enclave verified: PCR0 ${attestation.pcrs?.PCR0?.slice(0, 16) ?? '?'}… (${attestation.root === 'insecure-dev-root' ? 'nle dev root (not AWS)' : 'AWS Nitro root G1'})${attestation.debug ? ' DEBUG MODE' : ''}`)
      } else {
        this.log(`enclave NOT verified (${attestation.error?.code ?? 'unknown'}): requests are refused with 503 until it verifies.`)
      }
      this.log('Ctrl-C stops it.')
    }
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    await gateway.stop()
    kms?.close()
    if (!json) this.log('nle gateway stopped.')
    return {url, stopped: true}
  }
}

function summary(a: AttestationState): Record<string, unknown> {
  return a.status === 'verified'
    ? {status: a.status, pcr0: a.pcrs?.PCR0, moduleId: a.moduleId, root: a.root, debug: a.debug, verifiedAt: a.verifiedAt}
    : {status: a.status, error: a.error}
}
