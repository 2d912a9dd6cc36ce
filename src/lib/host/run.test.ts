import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {FAKES_DIR, type FakeHost, fakeHost, fakeProject} from '../../../test/fakes/host.js'
import {type LoadedConfig, loadConfig} from '../config/load.js'
import {hasCode, isNleError} from '../errors.js'
import {buildProject} from './build.js'
import {isAlive} from './processes.js'
import {projectConsole} from './console.js'
import {runProject} from './run.js'
import type {RunState} from './run-state.js'
import {projectStatus} from './status.js'
import {stopProject} from './stop.js'
import {rejection} from '../../test-support/rejection.js'

let host: FakeHost
afterEach(() => host?.cleanup())

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => resolve(port))
    })
  })
}

async function built(env: NodeJS.ProcessEnv = {}, edit?: (t: string) => string): Promise<{dir: string; loaded: LoadedConfig; ctx: {env: NodeJS.ProcessEnv}}> {
  host = fakeHost(env)
  const dir = await fakeProject(host, 'demo', edit)
  const loaded = await loadConfig(join(dir, 'nle.yaml'))
  await buildProject({loaded, ctx: {env: host.env}})
  return {dir, loaded, ctx: {env: host.env}}
}

const state = (dir: string): RunState => JSON.parse(readFileSync(join(dir, '.nle', 'run.json'), 'utf8')) as RunState
const enclaves = (): unknown[] => host.state('enclaves.json', [])

