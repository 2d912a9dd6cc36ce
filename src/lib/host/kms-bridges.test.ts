/**
 * KMS mode's host wiring: what `nle build` puts in nle.runtime.json, and what the image's start.sh
 * starts from it (run here with a recording socat and node; the real ones need an enclave).
 */
import {execFile} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {afterAll, afterEach, describe, expect, it} from 'vitest'

import {type FakeHost, fakeHost, fakeProject} from '../../../test/fakes/host.js'
import {loadConfig} from '../config/load.js'
import {configSchema} from '../config/schema.js'
import {TEMPLATES_DIR} from '../paths.js'
import {runtimeConfigSchema} from '../server/main.js'
import {tempDir} from '../../test-support/tmp.js'
import {untilFile} from '../../test-support/wait.js'
import {buildProject} from './build.js'
import {ENCLAVE_CREDENTIALS_SOCKET, ENCLAVE_KMS_SOCKET, credentialsBridgeArgs, kmsMode, runtimeKmsBlock, vsockProxyArgs} from './kms-bridges.js'

const run = promisify(execFile)
const tmp = tempDir('nle-kms-bridges-')
afterAll(() => tmp.cleanup())
let host: FakeHost | undefined
afterEach(() => host?.cleanup())

const config = (kms: Record<string, unknown>) => configSchema.parse({version: 1, name: 'demo', kms})

describe('kmsMode', () => {
  it('is on only when nle.yaml names both the key and its region', () => {
    expect(kmsMode(config({}))).toBeUndefined()
    expect(kmsMode(config({keyId: 'alias/demo'}))).toBeUndefined()
    expect(kmsMode(config({region: 'eu-west-1'}))).toBeUndefined()
    const mode = kmsMode(config({keyId: 'alias/demo', region: 'eu-west-1'}))
    expect(mode).toEqual({region: 'eu-west-1', keyId: 'alias/demo', kmsVsockPort: 8001, credentialsVsockPort: 8002})
    expect(vsockProxyArgs(mode!)).toEqual(['8001', 'kms.eu-west-1.amazonaws.com', '443', '--config', '/etc/nitro_enclaves/vsock-proxy.yaml'])
    expect(credentialsBridgeArgs(8002, '/run/nle/demo-credentials.sock')).toEqual(['VSOCK-LISTEN:8002,fork,reuseaddr', 'UNIX-CONNECT:/run/nle/demo-credentials.sock'])
  })

  it('its runtime block is one the enclave server accepts', () => {
    const block = runtimeKmsBlock(kmsMode(config({keyId: 'alias/demo', region: 'eu-west-1', vsockPort: 9000}))!)
    expect(block).toEqual({region: 'eu-west-1', keyId: 'alias/demo', via: ENCLAVE_KMS_SOCKET, credentialsSocket: ENCLAVE_CREDENTIALS_SOCKET, vsock: {kmsPort: 9000, credentialsPort: 8002}})
    expect(runtimeConfigSchema.parse({model: {path: '/app/model'}, kms: block}).kms).toEqual(block)
    // start.sh splits the bridge settings on spaces: the schema refuses paths it could not pass on.
    expect(runtimeConfigSchema.safeParse({model: {path: '/app/model'}, kms: {...block, via: '/run/my nle/kms.sock'}}).success).toBe(false)
    expect(runtimeConfigSchema.safeParse({model: {path: '/app/model'}, kms: {...block, credentialsSocket: undefined}}).success).toBe(false)
    // Without vsock (development) any socket path and an http endpoint are fine.
    expect(runtimeConfigSchema.safeParse({model: {path: '/app/model'}, kms: {region: 'us-east-1', keyId: 'k', endpoint: 'http://127.0.0.1:4566', credentialsSocket: '/tmp/my dev/credentials.sock'}}).success).toBe(true)
  })
})

describe('nle build in KMS mode', () => {
  it('writes the kms block into nle.runtime.json, and none without a key', async () => {
    host = fakeHost()
    const dir = await fakeProject(host, 'demo', (t) => t.replace('# keyId: alias/demo ', 'keyId: alias/demo ').replace('# region: eu-west-1', 'region: eu-west-1'))
    await buildProject({loaded: await loadConfig(join(dir, 'nle.yaml')), ctx: {env: host.env}})
    const runtime = JSON.parse(readFileSync(join(dir, '.nle', 'build-context', 'nle.runtime.json'), 'utf8')) as Record<string, unknown>
    expect(runtime.kms).toEqual({region: 'eu-west-1', keyId: 'alias/demo', via: '/run/nle/kms.sock', credentialsSocket: '/run/nle/credentials.sock', vsock: {kmsPort: 8001, credentialsPort: 8002}})
    expect(runtimeConfigSchema.safeParse(runtime).success).toBe(true)
    host.cleanup()
    host = fakeHost()
    const plain = await fakeProject(host, 'demo')
    await buildProject({loaded: await loadConfig(join(plain, 'nle.yaml')), ctx: {env: host.env}})
    expect(JSON.parse(readFileSync(join(plain, '.nle', 'build-context', 'nle.runtime.json'), 'utf8'))).not.toHaveProperty('kms')
  })
})

