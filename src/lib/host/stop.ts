/** `nle stop`: terminate the recorded enclave, then its bridge, proxy and KMS paths. */
import {rm} from 'node:fs/promises'

import type {LoadedConfig} from '../config/load.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {terminateEnclave} from './nitro-cli.js'
import {stopManaged} from './processes.js'
import {type ProjectPaths, projectPaths} from './project.js'
import {type RunState, readRunState, listedEnclaves} from './run-state.js'
import {stopUnits} from './systemctl.js'

export interface StopReport {
  /** Enclaves terminated (ids). */
  terminated: string[]
  /** Managed processes stopped (pids) and units stopped. */
  stopped: {pids: number[]; units: string[]}
  wasRunning: boolean
  /** E.g. nitro-cli is not installed. */
  warnings: string[]
}

/** Terminate the enclave, then the bridge and proxy; drop the state only when all of it is gone. */
export async function stopRecorded(ctx: HostContext, state: RunState, paths: ProjectPaths): Promise<StopReport> {
  const report: StopReport = {terminated: [], stopped: {pids: [], units: []}, wasRunning: true, warnings: []}
  const problems: string[] = []
  try {
    await terminateEnclave(ctx, state.enclave.id)
    report.terminated.push(state.enclave.id)
  } catch (error) {
    // Already gone (no longer listed, or no nitro-cli to run one) is success; anything else is
    // reported after the helpers stop.
    const listed = await listedEnclaves(ctx, report.warnings).then((l) => l.some((e) => e.EnclaveID === state.enclave.id), () => true)
    if (listed) problems.push(`terminate ${state.enclave.id}: ${(error as Error).message}`)
  }
  for (const p of [state.weightsBridge?.process, state.kms?.credentialsBridge?.process, state.kms?.vsockProxy.process, state.proxy?.process, state.bridge.process]) {
    if (!p) continue
    if (await stopManaged(p)) report.stopped.pids.push(p.pid)
    else problems.push(`process ${p.pid} did not stop`)
  }
  const units = [state.kms?.credentialsBridge?.unit, state.kms?.vsockProxy.unit, state.proxy?.unit, state.bridge.unit].filter((u): u is string => u !== undefined)
  if (units.length > 0) {
    try {
      await stopUnits(ctx, units)
      report.stopped.units.push(...units)
    } catch (error) {
      problems.push((error as Error).message)
    }
  }
  if (state.mode === 'managed') await rm(state.bridge.socket, {force: true})
  // The proxy removes its credentials socket when it stops; a killed one may leave it behind.
  if (state.mode === 'managed' && state.kms?.credentialsBridge) await rm(state.kms.credentialsBridge.socket, {force: true})
  if (state.mode === 'managed' && state.weightsBridge) await rm(state.weightsBridge.socket, {force: true})
  if (problems.length > 0) {
    // The record stays: `nle stop` again retries all of it (each step is idempotent).
    throw hostError('RUN_STOP_INCOMPLETE', `Not everything stopped: ${problems.join('; ')}`, {
      hint: 'Check `nitro-cli describe-enclaves` and `nle status`, then run `nle stop` again.',
      details: {problems},
    })
  }
  await rm(paths.runState, {force: true})
  return report
}

export async function stopProject(o: {loaded: LoadedConfig; ctx: HostContext}): Promise<StopReport> {
  const paths = projectPaths(o.loaded)
  const state = await readRunState(paths)
  if (state) return stopRecorded(o.ctx, state, paths)
  // No record (e.g. started by hand or the state was lost): terminate enclaves with our name.
  const warnings: string[] = []
  const ours = (await listedEnclaves(o.ctx, warnings)).filter((e) => e.EnclaveName === o.loaded.config.name)
  const report: StopReport = {terminated: [], stopped: {pids: [], units: []}, wasRunning: ours.length > 0, warnings}
  for (const e of ours) {
    await terminateEnclave(o.ctx, e.EnclaveID)
    report.terminated.push(e.EnclaveID)
  }
  return report
}
