/**
 * What a running `nle dev` stack publishes for other commands (`nle chat`, `nle gateway`,
 * `nle attest verify`) in the project: `.nle/dev/endpoints.json`. Removed when the stack stops.
 */
import {readFile, rm, writeFile, rename, mkdir} from 'node:fs/promises'
import {dirname, join} from 'node:path'

export interface DevEndpoints {
  /** The parent proxy's HTTPS URL. */
  proxyUrl: string
  /** The enclave server's Unix socket (what the proxy forwards to). */
  enclaveSocket: string
  /** The local KMS endpoint. */
  kmsUrl: string
  /** The dev key and where the endpoint keeps its state (the dev client identity of KMS mode is there). */
  kms?: {keyArn: string; region: string; stateFile: string; identitiesFile?: string}
  /** PEM of the NSM simulator's root: the only root dev documents chain to. */
  devRootFile: string
  devRootSha256: string
  /** PEM of the proxy's self-signed certificate. */
  caFile: string
  lockfile: string
  /** pid of the `nle dev` process that owns the stack. */
  pid: number
}

export function endpointsFile(projectDir: string): string {
  return join(projectDir, '.nle', 'dev', 'endpoints.json')
}

export async function writeEndpoints(projectDir: string, endpoints: DevEndpoints): Promise<void> {
  const file = endpointsFile(projectDir)
  await mkdir(dirname(file), {recursive: true})
  await writeFile(`${file}.tmp`, JSON.stringify(endpoints, null, 2) + '\n')
  await rename(`${file}.tmp`, file)
}

/** The endpoints of a live dev stack in this project, or undefined (absent, or its owner is gone). */
export async function readEndpoints(projectDir: string): Promise<DevEndpoints | undefined> {
  try {
    const e = JSON.parse(await readFile(endpointsFile(projectDir), 'utf8')) as DevEndpoints
    process.kill(e.pid, 0)
    return e
  } catch {
    return undefined
  }
}

export async function removeEndpoints(projectDir: string): Promise<void> {
  await rm(endpointsFile(projectDir), {force: true})
}
