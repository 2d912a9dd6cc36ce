/**
 * The credentials endpoint on a Unix socket, with the SDK's env provider and its IMDSv2 provider
 * against a fake instance metadata service on 127.0.0.1.
 */
import {once} from 'node:events'
import {statSync} from 'node:fs'
import {type IncomingMessage, type Server, createServer, request} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'

import {afterAll, afterEach, beforeEach, describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {type CredentialsServer, type CredentialSource, REFRESH_BEFORE_EXPIRY_MS, cachingProvider, startCredentialsServer} from './credentials.js'

const tmp = tempDir('nle-creds-')
afterAll(() => tmp.cleanup())
let n = 0

const ENV_KEYS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_CREDENTIAL_EXPIRATION', 'AWS_EC2_METADATA_SERVICE_ENDPOINT', 'AWS_EC2_METADATA_V1_DISABLED', 'AWS_CONFIG_FILE', 'AWS_PROFILE']
let savedEnv: Record<string, string | undefined>
beforeEach(() => {
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]))
  for (const k of ENV_KEYS) delete process.env[k]
  // The IMDS provider reads the shared config file for its endpoint: never this machine's.
  process.env.AWS_CONFIG_FILE = join(tmp.dir, 'no-aws-config')
})
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
})

async function serve(source: CredentialSource): Promise<{server: CredentialsServer; lines: string[]}> {
  const lines: string[] = []
  const server = await startCredentialsServer({
    socketPath: join(tmp.dir, `c${n++}.sock`),
    source,
    logger: {log: (level, event, fields) => lines.push(JSON.stringify({level, event, ...fields}))},
  })
  cleanups.push(() => server.close())
  return {server, lines}
}

function get(socketPath: string, path = '/v1/credentials', method = 'GET'): Promise<{status: number; headers: IncomingMessage['headers']; json: Record<string, unknown>}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath, path, method, agent: false}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(parts).toString() || '{}') as Record<string, unknown>}))
    })
    req.on('error', reject)
    req.end()
  })
}

const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY'
const TOKEN = 'IQoJb3JpZ2luX2VjEFAKESESSIONTOKEN'

describe('credentials endpoint, env source', () => {
  it('answers the ECS shape from the process environment, on a 0600 socket', async () => {
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: 'AKIAENVEXAMPLE', AWS_SECRET_ACCESS_KEY: SECRET, AWS_SESSION_TOKEN: TOKEN, AWS_CREDENTIAL_EXPIRATION: '2030-01-01T00:00:00Z'})
    const {server} = await serve('env')
    expect(statSync(server.socketPath).mode & 0o777).toBe(0o600)
    const r = await get(server.socketPath)
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('application/json')
    expect(r.headers['cache-control']).toBe('no-store')
    expect(r.json).toEqual({AccessKeyId: 'AKIAENVEXAMPLE', SecretAccessKey: SECRET, Token: TOKEN, Expiration: '2030-01-01T00:00:00.000Z'})
  })

  it('leaves out Token and Expiration when there are none', async () => {
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: 'AKIAENVEXAMPLE', AWS_SECRET_ACCESS_KEY: SECRET})
    const {server} = await serve('env')
    expect((await get(server.socketPath)).json).toEqual({AccessKeyId: 'AKIAENVEXAMPLE', SecretAccessKey: SECRET})
  })

  it('answers only GET /v1/credentials: 404 elsewhere, 405 for other methods', async () => {
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: 'AKIAENVEXAMPLE', AWS_SECRET_ACCESS_KEY: SECRET})
    const {server, lines} = await serve('env')
    const other = await get(server.socketPath, '/latest/meta-data/')
    expect(other).toMatchObject({status: 404, json: {error: {code: 'PROXY_NOT_FOUND'}}})
    const post = await get(server.socketPath, '/v1/credentials', 'POST')
    expect(post.status).toBe(405)
    expect(post.headers.allow).toBe('GET')
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'access').map((l) => [l.method, l.route, l.status])).toEqual([
      ['GET', '(other)', 404],
      ['POST', '/v1/credentials', 405],
    ])
  })

  it('503 with a JSON code when the source has no credentials', async () => {
    const {server} = await serve('env')
    const r = await get(server.socketPath)
    expect(r).toMatchObject({status: 503, json: {error: {code: 'PROXY_CREDENTIALS_UNAVAILABLE'}}})
    expect(JSON.stringify(r.json)).toMatch(/env source/)
  })

  it('never writes a credential value to the log', async () => {
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: 'AKIAENVEXAMPLE', AWS_SECRET_ACCESS_KEY: SECRET, AWS_SESSION_TOKEN: TOKEN})
    const {server, lines} = await serve('env')
    for (let i = 0; i < 3; i++) expect((await get(server.socketPath)).status).toBe(200)
    const access = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'access')
    expect(access).toHaveLength(3)
    expect(access[0]).toMatchObject({level: 'info', method: 'GET', route: '/v1/credentials', status: 200, bytesOut: expect.any(Number), complete: true})
    const all = lines.join('\n')
    for (const secret of [SECRET, TOKEN, 'AKIAENVEXAMPLE']) expect(all).not.toContain(secret)
  })

  it('replaces a stale socket file and removes its socket on close', async () => {
    const socketPath = join(tmp.dir, 'stale.sock')
    const first = await startCredentialsServer({socketPath, source: 'env', logger: {log() {}}})
    // A crash leaves the file behind; a new server must still bind.
    const second = await startCredentialsServer({socketPath, source: 'env', logger: {log() {}}})
    await second.close()
    await first.close()
    expect(() => statSync(socketPath)).toThrow()
  })
})