describe('nle run / stop (managed processes)', () => {
  it('starts the enclave and the bridge with the exact argv, waits for health, and stop leaves nothing behind', async () => {
    const {dir, loaded, ctx} = await built()
    const eif = join(dir, 'build', 'enclave.eif')
    const r = await runProject({loaded, ctx, timeoutMs: 20_000})
    const sock = join(dir, '.nle', 'bridge.sock')
    const calls = host.calls().slice(4) // after the build
    expect(calls.map((c) => [c.tool, ...c.argv])).toEqual([
      ['nitro-cli', 'run-enclave', '--cpu-count', '2', '--memory', String(r.enclave.requestedMemoryMiB), '--enclave-cid', '16', '--eif-path', eif, '--enclave-name', 'demo'],
      ['socat', `UNIX-LISTEN:${sock},fork,unlink-early,mode=0660`, 'VSOCK-CONNECT:16:5000'],
    ])
    expect(r).toMatchObject({mode: 'managed', health: 'ok', enclave: {cid: 16, name: 'demo', cpuIds: [1, 5], debug: false}, bridge: {socket: sock}, proxy: {started: false}})
    expect(r.warnings.join('\n')).toMatch(/No parent proxy in this nle build/)
    const pid = r.bridge.pid!
    expect(isAlive(pid)).toBe(true)
    expect(state(dir)).toMatchObject({mode: 'managed', enclave: {id: r.enclave.id}, bridge: {socket: sock, process: {pid}}})

    const status = await projectStatus({loaded, ctx})
    expect(status).toMatchObject({running: true, health: 'ok', bridge: {alive: true, pid}, debug: false})

    const stopped = await stopProject({loaded, ctx})
    expect(stopped).toEqual({terminated: [r.enclave.id], stopped: {pids: [pid], units: []}, wasRunning: true, warnings: []})
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['terminate-enclave', '--enclave-id', r.enclave.id])
    expect(isAlive(pid)).toBe(false)
    expect(existsSync(sock)).toBe(false)
    expect(existsSync(join(dir, '.nle', 'run.json'))).toBe(false)
    expect(enclaves()).toEqual([])
    expect(host.leftovers()).toEqual([])
    expect(await projectStatus({loaded, ctx})).toMatchObject({running: false, health: 'not-running'})
    expect(await stopProject({loaded, ctx})).toMatchObject({wasRunning: false, terminated: []})
  })

  it('status and stop on a machine without nitro-cli: nothing can run, a warning says why, no failure (they exit 0 as their help says)', async () => {
    const {loaded} = await built()
    const ctx = {env: host.envWithOnly(['socat'])}
    const status = await projectStatus({loaded, ctx})
    expect(status).toMatchObject({running: false, health: 'not-running'})
    expect(status.warnings.join('\n')).toMatch(/nitro-cli is not installed/)
    const stopped = await stopProject({loaded, ctx})
    expect(stopped).toMatchObject({wasRunning: false, terminated: []})
    expect(stopped.warnings.join('\n')).toMatch(/nitro-cli is not installed/)
  })

  it('starts the parent proxy when present and stops both processes', async () => {
    const port = await freePort()
    const {loaded, ctx} = await built({NLE_PARENT_PROXY: join(FAKES_DIR, 'parent-proxy.mjs'), FAKE_PROXY_PORT: String(port)}, (t) =>
      t.replace('host: 0.0.0.0\n  port: 8443', `host: 127.0.0.1\n  port: ${port}`),
    )
    const r = await runProject({loaded, ctx, timeoutMs: 20_000})
    expect((await host.callsWhen('parent-proxy', 1))[0]!.argv).toEqual(['--config', loaded.file, '--upstream', `unix:${r.bridge.socket}`, '--self-signed', join(host.dir, 'project', '.nle', 'tls')])
    expect(r.proxy).toMatchObject({started: true, url: `http://127.0.0.1:${port}`})
    const pids = [r.bridge.pid!, r.proxy.pid!]
    expect(pids.every(isAlive)).toBe(true)
    expect((await projectStatus({loaded, ctx})).proxy).toMatchObject({alive: true, listening: true})
    await stopProject({loaded, ctx})
    expect(pids.some(isAlive)).toBe(false)
    expect(host.leftovers()).toEqual([])
  })

  it('when the runtime never gets healthy: RUN_HEALTH_TIMEOUT, and the enclave and bridge are stopped again', async () => {
    const {dir, loaded, ctx} = await built({FAKE_ENCLAVE_HEALTH: '503'})
    const e = await rejection(runProject({loaded, ctx, timeoutMs: 1500}))
    expect(hasCode(e, 'RUN_HEALTH_TIMEOUT')).toBe(true)
    expect(isNleError(e) && e.details).toMatchObject({last: 'enclave runtime: HTTP 503'})
    const socat = host.calls('socat')
    expect(socat).toHaveLength(1)
    expect(isAlive(socat[0]!.pid)).toBe(false)
    expect(host.leftovers()).toEqual([])
    expect(enclaves()).toEqual([])
    expect(host.calls('nitro-cli').at(-1)!.argv[0]).toBe('terminate-enclave')
    expect(existsSync(join(dir, '.nle', 'run.json'))).toBe(false)
    expect(existsSync(join(dir, '.nle', 'bridge.sock'))).toBe(false)
  })

  it('when socat dies at once or is missing: a clear error, and nothing left running', async () => {
    let s = await built({FAKE_SOCAT_EXIT: '1'})
    const died = await rejection(runProject({loaded: s.loaded, ctx: s.ctx, timeoutMs: 10_000}))
    expect(hasCode(died, 'RUN_PROCESS_EXITED')).toBe(true)
    expect(isNleError(died) && died.hint).toMatch(/Address family not supported/)
    expect(enclaves()).toEqual([])
    expect(host.leftovers()).toEqual([])
    host.cleanup()
    s = await built()
    const missing = await rejection(runProject({loaded: s.loaded, ctx: {env: host.envWithOnly(['nitro-cli'])}}))
    expect(hasCode(missing, 'HOST_TOOL_MISSING')).toBe(true)
    expect(isNleError(missing) && missing.hint).toMatch(/install -y socat/)
    expect(enclaves()).toEqual([])
    expect(host.leftovers()).toEqual([])
    expect(existsSync(join(s.dir, '.nle', 'run.json'))).toBe(false)
  })

  it('refuses a second run, a non-bootable EIF and an EIF that does not match the lockfile', async () => {
    const {dir, loaded, ctx} = await built()
    const r = await runProject({loaded, ctx, timeoutMs: 20_000})
    expect(hasCode(await rejection(runProject({loaded, ctx})), 'RUN_ALREADY_RUNNING')).toBe(true)
    await stopProject({loaded, ctx})
    expect(isAlive(r.bridge.pid!)).toBe(false)

    const lockPath = join(dir, 'nle.lock.json')
    const lock = JSON.parse(readFileSync(lockPath, 'utf8')) as {measurements: {PCR2: string}}
    lock.measurements.PCR2 = 'f'.repeat(96)
    writeFileSync(lockPath, JSON.stringify(lock))
    expect(hasCode(await rejection(runProject({loaded, ctx})), 'RUN_LOCKFILE_MISMATCH')).toBe(true)

    await buildProject({loaded, ctx: {env: {...host.env, NITRO_CLI_BLOBS: undefined}}, builder: 'native'})
    const nb = await rejection(runProject({loaded, ctx}))
    expect(hasCode(nb, 'RUN_EIF_NOT_BOOTABLE')).toBe(true)
    expect((nb as Error).message).toMatch(/NOT BOOTABLE/)
    expect(host.calls('nitro-cli').filter((c) => c.argv[0] === 'run-enclave')).toHaveLength(1)
  })
})

