/**
 * `nle run` / `status` / `stop` / `console`: the enclave (nitro-cli), the vsock bridge (socat) and
 * the parent proxy, started together and stopped together. What was started is recorded in
 * `.nle/run.json` so `nle stop` (a later process) can stop exactly that, and nothing else.
 */
import {existsSync} from 'node:fs'
import {copyFile, mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {request} from 'node:http'
import {connect} from 'node:net'
import {basename, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {LoadedConfig} from '../config/load.js'
import {assertTrusted, readEif} from '../eif/reader.js'
import {isNleError} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import {PACKAGE_ROOT, RUNTIME_DIR} from '../paths.js'
import {type Bootability, bootability} from './bootable.js'
import {differingPcrs} from './build.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {CREDENTIALS_BRIDGE_UNIT, KMS_PROXY_UNIT, credentialsBridgeArgs, kmsHost, kmsMode, kmsUnitText, systemdCredentialsSocket, vsockProxyArgs} from './kms-bridges.js'
import {type EnclaveDescribeInfo, attachConsole, describeEnclaves, runEnclave, terminateEnclave} from './nitro-cli.js'
import {type ManagedProcess, isOurs, logTail, spawnManaged, stopManaged} from './processes.js'
import {type ProjectPaths, projectPaths} from './project.js'
import {enclaveMemoryFor} from './resources.js'
import {bridgeArgs} from './socat.js'
import {daemonReload, startUnits, stopUnits, unitState} from './systemctl.js'

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
}

// ---------------------------------------------------------------------------------------------
// state file

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

async function writeRunState(paths: ProjectPaths, state: RunState): Promise<void> {
  await mkdir(paths.stateDir, {recursive: true})
  const tmp = `${paths.runState}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n')
  await rename(tmp, paths.runState)
}

// ---------------------------------------------------------------------------------------------
// health

/** GET /healthz over the bridge's Unix socket (plain HTTP to the enclave server behind socat). */
export async function probeHealth(socketPath: string, timeoutMs = 2000): Promise<{ok: boolean; status?: number; error?: string}> {
  return new Promise((resolve) => {
    const req = request({socketPath, path: '/healthz', method: 'GET', timeout: timeoutMs}, (res) => {
      res.resume()
      res.on('end', () => resolve({ok: res.statusCode === 200, status: res.statusCode}))
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ok: false, error: error.code ?? error.message}))
    req.end()
  })
}

/** Whether something accepts TCP connections on host:port (the proxy is listening). */
export async function probeTcp(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({host, port, timeout: timeoutMs})
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('timeout', () => done(false))
    s.once('error', () => done(false))
  })
}

const loopback = (host: string): string => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host)

// ---------------------------------------------------------------------------------------------
// the parent proxy

/**
 * How to start the parent proxy, when this nle has one: NLE_PARENT_PROXY (a script to run with
 * node; `none` starts no proxy), else runtime/parent-proxy/index.js, else the `nle proxy` command.
 */
export function parentProxyCommand(ctx: HostContext): {command: string; args: string[]} | undefined {
  const override = ctx.env.NLE_PARENT_PROXY
  if (override === 'none') return undefined
  if (override) return {command: process.execPath, args: [override]}
  const script = join(RUNTIME_DIR, 'parent-proxy', 'index.js')
  if (existsSync(script)) return {command: process.execPath, args: [script]}
  if (existsSync(join(PACKAGE_ROOT, 'dist', 'commands', 'proxy.js'))) return {command: process.execPath, args: [join(PACKAGE_ROOT, 'bin', 'run.js'), 'proxy']}
  return undefined
}

// ---------------------------------------------------------------------------------------------
// run

export type RunPhase = 'enclave' | 'bridge' | 'proxy' | 'kms' | 'health'

export interface RunOptions {
  loaded: LoadedConfig
  ctx: HostContext
  /** Use the systemd units from the project's parent/ folder instead of managed processes. */
  systemd?: boolean
  unitDir?: string
  /** Wait for the runtime's /healthz (default true). */
  wait?: boolean
  timeoutMs?: number
  onProgress?: (phase: RunPhase, message: string) => void
}

export interface RunReport {
  enclave: RunState['enclave']
  measurements: Record<string, string>
  eif: {path: string; size: number} & Bootability
  mode: RunState['mode']
  bridge: {socket: string; pid?: number; unit?: string}
  proxy: {started: boolean; pid?: number; unit?: string; url?: string; reason?: string}
  /** KMS mode (nle.yaml names kms.keyId and kms.region): what serves the enclave's two paths out. */
  kms?: {endpoint: string; vsockProxy: {pid?: number; unit?: string}; credentials?: {socket: string; pid?: number; unit?: string}}
  health: 'ok' | 'not-checked'
  warnings: string[]
}

export async function runProject(o: RunOptions): Promise<RunReport> {
  const {loaded, ctx} = o
  const {config} = loaded
  const paths = projectPaths(loaded)
  const progress = o.onProgress ?? ((): void => undefined)
  const warnings: string[] = []

  const previous = await readRunState(paths)
  if (previous) {
    const running = await describeEnclaves(ctx)
    if (running.some((e) => e.EnclaveID === previous.enclave.id)) {
      throw hostError('RUN_ALREADY_RUNNING', `Enclave ${previous.enclave.id} of ${config.name} is already running.`, {
        hint: '`nle status` shows it; `nle stop` stops it.',
        details: {enclaveId: previous.enclave.id},
      })
    }
    await stopRecorded(ctx, previous, paths) // stale: the enclave is gone; clear its helpers
  }

  if (!existsSync(paths.eifPath)) {
    throw hostError('RUN_EIF_MISSING', `No EIF at ${paths.eifPath}.`, {hint: 'Build it first: `nle build`.', details: {path: paths.eifPath}})
  }
  const info = await readEif(paths.eifPath)
  assertTrusted(info)
  const boot = bootability(info)
  if (!boot.bootable) {
    throw hostError('RUN_EIF_NOT_BOOTABLE', `${paths.eifPath} is NOT BOOTABLE: ${boot.reason}.`, {
      hint: 'Build with the Nitro Enclaves blobs (aws-nitro-enclaves-cli-devel, or NITRO_CLI_BLOBS) or with `--builder docker`.',
    })
  }
  const lock = await readLockfile(paths.lockfile).catch((error: unknown) => {
    if (isNleError(error) && error.code === 'LOCKFILE_NOT_FOUND') return undefined
    throw error
  })
  if (lock) {
    const differ = differingPcrs(lock.measurements, info.measurements)
    if (differ.length > 0) {
      throw hostError('RUN_LOCKFILE_MISMATCH', `${paths.eifPath} does not match ${paths.lockfile} (${differ.join(', ')} differ).`, {
        hint: 'The EIF changed since the lockfile was written: rebuild with `nle build` (which rewrites both), or restore the EIF the lockfile pins.',
        details: {differ},
      })
    }
  } else {
    warnings.push(`No lockfile at ${paths.lockfile}: the running image's PCRs are not pinned anywhere yet.`)
  }
  const memory = await enclaveMemoryFor(loaded, info.layout.fileSize)
  const measurements = Object.fromEntries(Object.entries(info.measurements).filter(([k]) => k.startsWith('PCR'))) as Record<string, string>

  progress('enclave', `nitro-cli run-enclave (${config.enclave.cpuCount} CPUs, ${memory.memoryMiB} MiB, CID ${config.enclave.cid})`)
  const started = await runEnclave(ctx, {
    eifPath: paths.eifPath,
    cpuCount: config.enclave.cpuCount,
    memoryMiB: memory.memoryMiB,
    cid: config.enclave.cid,
    debug: config.enclave.debug,
    name: config.name,
  })
  const mode = o.systemd ? 'systemd' : 'managed'
  const state: RunState = {
    version: 1,
    name: config.name,
    mode,
    startedAt: new Date().toISOString(),
    enclave: {
      id: started.EnclaveID,
      name: started.EnclaveName,
      cid: started.EnclaveCID,
      processId: started.ProcessID,
      cpuIds: started.CPUIDs,
      requestedMemoryMiB: memory.memoryMiB,
      memoryMiB: started.MemoryMiB,
      debug: config.enclave.debug,
    },
    eif: {path: paths.eifPath, measurements},
    bridge: {socket: paths.bridgeSocket},
  }
  await writeRunState(paths, state)

  const proxyEntry = parentProxyCommand(ctx)
  const kms = kmsMode(config)
  // The parent proxy serves the enclave's credentials in KMS mode: nle.yaml's socket, else one in .nle/.
  const credentialsSocket = config.proxy.credentials?.socket ?? paths.credentialsSocket
  try {
    await mkdir(paths.stateDir, {recursive: true})
    if (mode === 'managed') {
      progress('bridge', `socat: ${paths.bridgeSocket} -> vsock ${started.EnclaveCID}:${config.enclave.vsockPort}`)
      await rm(paths.bridgeSocket, {force: true})
      state.bridge.process = await spawnManaged({
        command: 'socat',
        args: bridgeArgs({socketPath: paths.bridgeSocket, cid: started.EnclaveCID, vsockPort: config.enclave.vsockPort}),
        env: ctx.env,
        log: join(paths.stateDir, 'bridge.log'),
        marker: paths.bridgeSocket,
        tool: 'socat',
      })
      await writeRunState(paths, state)
      if (proxyEntry) {
        progress('proxy', `parent proxy on ${config.proxy.host}:${config.proxy.port}`)
        state.proxy = {
          host: config.proxy.host,
          port: config.proxy.port,
          process: await spawnManaged({
            command: proxyEntry.command,
            args: [
              ...proxyEntry.args,
              '--config',
              loaded.file,
              '--upstream',
              `unix:${paths.bridgeSocket}`,
              // Without proxy.tls the proxy makes a development certificate (it never listens in clear).
              ...(config.proxy.tls ? [] : ['--self-signed', join(paths.stateDir, 'tls')]),
              // KMS mode: the host role's credentials for the enclave, from IMDSv2 unless nle.yaml says env.
              ...(kms ? ['--credentials-socket', credentialsSocket, '--credentials-source', config.proxy.credentials?.source ?? 'imds'] : []),
            ],
            env: ctx.env,
            log: join(paths.stateDir, 'proxy.log'),
            marker: `unix:${paths.bridgeSocket}`,
          }),
        }
        await writeRunState(paths, state)
      }
      if (kms) {
        progress('kms', `vsock-proxy: vsock ${kms.kmsVsockPort} -> ${kmsHost(kms.region)}:443`)
        state.kms = {
          region: kms.region,
          vsockProxy: {
            process: await spawnManaged({
              command: 'vsock-proxy',
              args: vsockProxyArgs(kms),
              env: ctx.env,
              log: join(paths.stateDir, 'kms-vsock-proxy.log'),
              marker: kmsHost(kms.region),
              tool: 'vsock-proxy',
            }),
          },
        }
        await writeRunState(paths, state)
        if (proxyEntry) {
          progress('kms', `socat: vsock ${kms.credentialsVsockPort} -> ${credentialsSocket}`)
          state.kms.credentialsBridge = {
            socket: credentialsSocket,
            process: await spawnManaged({
              command: 'socat',
              args: credentialsBridgeArgs(kms.credentialsVsockPort, credentialsSocket),
              env: ctx.env,
              log: join(paths.stateDir, 'credentials-bridge.log'),
              marker: `UNIX-CONNECT:${credentialsSocket}`,
              tool: 'socat',
            }),
          }
          await writeRunState(paths, state)
        }
      }
    } else {
      const unitDir = o.unitDir ?? DEFAULT_UNIT_DIR
      const units = [BRIDGE_UNIT, ...(proxyEntry ? [PROXY_UNIT] : [])]
      for (const unit of units) await copyFile(join(paths.parentDir, unit), join(unitDir, unit))
      const bridgeUnit = await readFile(join(paths.parentDir, BRIDGE_UNIT), 'utf8')
      state.bridge = {socket: /UNIX-LISTEN:([^,\s]+)/.exec(bridgeUnit)?.[1] ?? `/run/nle/${config.name}.sock`, unit: BRIDGE_UNIT}
      if (proxyEntry) state.proxy = {unit: PROXY_UNIT, host: config.proxy.host, port: config.proxy.port}
      if (kms) {
        // Rendered now from nle.yaml (region and ports are set after `nle init`), unless parent/ has its own.
        const kmsUnits: (typeof KMS_PROXY_UNIT | typeof CREDENTIALS_BRIDGE_UNIT)[] = [KMS_PROXY_UNIT, ...(proxyEntry ? [CREDENTIALS_BRIDGE_UNIT] : [])]
        for (const unit of kmsUnits) await writeFile(join(unitDir, unit), (await kmsUnitText(unit, config, kms, paths.parentDir)).text)
        units.push(...kmsUnits)
        state.kms = {
          region: kms.region,
          vsockProxy: {unit: KMS_PROXY_UNIT},
          ...(proxyEntry ? {credentialsBridge: {unit: CREDENTIALS_BRIDGE_UNIT, socket: systemdCredentialsSocket(config)}} : {}),
        }
        if (proxyEntry && !config.proxy.credentials) {
          warnings.push(`KMS mode: nle.yaml has no proxy.credentials, so ${PROXY_UNIT} serves no credentials endpoint and the enclave cannot sign KMS calls. Set proxy.credentials.socket: ${systemdCredentialsSocket(config)} (source: imds).`)
        }
      }
      await writeRunState(paths, state)
      progress('bridge', `systemctl start ${units.join(' ')}`)
      await daemonReload(ctx)
      await startUnits(ctx, units)
    }
    if (!proxyEntry) warnings.push('No parent proxy in this nle build (runtime/parent-proxy/index.js or `nle proxy`): only the vsock bridge was started; clients must use its Unix socket.')
    if (kms && !proxyEntry) warnings.push('KMS mode: without the parent proxy there is no credentials endpoint, so the enclave cannot sign KMS calls.')

    if (o.wait ?? true) await waitHealthy(state, ctx, o.timeoutMs ?? 120_000, progress)
  } catch (error) {
    // Leave nothing half-started: terminate the enclave and stop what was started.
    await stopRecorded(ctx, state, paths).catch(() => undefined)
    throw error
  }
  if (config.enclave.debug) warnings.unshift(DEBUG_WARNING)
  return {
    enclave: state.enclave,
    measurements,
    eif: {path: paths.eifPath, size: info.layout.fileSize, ...boot},
    mode,
    bridge: {socket: state.bridge.socket, ...(state.bridge.process ? {pid: state.bridge.process.pid} : {}), ...(state.bridge.unit ? {unit: state.bridge.unit} : {})},
    proxy: state.proxy
      ? {
          started: true,
          ...(state.proxy.process ? {pid: state.proxy.process.pid} : {}),
          ...(state.proxy.unit ? {unit: state.proxy.unit} : {}),
          url: `${config.proxy.tls ? 'https' : 'http'}://${config.proxy.host}:${config.proxy.port}`,
        }
      : {started: false, reason: 'no parent proxy in this nle (runtime/parent-proxy/index.js or `nle proxy`)'},
    ...(state.kms ? {kms: kmsReport(state.kms)} : {}),
    health: o.wait ?? true ? 'ok' : 'not-checked',
    warnings,
  }
}

