/**
 * One way for a command to reach an enclave: `openEnclaveClient()` is what `nle chat`,
 * `nle gateway` and `nle attest verify` share. From the command's flags it finds
 *
 * - the target: the flag (https://…, http://…, unix:/path.sock or an absolute socket path), else the
 *   running `nle dev` stack of the project (its proxy URL);
 * - what to trust: the proxy certificate (--ca, else the dev stack's own), the attestation root
 *   (AWS's; the NSM simulator's only with --dev-root or from the dev stack), debug enclaves only
 *   when allowed;
 * - the measurements: explicit ones (attest verify's --pcrN), else the lockfile (the flag, else
 *   build.lockfile of the project's nle.yaml, else nle.lock.json) — never the dev stack's file;
 * - the mode: attested, or KMS (each request's key also wrapped by KMS Encrypt under the caller's
 *   identity: the dev stack's local KMS, or nle.yaml / flags).
 *
 * It reads files and makes clients; it contacts nothing until the caller asks the client to.
 */
import {readFile} from 'node:fs/promises'
import {resolve} from 'node:path'

import {type TrustedRoot, insecureDevRoot} from '../attestation/roots.js'
import type {ExpectedPcrs} from '../attestation/verify.js'
import {DEFAULT_CONFIG_FILE} from '../config/load.js'
import {type DevEndpoints, projectLockfile, readEndpoints} from '../dev/endpoints.js'
import type {NleError} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import {NleClient, type NleClientOptions} from './client.js'
import {type ClientKms, type ClientKmsSettings, clientKms, resolveClientKms} from './kms.js'
import {clientError} from './errors.js'

export type EnclaveMode = 'attested' | 'kms'

export interface EnclaveClientFlags {
  /** Where the enclave is; absent: the running `nle dev` of `cwd`. */
  target?: string | undefined
  lockfile?: string | undefined
  /** INSECURE, dev only: PEM file of a root to trust instead of AWS's. */
  devRoot?: string | undefined
  /** PEM file to trust for the proxy's TLS certificate. */
  ca?: string | undefined
  allowDebug?: boolean | undefined
  mode?: EnclaveMode | undefined
  kmsKeyId?: string | undefined
  kmsRegion?: string | undefined
  profile?: string | undefined
}

export interface OpenEnclaveOptions {
  flags: EnclaveClientFlags
  /** The project folder (default: the working directory). */
  cwd?: string
  /** The measurements to expect instead of a lockfile's (attest verify's --pcrN flags). */
  expectedPcrs?: ExpectedPcrs
  /** Look for a running `nle dev` when there is no target (default true). */
  devStack?: boolean
  /** Told why a dev stack's endpoints file was ignored. */
  warn?: (message: string) => void
  /** Where KMS mode wraps its keys, instead of the dev stack / nle.yaml / flags. */
  kms?: () => Promise<ClientKmsSettings>
  /** Passed to every client made (timeouts, TTL, limits). */
  client?: Omit<NleClientOptions, 'target' | 'expectedPcrs' | 'kms' | 'insecureDevRoot' | 'allowDebug' | 'tls'>
  /** The caller's error when there is no target at all (default CLIENT_NO_TARGET). */
  noTarget?: () => NleError
}

export interface EnclaveConnection {
  /** The target as given or found. */
  readonly target: string
  /** The running dev stack it came from, when it did. */
  readonly dev: DevEndpoints | undefined
  /** The lockfile the measurements came from (undefined with explicit measurements). */
  readonly lockfile: string | undefined
  readonly mode: EnclaveMode
  /** The client in the mode asked for. */
  readonly client: NleClient
  /** A client to the same enclave, with the same trust, in a mode (made once per mode). */
  clientFor(mode: EnclaveMode): Promise<NleClient>
  close(): void
}

async function readPem(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    throw clientError('CLIENT_FILE_UNREADABLE', `Cannot read ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`, {
      hint: 'Check the path.',
      details: {file},
      cause: error,
    })
  }
}

export async function openEnclaveClient(options: OpenEnclaveOptions): Promise<EnclaveConnection> {
  const f = options.flags
  const cwd = options.cwd ?? process.cwd()
  const dev = f.target === undefined && options.devStack !== false ? await readEndpoints(cwd, options.warn) : undefined
  const target = f.target ?? dev?.proxyUrl
  if (!target) {
    throw (
      options.noTarget?.() ??
      clientError('CLIENT_BAD_TARGET', 'No enclave to talk to: no target given, and no `nle dev` running in this folder.', {hint: 'Start `nle dev` in this project, or name the proxy (https://HOST:PORT) or socket (unix:/path.sock).'})
    )
  }
  let expectedPcrs = options.expectedPcrs
  let lockfile: string | undefined
  if (!expectedPcrs) {
    lockfile = f.lockfile === undefined ? await projectLockfile(cwd) : resolve(cwd, f.lockfile)
    expectedPcrs = (await readLockfile(lockfile)).measurements
  }
  const devRootFile = f.devRoot ?? dev?.devRootFile
  const caFile = f.ca ?? dev?.caFile
  const root: TrustedRoot | undefined = devRootFile ? insecureDevRoot(await readPem(devRootFile, 'the dev root')) : undefined
  const ca = caFile ? await readPem(caFile, 'the CA certificate') : undefined
  const common: NleClientOptions = {
    ...options.client,
    target,
    expectedPcrs,
    ...(root ? {insecureDevRoot: root} : {}),
    ...(f.allowDebug ? {allowDebug: true} : {}),
    ...(ca ? {tls: {ca}} : {}),
  }
  // Resolved the first time KMS mode is used: the key from the dev stack, or nle.yaml and flags.
  const kmsSettings =
    options.kms ??
    resolveClientKms({
      ...(dev ? {dev} : {}),
      configFile: resolve(cwd, DEFAULT_CONFIG_FILE),
      flags: {...(f.kmsKeyId ? {keyId: f.kmsKeyId} : {}), ...(f.kmsRegion ? {region: f.kmsRegion} : {}), ...(f.profile ? {profile: f.profile} : {})},
    })
  const attested = new NleClient(common)
  let kms: {client: NleClient; wrap: ClientKms} | undefined
  const clientFor = async (mode: EnclaveMode): Promise<NleClient> => {
    if (mode === 'attested') return attested
    if (!kms) {
      const wrap = clientKms(await kmsSettings())
      kms = {client: new NleClient({...common, kms: {wrap: wrap.wrap}}), wrap}
    }
    return kms.client
  }
  const mode = f.mode ?? 'attested'
  const close = (): void => {
    attested.close()
    kms?.client.close()
    kms?.wrap.close()
  }
  let client: NleClient
  try {
    client = await clientFor(mode) // KMS mode fails now (no key, no dev identity), not at the first question
  } catch (error) {
    close()
    throw error
  }
  return {target, dev, lockfile, mode, client, clientFor, close}
}
