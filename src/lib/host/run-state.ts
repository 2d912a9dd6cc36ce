/**
 * What `nle run` started, recorded in `.nle/run.json` so that `nle stop`, `status` and `console`
 * (later processes) act on exactly that and nothing else; and the enclaves nitro-cli lists.
 */
import {mkdir, readFile} from 'node:fs/promises'

import {isNleError} from '../errors.js'
import {writeFileAtomic} from '../files.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {type EnclaveDescribeInfo, describeEnclaves} from './nitro-cli.js'
import {type ManagedProcess} from './processes.js'
import {type ProjectPaths} from './project.js'

export const BRIDGE_UNIT = 'nle-vsock-bridge.service'
export const PROXY_UNIT = 'nle-parent-proxy.service'
export const DEFAULT_UNIT_DIR = '/etc/systemd/system'
export const DEBUG_WARNING =
  'DEBUG MODE: this enclave attests all-zero PCR0/1/2 (describe-enclaves still shows the EIF\'s PCRs). Every KMS call gated on kms:RecipientAttestation:PCRn will be DENIED. Never use debug mode with real data.'

export interface RunState {
  version: 1
  name: string
  mode: 'managed' | 'systemd'
  startedAt: string
  enclave: {
    id: string
    name: string
    cid: number
    processId: number
    cpuIds: number[]
    requestedMemoryMiB: number
    memoryMiB: number
    debug: boolean
  }
  eif: {path: string; measurements: Record<string, string>}
  bridge: {socket: string; process?: ManagedProcess; unit?: string}
  proxy?: {process?: ManagedProcess; unit?: string; host: string; port: number}
  /** KMS mode: the parent ends of the enclave's KMS and credentials paths (src/lib/host/kms-bridges.ts). */
  kms?: {
    region: string
    vsockProxy: {process?: ManagedProcess; unit?: string}
    credentialsBridge?: {process?: ManagedProcess; unit?: string; socket: string}
  }
  /** A sealed model: the parent end of the enclave's path to the weights server (the proxy serves the sealed files). */
  weightsBridge?: {process?: ManagedProcess; socket: string}
}

export async function readRunState(paths: ProjectPaths): Promise<RunState | undefined> {
  let text: string
  try {
    text = await readFile(paths.runState, 'utf8')
  } catch {
    return undefined
  }
  try {
    const s = JSON.parse(text) as RunState
    if (s.version !== 1 || typeof s.enclave?.id !== 'string') throw new Error('unexpected shape')
    return s
  } catch (error) {
    throw hostError('RUN_STATE_INVALID', `${paths.runState} is not a run state nle wrote: ${(error as Error).message}`, {
      hint: `Check with \`nitro-cli describe-enclaves\` and \`ps\`, stop what still runs by hand, then delete ${paths.runState}.`,
      cause: error,
    })
  }
}

export async function writeRunState(paths: ProjectPaths, state: RunState): Promise<void> {
  await mkdir(paths.stateDir, {recursive: true})
  await writeFileAtomic(paths.runState, JSON.stringify(state, null, 2) + '\n')
}

/** Without nitro-cli no enclave can run on this machine: status and stop report that (exit 0) instead of failing. */
const NO_NITRO_CLI = 'nitro-cli is not installed, so no enclave can run on this machine (`nle doctor --for run` says what a Nitro host needs).'

/** The enclaves nitro-cli lists, or none (with a warning) when nitro-cli is not installed. */
export async function listedEnclaves(ctx: HostContext, warnings: string[]): Promise<EnclaveDescribeInfo[]> {
  try {
    return await describeEnclaves(ctx)
  } catch (error) {
    if (!(isNleError(error) && error.code === 'HOST_TOOL_MISSING')) throw error
    warnings.push(NO_NITRO_CLI)
    return []
  }
}