function kmsReport(k: NonNullable<RunState['kms']>): NonNullable<RunReport['kms']> {
  const ends = (e: {process?: ManagedProcess; unit?: string}): {pid?: number; unit?: string} => ({...(e.process ? {pid: e.process.pid} : {}), ...(e.unit ? {unit: e.unit} : {})})
  return {
    endpoint: `${kmsHost(k.region)}:443`,
    vsockProxy: ends(k.vsockProxy),
    ...(k.credentialsBridge ? {credentials: {socket: k.credentialsBridge.socket, ...ends(k.credentialsBridge)}} : {}),
  }
}

/** How long every started process must stay up before `nle run` reports success. */
const MIN_UPTIME_MS = 2000

async function waitHealthy(state: RunState, ctx: HostContext, timeoutMs: number, progress: (p: RunPhase, m: string) => void): Promise<void> {
  const started = Date.now()
  const deadline = started + timeoutMs
  let last = ''
  for (let attempt = 0; ; attempt++) {
    for (const [what, p] of [
      ['bridge (socat)', state.bridge.process],
      ['parent proxy', state.proxy?.process],
      ['KMS vsock-proxy', state.kms?.vsockProxy.process],
      ['credentials bridge (socat)', state.kms?.credentialsBridge?.process],
    ] as const) {
      if (p && !isOurs(p)) {
        throw hostError('RUN_PROCESS_EXITED', `The ${what} exited right after it started.`, {
          hint: `Its log is ${p.log}:\n${await logTail(p.log)}`,
          details: {log: p.log},
        })
      }
    }
    if (state.mode === 'systemd') {
      const s = await unitState(ctx, BRIDGE_UNIT)
      if (s === 'failed') throw hostError('RUN_PROCESS_EXITED', `${BRIDGE_UNIT} failed.`, {hint: `See \`journalctl -u ${BRIDGE_UNIT}\`.`})
    }
    const proxyUp = state.proxy ? await probeTcp(loopback(state.proxy.host), state.proxy.port) : true
    const health = await probeHealth(state.bridge.socket)
    // Healthy is not enough while the side processes are young: a vsock-proxy whose port is taken
    // exits right after it starts, possibly after the first good /healthz. They must have stayed up
    // for MIN_UPTIME_MS (checked again at the top of the loop) before the run counts as started.
    const young = MIN_UPTIME_MS - (Date.now() - started)
    if (health.ok && proxyUp && young <= 0) return
    if (health.ok && proxyUp) {
      await sleep(young)
      continue
    }
    last = health.ok ? 'the proxy is not listening yet' : `enclave runtime: ${health.status ? `HTTP ${health.status}` : health.error}`
    if (Date.now() >= deadline) break
    if (attempt % 5 === 0) progress('health', `waiting for the runtime's /healthz (${last})`)
    await sleep(200)
  }
  throw hostError('RUN_HEALTH_TIMEOUT', `The enclave runtime did not become healthy within ${Math.round(timeoutMs / 1000)} s (${last}); everything started was stopped again.`, {
    hint: 'Start it with enclave.debug: true and watch `nle console` to see why, or raise --timeout for a large model.',
    details: {timeoutMs, last},
  })
}

