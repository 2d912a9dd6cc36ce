/**
 * `nle kms serve`: from the command's settings to a running local KMS — the state file (made when
 * absent), the accepted identities, the attestation root — and what it says about itself: the
 * `listening` event (access key ids, never a secret) and the human lines.
 */
import {mkdir, readFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {AWS_NITRO_ROOT_G1, type TrustedRoot, insecureDevRoot} from '../../attestation/roots.js'
import {isNleError} from '../../errors.js'
import {kmsError} from '../errors.js'
import {type RunningLocalKms, startLocalKms} from './server.js'
import {type LocalState, loadIdentities, loadState} from './state.js'

export interface ServeLocalKmsOptions {
  host: string
  port: number
  /** The state file (keys, aliases, identities); its folder is made when absent. */
  state: string
  /** A JSON list of identities to accept instead of the state file's. */
  identities?: string | undefined
  /** PEM root (the NSM simulator's) instead of AWS's. */
  devRoot?: string | undefined
  maxAttestationAgeMs: number
  /** Account and region of a new state. */
  account: string
  region: string
  /** One line per request (no bodies, no secrets). */
  log: (line: string) => void
}

export interface ServedLocalKms {
  server: RunningLocalKms
  statePath: string
  created: boolean
  root: TrustedRoot
  state: LocalState
  /** Where the identities' secrets are (the identities file, or the state file). */
  secretsIn: string
}

export async function serveLocalKms(o: ServeLocalKmsOptions): Promise<ServedLocalKms> {
  const statePath = resolve(o.state)
  const {state, created} = await loadState(statePath, {accountId: o.account, region: o.region})
  if (o.identities) state.identities = await loadIdentities(o.identities)
  const root = o.devRoot ? await loadDevRoot(o.devRoot) : AWS_NITRO_ROOT_G1
  await mkdir(dirname(statePath), {recursive: true})
  const server = await startLocalKms({host: o.host, port: o.port, state, statePath, root, maxAttestationAgeMs: o.maxAttestationAgeMs, log: o.log})
  return {server, statePath, created, root, state, secretsIn: o.identities ?? statePath}
}

async function loadDevRoot(path: string): Promise<TrustedRoot> {
  try {
    return insecureDevRoot(await readFile(path, 'utf8'))
  } catch (error) {
    throw kmsError('KMS_ROOT_INVALID', `Cannot load the dev root ${path}: ${isNleError(error) ? error.message : (error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'Pass the PEM root certificate of the NSM simulator.',
      cause: error,
    })
  }
}

/** The `listening` event of `--json`: access key ids only, the secrets stay in their file. */
export function kmsListeningEvent(s: ServedLocalKms) {
  const devRoot = s.root.name === 'insecure-dev-root'
  return {
    url: s.server.url,
    state: s.statePath,
    created: s.created,
    root: devRoot ? {name: s.root.name, sha256: s.root.sha256} : {name: s.root.name},
    identities: s.state.identities.map((i) => ({arn: i.arn, accessKeyId: i.accessKeyId})),
  }
}

/** What `nle kms serve` prints once listening (no secret: only where it is kept). */
export function kmsListeningLines(s: ServedLocalKms): string[] {
  const root = s.root.name === 'insecure-dev-root' ? `dev root ${s.root.sha256.slice(0, 16)}… (INSECURE: not AWS)` : 'AWS Nitro Enclaves root G1'
  return [
    `nle kms serve: listening on ${s.server.url}`,
    `state: ${s.statePath}${s.created ? ' (new)' : ''}; attestation root: ${root}`,
    ...s.state.identities.map((i) => `identity: ${i.arn} (access key ${i.accessKeyId}; secret in ${s.secretsIn})`),
  ]
}