/** A fake IMDSv2: a session token from PUT /latest/api/token is required for every metadata read. */
async function fakeImds(options: {expiresInMs: number; failCredentials?: boolean}): Promise<{url: string; hits: {token: number; credentials: number; unauthorized: number}; server: Server}> {
  const sessionToken = 'imds-session-token'
  const hits = {token: 0, credentials: 0, unauthorized: 0}
  const server = createServer((req, res) => {
    req.resume()
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return res.writeHead(400).end()
      hits.token++
      return res.writeHead(200, {'content-type': 'text/plain'}).end(sessionToken)
    }
    if (req.headers['x-aws-ec2-metadata-token'] !== sessionToken) {
      hits.unauthorized++
      return res.writeHead(401).end()
    }
    if (req.method === 'GET' && req.url === '/latest/meta-data/iam/security-credentials/') return res.writeHead(200).end('demo-host\n')
    if (req.method === 'GET' && req.url === '/latest/meta-data/iam/security-credentials/demo-host') {
      hits.credentials++
      if (options.failCredentials) return res.writeHead(500).end()
      const body = {Code: 'Success', Type: 'AWS-HMAC', AccessKeyId: `ASIAIMDS${hits.credentials}`, SecretAccessKey: SECRET, Token: TOKEN, Expiration: new Date(Date.now() + options.expiresInMs).toISOString(), LastUpdated: new Date().toISOString()}
      return res.writeHead(200, {'content-type': 'text/plain'}).end(JSON.stringify(body))
    }
    res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())))
  return {url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits, server}
}

describe('credentials endpoint, imds source (IMDSv2)', () => {
  it('gets the instance role credentials with a session token, and caches them until 5 minutes before expiry', async () => {
    const imds = await fakeImds({expiresInMs: 60 * 60 * 1000})
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.url
    const {server, lines} = await serve('imds')
    const r = await get(server.socketPath)
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({AccessKeyId: 'ASIAIMDS1', SecretAccessKey: SECRET, Token: TOKEN})
    expect(Date.parse(r.json.Expiration as string)).toBeGreaterThan(Date.now() + 50 * 60 * 1000)
    expect((await get(server.socketPath)).json.AccessKeyId).toBe('ASIAIMDS1')
    expect(imds.hits).toEqual({token: 1, credentials: 1, unauthorized: 0})
    const all = lines.join('\n')
    expect(all).not.toContain(SECRET)
    expect(all).not.toContain(TOKEN)
  })

  it('fetches again when the credentials expire within 5 minutes', async () => {
    const imds = await fakeImds({expiresInMs: REFRESH_BEFORE_EXPIRY_MS - 60_000})
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.url
    const {server} = await serve('imds')
    expect((await get(server.socketPath)).json.AccessKeyId).toBe('ASIAIMDS1')
    expect((await get(server.socketPath)).json.AccessKeyId).toBe('ASIAIMDS2')
    expect(imds.hits.credentials).toBe(2)
  })

  it('503 when the metadata service fails, and no v1 fallback without a token', async () => {
    const imds = await fakeImds({expiresInMs: 60 * 60 * 1000, failCredentials: true})
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.url
    const {server, lines} = await serve('imds')
    const r = await get(server.socketPath)
    expect(r).toMatchObject({status: 503, json: {error: {code: 'PROXY_CREDENTIALS_UNAVAILABLE'}}})
    expect(imds.hits.unauthorized).toBe(0)
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(logged.find((l) => l.event === 'access')).toMatchObject({status: 503, code: 'PROXY_CREDENTIALS_UNAVAILABLE'})
    expect(logged.find((l) => l.event === 'credentials_unavailable')).toMatchObject({level: 'warn', source: 'imds', error: expect.any(String)})
  })

  it('503 when there is no metadata service at all', async () => {
    const imds = await fakeImds({expiresInMs: 0})
    const url = imds.url
    await new Promise<void>((r) => imds.server.close(() => r()))
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = url
    const {server} = await serve('imds')
    expect((await get(server.socketPath)).status).toBe(503)
  })
})

describe('cachingProvider', () => {
  it('shares one fetch between concurrent callers and does not cache failures', async () => {
    let calls = 0
    let fail = true
    const provider = cachingProvider(async () => {
      calls++
      await new Promise((r) => setTimeout(r, 10))
      if (fail) throw new Error('down')
      return {accessKeyId: 'A', secretAccessKey: 'S', expiration: new Date(Date.now() + 3_600_000)}
    })
    await expect(Promise.all([provider(), provider()])).rejects.toThrow('down')
    expect(calls).toBe(1)
    fail = false
    const [a, b] = await Promise.all([provider(), provider()])
    expect(a).toBe(b)
    await provider()
    expect(calls).toBe(2)
  })
})