// ---------------------------------------------------------------------------------------------
// stop

/** Without nitro-cli no enclave can run on this machine: status and stop report that (exit 0) instead of failing. */
const NO_NITRO_CLI = 'nitro-cli is not installed, so no enclave can run on this machine (`nle doctor --for run` says what a Nitro host needs).'

/** The enclaves nitro-cli lists, or none (with a warning) when nitro-cli is not installed. */
async function listedEnclaves(ctx: HostContext, warnings: string[]): Promise<EnclaveDescribeInfo[]> {
  try {
    return await describeEnclaves(ctx)
  } catch (error) {
    if (!(isNleError(error) && error.code === 'HOST_TOOL_MISSING')) throw error
    warnings.push(NO_NITRO_CLI)
    return []
  }
}

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
async function stopRecorded(ctx: HostContext, state: RunState, paths: ProjectPaths): Promise<StopReport> {
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
  for (const p of [state.kms?.credentialsBridge?.process, state.kms?.vsockProxy.process, state.proxy?.process, state.bridge.process]) {
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

// ---------------------------------------------------------------------------------------------
// status

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

// ---------------------------------------------------------------------------------------------
// console

export async function projectConsole(o: {loaded: LoadedConfig; ctx: HostContext; disconnectTimeoutSec?: number}): Promise<void> {
  const paths = projectPaths(o.loaded)
  const state = await readRunState(paths)
  const enclaves = await describeEnclaves(o.ctx)
  const ours = enclaves.find((e) => (state ? e.EnclaveID === state.enclave.id : e.EnclaveName === o.loaded.config.name))
  if (!ours) throw hostError('RUN_NOT_RUNNING', `No enclave of ${o.loaded.config.name} is running.`, {hint: 'Start it with `nle run` (with enclave.debug: true for a console).'})
  if (ours.Flags !== 'DEBUG_MODE') {
    throw hostError('RUN_CONSOLE_NEEDS_DEBUG', `Enclave ${ours.EnclaveID} was not started in debug mode, so it has no console.`, {
      hint: 'Set enclave.debug: true in nle.yaml, then `nle stop` and `nle run`. A debug enclave attests all-zero PCRs, so PCR-gated KMS calls are denied.',
    })
  }
  await attachConsole(o.ctx, ours.EnclaveID, o.disconnectTimeoutSec)
}