describe('templates/enclave/start.sh', () => {
  /** Runs start.sh with a socat and a node that record their argv (node -e still runs for real). */
  async function startSh(runtime: Record<string, unknown>): Promise<string[][]> {
    const dir = join(tmp.dir, `app-${Math.random().toString(36).slice(2)}`)
    const bin = join(dir, 'bin')
    mkdirSync(bin, {recursive: true})
    const log = join(dir, 'calls.log')
    writeFileSync(join(dir, 'nle.runtime.json'), JSON.stringify(runtime))
    writeFileSync(join(bin, 'socat'), `#!/bin/sh\necho "socat $*" >> "${log}"\n`)
    writeFileSync(join(bin, 'node'), `#!/bin/sh\nif [ "$1" = "-e" ]; then exec "${process.execPath}" "$@"; fi\necho "node $*" >> "${log}"\n`)
    chmodSync(join(bin, 'socat'), 0o755)
    chmodSync(join(bin, 'node'), 0o755)
    await run('sh', [join(TEMPLATES_DIR, 'enclave', 'start.sh')], {env: {PATH: `${bin}:/usr/bin:/bin`, NLE_APP: dir, NLE_SOCKET: join(dir, 'run', 'server.sock'), NLE_VSOCK_PORT: '5000'}})
    // start.sh starts them in the background: wait until each has written its line.
    const sealed = (runtime.model as {sealed?: {vsockPort?: number}} | undefined)?.sealed?.vsockPort !== undefined
    const expected = (runtime.kms ? 4 : 2) + (sealed ? 1 : 0)
    const lines = await untilFile(
      log,
      (text) => text.split('\n').slice(0, -1).filter(Boolean),
      (l) => l.length >= expected,
      {describe: (l) => `start.sh: ${l.length} of ${expected} processes recorded`},
    )
    return lines.map((l) => l.split(' ')).sort()
  }

  it('starts only the inbound bridge and the server without KMS mode', async () => {
    const calls = await startSh({model: {path: '/app/model'}})
    expect(calls.map((c) => c.slice(0, 2))).toEqual([
      ['node', expect.stringMatching(/\/nle\/runtime\/enclave-server\/index\.js$/)],
      ['socat', 'VSOCK-LISTEN:5000,fork,reuseaddr'],
    ])
  })

  it('with kms.vsock also bridges the KMS and credentials sockets to the parent (CID 3)', async () => {
    const sockets = join(tmp.dir, 'run-nle')
    const kms = {region: 'eu-west-1', keyId: 'alias/demo', via: join(sockets, 'kms.sock'), credentialsSocket: join(sockets, 'credentials.sock'), vsock: {kmsPort: 8001, credentialsPort: 8002}}
    const calls = await startSh({model: {path: '/app/model'}, kms})
    expect(calls.filter((c) => c[0] === 'socat')).toEqual([
      ['socat', 'UNIX-LISTEN:' + kms.credentialsSocket + ',fork,unlink-early', 'VSOCK-CONNECT:3:8002'],
      ['socat', 'UNIX-LISTEN:' + kms.via + ',fork,unlink-early', 'VSOCK-CONNECT:3:8001'],
      ['socat', 'VSOCK-LISTEN:5000,fork,reuseaddr', expect.stringMatching(/^UNIX-CONNECT:/)],
    ])
    expect(existsSync(sockets)).toBe(true)
    expect(calls.find((c) => c[0] === 'node')).toEqual(['node', expect.any(String), '--config', expect.stringMatching(/nle\.runtime\.json$/), '--socket', expect.any(String)])
  })

  it('with model.sealed.vsockPort also bridges the weights socket to the parent (CID 3)', async () => {
    const sockets = join(tmp.dir, 'run-nle-sealed')
    const kms = {region: 'eu-west-1', keyId: 'alias/demo', via: join(sockets, 'kms.sock'), credentialsSocket: join(sockets, 'credentials.sock'), vsock: {kmsPort: 8001, credentialsPort: 8002}}
    const weightsSocket = join(sockets, 'weights.sock')
    const calls = await startSh({model: {path: '/app/model', sealed: {manifest: '/app/model/nle-sealed.json', weightsSocket, vsockPort: 8003}}, kms})
    expect(calls.filter((c) => c[0] === 'socat')).toContainEqual(['socat', `UNIX-LISTEN:${weightsSocket},fork,unlink-early`, 'VSOCK-CONNECT:3:8003'])
    expect(calls.filter((c) => c[0] === 'socat')).toHaveLength(4)
  })
})
