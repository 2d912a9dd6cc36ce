/** `nle status`: the recorded enclave and everything around it, checked live. */
import {basename} from 'node:path'

import type {LoadedConfig} from '../config/load.js'
import type {HostContext} from './exec.js'
import {type EnclaveDescribeInfo} from './nitro-cli.js'
import {probeHealth, probeTcp, loopback} from './probes.js'
import {type ManagedProcess, isOurs} from './processes.js'
import {projectPaths} from './project.js'
import {DEBUG_WARNING, type RunState, readRunState, listedEnclaves} from './run-state.js'
import {unitState} from './systemctl.js'

export interface StatusReport {
  name: string
  running: boolean
  enclave?: EnclaveDescribeInfo
  debug: boolean
  mode?: RunState['mode']
  bridge?: {socket: string; alive: boolean; pid?: number; unit?: string; unitState?: string}
  proxy?: {alive: boolean; pid?: number; unit?: string; unitState?: string; listening: boolean; url: string}
  /** KMS mode: the parent ends of the enclave's KMS and credentials paths. */
  kms?: {vsockProxy: {alive: boolean; pid?: number; unit?: string}; credentialsBridge?: {alive: boolean; socket: string; pid?: number; unit?: string}}
  health: 'ok' | 'unhealthy' | 'unreachable' | 'not-running'
  healthDetail?: string
  /** Other enclaves on this host (not this project's). */
  others: EnclaveDescribeInfo[]
  startedAt?: string
  warnings: string[]
}

export async function projectStatus(o: {loaded: LoadedConfig; ctx: HostContext}): Promise<StatusReport> {
  const {loaded, ctx} = o
  const paths = projectPaths(loaded)
  const state = await readRunState(paths)
  const warnings: string[] = []
  const enclaves = await listedEnclaves(ctx, warnings)
  const ours = enclaves.find((e) => (state ? e.EnclaveID === state.enclave.id : e.EnclaveName === loaded.config.name))
  const others = enclaves.filter((e) => e !== ours)
  const debug = ours?.Flags === 'DEBUG_MODE'
  if (debug) warnings.push(DEBUG_WARNING)
  const out: StatusReport = {name: loaded.config.name, running: ours !== undefined, ...(ours ? {enclave: ours} : {}), debug, health: 'not-running', others, warnings}
  if (state) {
    out.mode = state.mode
    out.startedAt = state.startedAt
    const b = state.bridge
    out.bridge = {
      socket: b.socket,
      alive: b.process ? isOurs(b.process) : b.unit ? (await unitState(ctx, b.unit)) === 'active' : false,
      ...(b.process ? {pid: b.process.pid} : {}),
      ...(b.unit ? {unit: b.unit, unitState: await unitState(ctx, b.unit)} : {}),
    }
    if (state.proxy) {
      const p = state.proxy
      out.proxy = {
        alive: p.process ? isOurs(p.process) : p.unit ? (await unitState(ctx, p.unit)) === 'active' : false,
        ...(p.process ? {pid: p.process.pid} : {}),
        ...(p.unit ? {unit: p.unit, unitState: await unitState(ctx, p.unit)} : {}),
        listening: await probeTcp(loopback(p.host), p.port),
        url: `${loaded.config.proxy.tls ? 'https' : 'http'}://${p.host}:${p.port}`,
      }
    }
    if (state.kms) {
      const alive = async (e: {process?: ManagedProcess; unit?: string}): Promise<{alive: boolean; pid?: number; unit?: string}> => ({
        alive: e.process ? isOurs(e.process) : e.unit ? (await unitState(ctx, e.unit)) === 'active' : false,
        ...(e.process ? {pid: e.process.pid} : {}),
        ...(e.unit ? {unit: e.unit} : {}),
      })
      const c = state.kms.credentialsBridge
      out.kms = {vsockProxy: await alive(state.kms.vsockProxy), ...(c ? {credentialsBridge: {...(await alive(c)), socket: c.socket}} : {})}
    }
    if (ours && out.bridge.alive) {
      const h = await probeHealth(b.socket)
      out.health = h.ok ? 'ok' : h.status ? 'unhealthy' : 'unreachable'
      if (!h.ok) out.healthDetail = h.status ? `HTTP ${h.status}` : h.error
    } else if (ours) {
      out.health = 'unreachable'
      out.healthDetail = 'the vsock bridge is not running'
    }
    if (!ours) warnings.push(`${basename(paths.runState)} records enclave ${state.enclave.id}, which is no longer running; \`nle stop\` clears its leftovers.`)
  } else if (ours) {
    out.health = 'unreachable'
    out.healthDetail = 'not started by nle run (no bridge)'
  }
  return out
}
