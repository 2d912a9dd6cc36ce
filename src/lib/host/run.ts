/**
 * `nle run`: the enclave (nitro-cli), the vsock bridge (socat), the parent proxy and, in KMS
 * mode, the KMS paths, started together; what was started is recorded (run-state.ts) for
 * `nle stop` (stop.ts), `nle status` (status.ts) and `nle console` (console.ts).
 */
import {existsSync} from 'node:fs'
import {copyFile, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {LoadedConfig} from '../config/load.js'
import {assertTrusted, readEif} from '../eif/reader.js'
import {isNleError} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import {PACKAGE_ROOT, RUNTIME_DIR} from '../paths.js'
import {type Bootability, nitroBootability} from './bootable.js'
import {differingPcrs} from './build.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {CREDENTIALS_BRIDGE_UNIT, KMS_PROXY_UNIT, credentialsBridgeArgs, kmsHost, kmsMode, kmsUnitText, systemdCredentialsSocket, vsockProxyArgs} from './kms-bridges.js'
import {describeEnclaves, runEnclave} from './nitro-cli.js'
import {probeHealth, probeTcp, loopback} from './probes.js'
import {type ManagedProcess, isOurs, logTail, spawnManaged} from './processes.js'
import {projectPaths} from './project.js'
import {enclaveMemoryFor} from './resources.js'
import {BRIDGE_UNIT, PROXY_UNIT, DEFAULT_UNIT_DIR, DEBUG_WARNING, type RunState, readRunState, writeRunState} from './run-state.js'
import {bridgeArgs} from './socat.js'
import {stopRecorded} from './stop.js'
import {daemonReload, startUnits, unitState} from './systemctl.js'

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

export type RunPhase = 'enclave' | 'bridge' | 'proxy' | 'kms' | 'weights' | 'health'

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
  const boot = nitroBootability(info)
  if (!boot.bootable) {
    throw hostError('RUN_EIF_NOT_BOOTABLE', `${paths.eifPath} is NOT BOOTABLE: ${boot.reason}.`, {
      hint: 'Build with the Nitro Enclaves blobs (aws-nitro-enclaves-cli-devel: `--blobs nitro`, or NITRO_CLI_BLOBS) or with `--builder docker`.',
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
              // A sealed model: the sealed files for the enclave, which opens them at start.
              ...(config.model.sealed ? ['--weights-dir', resolve(loaded.dir, config.model.sealedPath), '--weights-socket', paths.weightsSocket] : []),
            ],
            env: ctx.env,
            log: join(paths.stateDir, 'proxy.log'),
            marker: `unix:${paths.bridgeSocket}`,
          }),
        }
        await writeRunState(paths, state)
      }
      if (config.model.sealed && proxyEntry) {
        progress('weights', `socat: vsock ${config.model.weightsVsockPort} -> ${paths.weightsSocket}`)
        state.weightsBridge = {
          socket: paths.weightsSocket,
          process: await spawnManaged({
            command: 'socat',
            args: credentialsBridgeArgs(config.model.weightsVsockPort, paths.weightsSocket),
            env: ctx.env,
            log: join(paths.stateDir, 'weights-bridge.log'),
            marker: `UNIX-CONNECT:${paths.weightsSocket}`,
            tool: 'socat',
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
      if (config.model.sealed) {
        warnings.push(`A sealed model under --systemd: nle renders no weights-server unit yet, so the enclave waits for one at start. Run the parent proxy with --weights-dir ${config.model.sealedPath} --weights-socket PATH and \`socat VSOCK-LISTEN:${config.model.weightsVsockPort},fork,reuseaddr UNIX-CONNECT:PATH\`, or use managed mode (\`nle run\`).`)
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
      ['weights bridge (socat)', state.weightsBridge?.process],
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