describe('debug mode and the console', () => {
  it('passes --debug-mode, warns loudly about zero PCRs, and only then allows the console', async () => {
    const {loaded, ctx} = await built({}, (t) => t.replace('debug: false', 'debug: true'))
    const r = await runProject({loaded, ctx, wait: false})
    expect(host.calls('nitro-cli').find((c) => c.argv[0] === 'run-enclave')!.argv).toContain('--debug-mode')
    expect(r.warnings[0]).toMatch(/^DEBUG MODE: .*all-zero PCR0\/1\/2.*DENIED/)
    expect(r.health).toBe('not-checked')
    expect((await projectStatus({loaded, ctx})).warnings[0]).toMatch(/^DEBUG MODE/)
    await projectConsole({loaded, ctx})
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['console', '--enclave-id', r.enclave.id])
    await stopProject({loaded, ctx})
  })

  it('refuses the console for a non-debug enclave, and when nothing runs', async () => {
    const {loaded, ctx} = await built()
    expect(hasCode(await rejection(projectConsole({loaded, ctx})), 'RUN_NOT_RUNNING')).toBe(true)
    await runProject({loaded, ctx, wait: false})
    const e = await rejection(projectConsole({loaded, ctx}))
    expect(hasCode(e, 'RUN_CONSOLE_NEEDS_DEBUG')).toBe(true)
    expect(host.calls('nitro-cli').some((c) => c.argv[0] === 'console')).toBe(false)
    await stopProject({loaded, ctx})
  })
})

describe('nle run --systemd', () => {
  it('installs the project units, reloads and starts them, and stop stops them', async () => {
    const {loaded, ctx} = await built()
    const unitDir = join(host.dir, 'units')
    mkdirSync(unitDir)
    const r = await runProject({loaded, ctx, systemd: true, unitDir, wait: false})
    expect(readFileSync(join(unitDir, 'nle-vsock-bridge.service'), 'utf8')).toContain('VSOCK-CONNECT:16:5000')
    expect(host.calls('systemctl').map((c) => c.argv)).toEqual([['daemon-reload'], ['start', 'nle-vsock-bridge.service']])
    expect(host.calls('socat')).toEqual([])
    expect(r).toMatchObject({mode: 'systemd', bridge: {socket: '/run/nle/demo.sock', unit: 'nle-vsock-bridge.service'}})
    const stopped = await stopProject({loaded, ctx})
    expect(stopped.stopped.units).toEqual(['nle-vsock-bridge.service'])
    expect(host.calls('systemctl').at(-1)!.argv).toEqual(['stop', 'nle-vsock-bridge.service'])
    expect(enclaves()).toEqual([])
  })
})

