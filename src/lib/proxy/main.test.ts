/**
 * The parent proxy process's settings and start-up, for the KMS-mode credentials endpoint: flags
 * and nle.yaml, started with the proxy on its own Unix socket, closed on the drain.
 */
import {existsSync, statSync, writeFileSync} from 'node:fs'
import {request} from 'node:http'
import {join} from 'node:path'

import {afterAll, afterEach, describe, expect, it} from 'vitest'

import {hasCode} from '../errors.js'
import {tempDir} from '../../test-support/tmp.js'
import {resolveProxySettings, settingsFromArgv, startParentProxy} from './main.js'
import {rejection} from '../../test-support/rejection.js'

const tmp = tempDir('nle-proxy-main-')
afterAll(() => tmp.cleanup())
let n = 0

function configFile(proxyYaml: string): string {
  const file = join(tmp.dir, `nle-${n++}.yaml`)
  writeFileSync(file, `version: 1\nname: demo\nproxy:\n  upstreams: [/run/nle/demo.sock]\n${proxyYaml}`)
  return file
}

describe('credentials settings', () => {
  it('none by default', async () => {
    const s = await resolveProxySettings(configFile(''), {})
    expect(s.credentialsSocket).toBeUndefined()
    expect(s.credentialsSource).toBeUndefined()
  })

  it('from nle.yaml: a relative socket resolves against its folder, the source defaults to imds', async () => {
    const s = await resolveProxySettings(configFile('  credentials:\n    socket: run/creds.sock\n'), {})
    expect(s).toMatchObject({credentialsSocket: join(tmp.dir, 'run/creds.sock'), credentialsSource: 'imds'})
  })

  it('flags override nle.yaml; a socket flag alone means the env source', async () => {
    const file = configFile('  credentials:\n    socket: /run/nle/demo-credentials.sock\n    source: imds\n')
    expect(await settingsFromArgv(['--config', file, '--credentials-socket', '/tmp/c.sock', '--credentials-source', 'env'])).toMatchObject({credentialsSocket: '/tmp/c.sock', credentialsSource: 'env'})
    expect(await settingsFromArgv(['--config', configFile(''), '--credentials-socket', '/tmp/c.sock'])).toMatchObject({credentialsSocket: '/tmp/c.sock', credentialsSource: 'env'})
  })

  it('usage errors: an unknown source, or a source without a socket', async () => {
    const bad = await rejection(settingsFromArgv(['--config', configFile(''), '--credentials-socket', '/tmp/c.sock', '--credentials-source', 'profile']))
    expect(bad).toMatchObject({code: 'PROXY_USAGE', exitCode: 2})
    const lonely = await rejection(settingsFromArgv(['--config', configFile(''), '--credentials-source', 'imds']))
    expect(hasCode(lonely, 'PROXY_USAGE')).toBe(true)
  })
})

describe('startParentProxy with a credentials socket', () => {
  const saved = {...process.env}
  afterEach(() => {
    process.env = {...saved}
  })

  function get(options: {socketPath: string} | {port: number}, path: string): Promise<{status: number; body: string}> {
    return new Promise((resolve, reject) => {
      const req = request({...('port' in options ? {host: '127.0.0.1'} : {}), ...options, path, agent: false}, (res) => {
        const parts: Buffer[] = []
        res.on('data', (d: Buffer) => parts.push(d))
        res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(parts).toString()}))
      })
      req.on('error', reject)
      req.end()
    })
  }

  it('serves /v1/credentials on the Unix socket only, and removes it on stop', async () => {
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: 'AKIAMAINTEST', AWS_SECRET_ACCESS_KEY: 'main-test-secret'})
    delete process.env.AWS_SESSION_TOKEN
    const socket = join(tmp.dir, 'proxy-creds.sock')
    const lines: string[] = []
    const settings = await resolveProxySettings(configFile(''), {httpPort: 0, credentialsSocket: socket})
    const running = await startParentProxy(settings, {log: (level, event, fields) => lines.push(JSON.stringify({level, event, ...fields}))})
    try {
      expect(running.credentials).toEqual({socket, source: 'env'})
      expect(statSync(socket).mode & 0o777).toBe(0o600)
      const creds = await get({socketPath: socket}, '/v1/credentials')
      expect(creds.status).toBe(200)
      expect(JSON.parse(creds.body)).toEqual({AccessKeyId: 'AKIAMAINTEST', SecretAccessKey: 'main-test-secret'})
      // Never on the proxy's TCP listener.
      expect((await get({port: running.http!.port}, '/v1/credentials')).status).toBe(404)
    } finally {
      await running.stop()
    }
    expect(existsSync(socket)).toBe(false)
    expect(lines.join('\n')).not.toContain('main-test-secret')
    expect(lines.map((l) => JSON.parse(l) as {event: string; credentials?: string}).find((l) => l.event === 'listening')?.credentials).toBe(socket)
  })
})