describe('KMS mode (nle.yaml names kms.keyId and kms.region)', () => {
  const kmsYaml = (t: string): string => t.replace('# keyId: alias/demo ', 'keyId: alias/demo ').replace('# region: eu-west-1', 'region: eu-west-1')

  it('managed: starts vsock-proxy to KMS and the credentials bridge to the proxy\'s socket, and stop stops all of it', async () => {
    const port = await freePort()
    const {dir, loaded, ctx} = await built({NLE_PARENT_PROXY: join(FAKES_DIR, 'parent-proxy.mjs'), FAKE_PROXY_PORT: String(port)}, (t) => kmsYaml(t).replace('host: 0.0.0.0\n  port: 8443', `host: 127.0.0.1\n  port: ${port}`))
    const r = await runProject({loaded, ctx, timeoutMs: 20_000})
    const credentials = join(dir, '.nle', 'credentials.sock')
    expect((await host.callsWhen('parent-proxy', 1))[0]!.argv).toEqual(['--config', loaded.file, '--upstream', `unix:${r.bridge.socket}`, '--self-signed', join(dir, '.nle', 'tls'), '--credentials-socket', credentials, '--credentials-source', 'imds'])
    expect((await host.callsWhen('vsock-proxy', 1)).map((c) => c.argv)).toEqual([['8001', 'kms.eu-west-1.amazonaws.com', '443', '--config', '/etc/nitro_enclaves/vsock-proxy.yaml']])
    // Each fake records itself when it starts: the two socats may log in either order.
    expect((await host.callsWhen('socat', 2)).map((c) => c.argv).sort()).toEqual([
      [`UNIX-LISTEN:${r.bridge.socket},fork,unlink-early,mode=0660`, 'VSOCK-CONNECT:16:5000'],
      ['VSOCK-LISTEN:8002,fork,reuseaddr', `UNIX-CONNECT:${credentials}`],
    ])
    expect(r.kms).toMatchObject({endpoint: 'kms.eu-west-1.amazonaws.com:443', vsockProxy: {pid: expect.any(Number)}, credentials: {socket: credentials, pid: expect.any(Number)}})
    expect(state(dir).kms).toMatchObject({region: 'eu-west-1', vsockProxy: {process: {pid: r.kms!.vsockProxy.pid}}, credentialsBridge: {socket: credentials}})
    expect(await projectStatus({loaded, ctx})).toMatchObject({kms: {vsockProxy: {alive: true}, credentialsBridge: {alive: true, socket: credentials}}})
    const pids = [r.bridge.pid!, r.proxy.pid!, r.kms!.vsockProxy.pid!, r.kms!.credentials!.pid!]
    expect(pids.every(isAlive)).toBe(true)
    const stopped = await stopProject({loaded, ctx})
    expect(stopped.stopped.pids.sort()).toEqual([...pids].sort())
    expect(pids.some(isAlive)).toBe(false)
    expect(host.leftovers()).toEqual([])
  })

  it('proxy.credentials in nle.yaml chooses the socket and the source', async () => {
    const port = await freePort()
    const {loaded, ctx} = await built({NLE_PARENT_PROXY: join(FAKES_DIR, 'parent-proxy.mjs'), FAKE_PROXY_PORT: String(port)}, (t) =>
      kmsYaml(t)
        .replace('host: 0.0.0.0\n  port: 8443', `host: 127.0.0.1\n  port: ${port}`)
        .replace('  # credentials:         # KMS mode', '  credentials:         # KMS mode')
        .replace('  #   socket: /run/nle/demo-credentials.sock', `    socket: ${join(host.dir, 'creds.sock')}`)
        .replace('  #   source: imds ', '    source: env '),
    )
    expect(loaded.config.proxy.credentials).toEqual({socket: join(host.dir, 'creds.sock'), source: 'env'})
    await runProject({loaded, ctx, timeoutMs: 20_000})
    expect((await host.callsWhen('parent-proxy', 1))[0]!.argv.slice(-4)).toEqual(['--credentials-socket', join(host.dir, 'creds.sock'), '--credentials-source', 'env'])
    expect((await host.callsWhen('socat', 2)).map((c) => c.argv)).toContainEqual(['VSOCK-LISTEN:8002,fork,reuseaddr', `UNIX-CONNECT:${join(host.dir, 'creds.sock')}`])
    await stopProject({loaded, ctx})
    expect(host.leftovers()).toEqual([])
  })

  it('when vsock-proxy dies at once (port taken) or is missing: a clear error, and nothing left running', async () => {
    let s = await built({FAKE_VSOCK_PROXY_EXIT: '1'}, kmsYaml)
    const died = await rejection(runProject({loaded: s.loaded, ctx: s.ctx, timeoutMs: 10_000}))
    expect(hasCode(died, 'RUN_PROCESS_EXITED')).toBe(true)
    expect((died as Error).message).toMatch(/KMS vsock-proxy/)
    expect(isNleError(died) && died.hint).toMatch(/Address already in use/)
    expect((await host.callsWhen('vsock-proxy', 1)).every((c) => !isAlive(c.pid))).toBe(true)
    expect(host.leftovers()).toEqual([])
    expect(enclaves()).toEqual([])
    host.cleanup()
    s = await built({}, kmsYaml)
    const missing = await rejection(runProject({loaded: s.loaded, ctx: {env: host.envWithOnly(['nitro-cli', 'socat'])}, timeoutMs: 10_000}))
    expect(hasCode(missing, 'HOST_TOOL_MISSING')).toBe(true)
    expect(isNleError(missing) && missing.hint).toMatch(/aws-nitro-enclaves-cli/)
    expect(host.leftovers()).toEqual([])
    expect(enclaves()).toEqual([])
    expect(existsSync(join(s.dir, '.nle', 'run.json'))).toBe(false)
  })

  it('without a parent proxy: vsock-proxy only, and a warning that nothing serves the credentials', async () => {
    const {loaded, ctx} = await built({}, kmsYaml)
    const r = await runProject({loaded, ctx, timeoutMs: 20_000})
    expect(await host.callsWhen('vsock-proxy', 1)).toHaveLength(1)
    expect(await host.callsWhen('socat', 1)).toHaveLength(1)
    expect(r.kms).toEqual({endpoint: 'kms.eu-west-1.amazonaws.com:443', vsockProxy: {pid: expect.any(Number)}})
    expect(r.warnings.join('\n')).toMatch(/KMS mode: without the parent proxy there is no credentials endpoint/)
    await stopProject({loaded, ctx})
    expect(isAlive(r.kms!.vsockProxy.pid!)).toBe(false)
  })

  it('--systemd: renders the two KMS units from nle.yaml, starts and stops them with the others', async () => {
    const {dir, loaded, ctx} = await built({NLE_PARENT_PROXY: join(FAKES_DIR, 'parent-proxy.mjs')}, (t) => kmsYaml(t).replace('kms:\n', 'kms:\n  vsockPort: 9100\n').replace('  vsockPort: 8001 ', '  # vsockPort: 8001 '))
    const unitDir = join(host.dir, 'units')
    mkdirSync(unitDir)
    const r = await runProject({loaded, ctx, systemd: true, unitDir, wait: false})
    const vsockProxy = readFileSync(join(unitDir, 'nle-kms-vsock-proxy.service'), 'utf8')
    expect(vsockProxy).toContain('ExecStart=/usr/bin/vsock-proxy 9100 kms.eu-west-1.amazonaws.com 443 --config /etc/nitro_enclaves/vsock-proxy.yaml\n')
    expect(vsockProxy).toContain('Description=nle demo: KMS path out of the enclave (vsock port 9100 to kms.eu-west-1.amazonaws.com:443)')
    const bridge = readFileSync(join(unitDir, 'nle-credentials-bridge.service'), 'utf8')
    expect(bridge).toContain('ExecStart=/usr/bin/socat VSOCK-LISTEN:8002,fork,reuseaddr UNIX-CONNECT:/run/nle/demo-credentials.sock\n')
    for (const text of [vsockProxy, bridge]) expect(text).not.toMatch(/\{\{\w+\}\}/)
    expect(host.calls('systemctl').map((c) => c.argv)).toEqual([['daemon-reload'], ['start', 'nle-vsock-bridge.service', 'nle-parent-proxy.service', 'nle-kms-vsock-proxy.service', 'nle-credentials-bridge.service']])
    expect(host.calls('vsock-proxy')).toEqual([])
    expect(r.kms).toEqual({endpoint: 'kms.eu-west-1.amazonaws.com:443', vsockProxy: {unit: 'nle-kms-vsock-proxy.service'}, credentials: {socket: '/run/nle/demo-credentials.sock', unit: 'nle-credentials-bridge.service'}})
    // The proxy unit reads nle.yaml: without proxy.credentials it would serve no credentials.
    expect(r.warnings.join('\n')).toMatch(/nle.yaml has no proxy.credentials/)
    expect(await projectStatus({loaded, ctx})).toMatchObject({kms: {vsockProxy: {alive: true, unit: 'nle-kms-vsock-proxy.service'}, credentialsBridge: {alive: true}}})
    const stopped = await stopProject({loaded, ctx})
    expect(stopped.stopped.units).toEqual(['nle-credentials-bridge.service', 'nle-kms-vsock-proxy.service', 'nle-parent-proxy.service', 'nle-vsock-bridge.service'])
    expect(host.state<Record<string, string>>('units.json', {})).toMatchObject({'nle-kms-vsock-proxy.service': 'inactive', 'nle-credentials-bridge.service': 'inactive'})
    // A unit the project keeps in parent/ wins over the template.
    writeFileSync(join(dir, 'parent', 'nle-kms-vsock-proxy.service'), '[Service]\nExecStart=/usr/bin/vsock-proxy 9100 kms-fips.eu-west-1.amazonaws.com 443\n')
    await runProject({loaded, ctx, systemd: true, unitDir, wait: false})
    expect(readFileSync(join(unitDir, 'nle-kms-vsock-proxy.service'), 'utf8')).toContain('kms-fips.eu-west-1')
    await stopProject({loaded, ctx})
  })
})