describe('the self-signed development certificate', () => {
  it('a regenerated key is 0600 even where an older key.pem was 0644; the limits reach the proxy from flags', async () => {
    const tls = join(tmp.dir, 'tls-regen')
    ;(await import('node:fs')).mkdirSync(tls, {recursive: true})
    writeFileSync(join(tls, 'key.pem'), 'an old key, once world-readable\n', {mode: 0o644})
    expect(statSync(join(tls, 'key.pem')).mode & 0o777).toBe(0o644)
    const settings = await settingsFromArgv(['--config', configFile(''), '--self-signed', tls, '--host', '127.0.0.1', '--port', '0', '--max-connections', '7', '--headers-timeout', '900ms', '--request-timeout', '1800ms'])
    expect(settings).toMatchObject({maxConnections: 7, maxConnectionsPerClient: 128, maxBufferedBytes: 32 * 1024 * 1024, headersTimeoutMs: 900, requestTimeoutMs: 1800})
    const running = await startParentProxy(settings, {log: () => undefined})
    try {
      expect(statSync(join(tls, 'key.pem')).mode & 0o777).toBe(0o600)
      expect((await import('node:fs')).readFileSync(join(tls, 'key.pem'), 'utf8')).toContain('BEGIN PRIVATE KEY')
    } finally {
      await running.stop()
    }
  })
})

describe('startParentProxy with a sealed model (--weights-dir, --weights-socket)', () => {
  it('serves the sealed files on their own 0600 socket, never on TCP; no canary in its log; the flags go together', async () => {
    const {CANARY, fakeKms, writeFakeModel} = await import('../../test-support/sealed.js')
    const {sealModel} = await import('../model/seal/seal.js')
    await writeFakeModel(join(tmp.dir, 'wmodel'))
    const sealedDir = join(tmp.dir, 'wsealed')
    await sealModel({modelDir: join(tmp.dir, 'wmodel'), outDir: sealedDir, generateDataKey: fakeKms().generate, chunkBytes: 4096})
    const socket = join(tmp.dir, 'proxy-weights.sock')
    const settings = await settingsFromArgv(['--config', configFile(''), '--http-port', '0', '--weights-dir', sealedDir, '--weights-socket', socket])
    expect(settings.weights).toEqual({dir: sealedDir, socket})
    const lines: string[] = []
    const running = await startParentProxy(settings, {log: (level, event, fields) => lines.push(JSON.stringify({level, event, ...fields}))})
    let body = ''
    try {
      expect(statSync(socket).mode & 0o777).toBe(0o600)
      const r = await new Promise<{status: number; bytes: Buffer}>((resolve, reject) => {
        const req = request({socketPath: socket, path: '/v1/sealed/0002.sealed', agent: false}, (res) => {
          const parts: Buffer[] = []
          res.on('data', (d: Buffer) => parts.push(d))
          res.on('end', () => resolve({status: res.statusCode ?? 0, bytes: Buffer.concat(parts)}))
        })
        req.on('error', reject)
        req.end()
      })
      expect(r.status).toBe(200)
      expect(r.bytes.equals((await import('node:fs')).readFileSync(join(sealedDir, '0002.sealed')))).toBe(true)
      expect(r.bytes.includes(CANARY)).toBe(false)
      const tcp = await new Promise<number>((resolve, reject) => {
        const req = request({host: '127.0.0.1', port: running.http!.port, path: '/v1/sealed/0002.sealed', agent: false}, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on('error', reject)
        req.end()
      })
      expect(tcp).not.toBe(200)
    } finally {
      await running.stop()
      body = lines.join('\n')
    }
    expect(existsSync(socket)).toBe(false)
    expect(body).toContain('"event":"weights"')
    expect(body.includes(CANARY.toString())).toBe(false)
    expect(hasCode(await rejection(settingsFromArgv(['--config', configFile(''), '--weights-dir', sealedDir])), 'PROXY_USAGE')).toBe(true)
  })
})