describe('a sealed model (model.sealed)', () => {
  it('managed: the proxy serves the sealed folder and socat bridges vsock model.weightsVsockPort to it; stop stops it', async () => {
    const port = await freePort()
    host = fakeHost({NLE_PARENT_PROXY: join(FAKES_DIR, 'parent-proxy.mjs'), FAKE_PROXY_PORT: String(port)})
    const dir = await fakeProject(host, 'demo', (t) =>
      t
        .replace('# keyId: alias/demo ', 'keyId: alias/demo ')
        .replace('# region: eu-west-1', 'region: eu-west-1')
        .replace(/^ {2}# sealed: true.*$/m, '  sealed: true')
        .replace('host: 0.0.0.0\n  port: 8443', `host: 127.0.0.1\n  port: ${port}`),
    )
    const {sealModel} = await import('../model/seal/seal.js')
    const {fakeKms} = await import('../../test-support/sealed.js')
    await sealModel({modelDir: join(dir, 'model'), outDir: join(dir, 'model.sealed'), generateDataKey: fakeKms().generate})
    const loaded = await loadConfig(join(dir, 'nle.yaml'))
    const ctx = {env: host.env}
    await buildProject({loaded, ctx})
    const r = await runProject({loaded, ctx, timeoutMs: 20_000})
    const weights = join(dir, '.nle', 'weights.sock')
    const argv = (await host.callsWhen('parent-proxy', 1))[0]!.argv
    expect(argv.slice(argv.indexOf('--weights-dir'))).toEqual(['--weights-dir', join(dir, 'model.sealed'), '--weights-socket', weights])
    expect((await host.callsWhen('socat', 3)).map((c) => c.argv)).toContainEqual(['VSOCK-LISTEN:8003,fork,reuseaddr', `UNIX-CONNECT:${weights}`])
    const bridge = state(dir).weightsBridge!
    expect(bridge.socket).toBe(weights)
    expect(isAlive(bridge.process!.pid)).toBe(true)
    await stopProject({loaded, ctx})
    expect(isAlive(bridge.process!.pid)).toBe(false)
    expect(r.bridge.socket).toBeTruthy()
    expect(host.leftovers()).toEqual([])
  })
})
