// The one access line of every nle server (./access.ts): the five servers run here on loopback and
// Unix sockets, each gets requests that carry a canary in every place a client controls (the path,
// the query string, the headers — authorization and cookie included —, the body, and inside the
// sealed question), and each server's access lines must have the one format (the same fields in
// the same order) and no trace of the canary.
import {request} from 'node:http'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {ServerKeyRing} from '../channel/index.js'
import {NleClient} from '../client/index.js'
import {startGateway} from '../gateway/gateway.js'
import {startLocalKms} from '../kms/local/server.js'
import {newState} from '../kms/local/state.js'
import {startCredentialsServer} from '../proxy/credentials.js'
import {ParentProxy} from '../proxy/proxy.js'
import {EnclaveServer} from '../server/app.js'
import {echoChat} from '../server/chat.js'
import {tempDir} from '../../test-support/tmp.js'
import {ACCESS_FIELDS, type AccessRecord, accessLine, knownRoutes} from './access.js'
import type {Logger} from './log.js'

const CANARY = 'canary-7d1e5b0c93'
const PCRS = {PCR0: 'a'.repeat(96), PCR1: 'b'.repeat(96), PCR2: 'c'.repeat(96)}
const TOKEN = `${CANARY}-token-0123456789`

const tmp = tempDir('nle-access-')
const logs: Record<string, string[]> = {server: [], proxy: [], credentials: [], gateway: [], kms: []}
const stops: (() => Promise<unknown> | void)[] = []
const logger = (name: string): Logger => ({log: (level, event, fields = {}) => logs[name]!.push(JSON.stringify({level, event, ...fields}))})

let socket: string
let proxyPort: number
let credentialsSocket: string
let gatewayUrl: string
let kmsUrl: string

beforeAll(async () => {
  socket = join(tmp.dir, 'enclave.sock')
  const nsm = new NsmSimulator({measurements: PCRS})
  const server = new EnclaveServer({chat: echoChat(), nsm, keyRing: await ServerKeyRing.create({graceMs: 0}), defaults: {maxTokens: 16, sampling: {temperature: 0, topP: 1, topK: 0}}, logger: logger('server')})
  await server.listen(socket)
  stops.push(() => server.drain(0))

  const proxy = new ParentProxy({upstreams: [socket], bodyLimitBytes: 1 << 20, concurrency: 4, queue: 4, upstreamTimeoutMs: 10_000, logger: logger('proxy')})
  proxyPort = (await proxy.listen({http: {port: 0}})).http!.port
  stops.push(() => proxy.drain(0))

  credentialsSocket = join(tmp.dir, 'credentials.sock')
  const credentials = await startCredentialsServer({socketPath: credentialsSocket, source: 'env', logger: logger('credentials'), provider: async () => ({accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-logged-secret'})})
  stops.push(() => credentials.close())

  // The gateway in front of the proxy in front of the server: the canary question crosses all three.
  const client = new NleClient({target: `http://127.0.0.1:${proxyPort}`, expectedPcrs: PCRS, insecureDevRoot: nsm.root})
  const gateway = await startGateway({upstream: client, upstreamDisplay: 'proxy', listen: '127.0.0.1:0', token: TOKEN, log: (e) => logs.gateway!.push(JSON.stringify(e))})
  gatewayUrl = gateway.url
  stops.push(() => gateway.gateway.stop())

  const kms = await startLocalKms({state: newState(), root: nsm.root, log: (line) => logs.kms!.push(line)})
  kmsUrl = kms.url
  stops.push(() => kms.close())
}, 60_000)

afterAll(async () => {
  for (const stop of stops.reverse()) await stop()
  tmp.cleanup()
})

/** One request with the canary in the path or the query, in headers (credentials too) and in the body. */
function send(target: {socketPath: string} | {url: string}, method: string, path: string, body: string, headers: Record<string, string> = {}): Promise<number> {
  const base = 'url' in target ? new URL(target.url) : undefined
  return new Promise((resolve, reject) => {
    const req = request(
      {
        ...('socketPath' in target ? {socketPath: target.socketPath} : {host: base!.hostname, port: base!.port}),
        method,
        path,
        agent: false,
        headers: {'content-type': 'application/json', 'content-length': Buffer.byteLength(body), cookie: `session=${CANARY}`, 'x-canary': CANARY, 'user-agent': CANARY, authorization: `Bearer ${CANARY}`, ...headers},
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const canaryBody = JSON.stringify({question: CANARY, messages: [{role: 'user', content: CANARY}]})

/** The access lines of one server's log: the JSON objects whose event is `access`. */
function accessLines(name: string): Record<string, unknown>[] {
  return logs[name]!.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'access')
}

/** The one format: `event`, then exactly the common fields in order; a logger's own fields before, a server's numeric extras after. */
function expectOneFormat(line: Record<string, unknown>): void {
  const keys = Object.keys(line)
  const at = keys.indexOf('event')
  expect(keys.slice(0, at).every((k) => ['ts', 'level', 'component'].includes(k)), keys.join(',')).toBe(true)
  expect(keys.slice(at + 1, at + 1 + ACCESS_FIELDS.length)).toEqual([...ACCESS_FIELDS])
  for (const k of keys.slice(at + 1 + ACCESS_FIELDS.length)) expect(['number', 'boolean'], k).toContain(typeof line[k])
  expect(typeof line.method).toBe('string')
  expect(typeof line.route).toBe('string')
  expect(typeof line.status).toBe('number')
  expect(typeof line.ms).toBe('number')
  expect(line.requestId).toMatch(/^[0-9a-z-]+$/)
}

describe('the access line of every server', () => {
  it('the enclave server, the proxy and the gateway: one format, and the canary question never in it', async () => {
    // Through the gateway: an OpenAI request whose plaintext is the canary (sealed from there on).
    const r = await fetch(`${gatewayUrl}/v1/chat/completions?user=${CANARY}`, {method: 'POST', headers: {'content-type': 'application/json', authorization: `Bearer ${TOKEN}`, cookie: CANARY}, body: JSON.stringify({model: 'x', messages: [{role: 'user', content: CANARY}]})})
    expect(r.status).toBe(200)
    expect(((await r.json()) as {choices: {message: {content: string}}[]}).choices[0]!.message.content).toContain(CANARY)
    // Refused ones, with the canary everywhere a client controls.
    expect(await send({url: gatewayUrl}, 'POST', `/${CANARY}?q=${CANARY}`, canaryBody)).toBe(401)
    expect(await send({url: `http://127.0.0.1:${proxyPort}`}, 'POST', `/v1/chat/completions?q=${CANARY}`, canaryBody, {'content-type': 'application/nle-sealed-request'})).toBeGreaterThanOrEqual(400)
    // A method Node accepts but no nle server serves is "(other)" too.
    expect(await send({url: `http://127.0.0.1:${proxyPort}`}, 'PROPFIND', `/${CANARY}`, canaryBody)).toBe(404)
    expect(await send({socketPath: socket}, 'POST', `/v1/chat/completions?q=${CANARY}`, canaryBody, {'content-type': 'application/nle-sealed-request'})).toBeGreaterThanOrEqual(400)
    expect(await send({socketPath: socket}, 'GET', `/${CANARY}/x?${CANARY}`, '')).toBe(404)

    for (const name of ['server', 'proxy', 'gateway']) {
      const lines = accessLines(name)
      expect(lines.length, name).toBeGreaterThanOrEqual(2)
      for (const line of lines) expectOneFormat(line)
      expect(logs[name]!.join('\n'), name).not.toContain(CANARY)
    }
    // What each line says: the chat went through all three; the hostile paths are "(other)".
    expect(accessLines('gateway')).toContainEqual(expect.objectContaining({method: 'POST', route: '/v1/chat/completions', status: 200, complete: true, code: null}))
    expect(accessLines('gateway')).toContainEqual(expect.objectContaining({route: '(other)', status: 401, code: 'GATEWAY_UNAUTHORIZED'}))
    expect(accessLines('proxy')).toContainEqual(expect.objectContaining({method: 'POST', route: '/v1/chat/completions', status: 200, upstream: 0}))
    expect(accessLines('proxy')).toContainEqual(expect.objectContaining({method: '(other)', route: '(other)'}))
    const chat = accessLines('server').find((l) => l.route === '/v1/chat/completions' && l.status === 200)
    expect(chat).toMatchObject({method: 'POST', complete: true, tokens: expect.any(Number), requestId: expect.stringMatching(/^[0-9a-f]{32}$/)})
    expect(accessLines('server')).toContainEqual(expect.objectContaining({method: 'GET', route: '(other)', status: 404, code: 'SERVER_NOT_FOUND'}))
  }, 60_000)

  it('the credentials socket: one format, and neither the canary nor a credential in it', async () => {
    expect(await send({socketPath: credentialsSocket}, 'GET', `/v1/credentials?role=${CANARY}`, '')).toBe(200)
    expect(await send({socketPath: credentialsSocket}, 'POST', `/${CANARY}`, canaryBody)).toBe(404)
    const lines = accessLines('credentials')
    expect(lines.map((l) => [l.method, l.route, l.status])).toEqual([
      ['GET', '/v1/credentials', 200],
      ['POST', '(other)', 404],
    ])
    for (const line of lines) expectOneFormat(line)
    const all = logs.credentials!.join('\n')
    for (const secret of [CANARY, 'not-logged-secret', 'AKIDEXAMPLE']) expect(all).not.toContain(secret)
  })

  it('the local KMS: one format, and the canary never in it', async () => {
    expect(await send({url: kmsUrl}, 'POST', `/?Action=${CANARY}`, canaryBody, {'x-amz-target': 'TrentService.Decrypt', 'content-type': 'application/x-amz-json-1.1'})).toBe(400)
    expect(await send({url: kmsUrl}, 'GET', `/${CANARY}`, '')).toBe(405)
    const lines = logs.kms!.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => [l.method, l.route, l.status, l.code])).toEqual([
      ['POST', '/', 400, 'IncompleteSignatureException'],
      ['GET', '(other)', 405, 'UnknownOperationException'],
    ])
    for (const line of lines) expectOneFormat(line)
    expect(lines[0]!.bytesIn).toBe(Buffer.byteLength(canaryBody))
    expect(logs.kms!.join('\n')).not.toContain(CANARY)
  })
})

describe('accessLine', () => {
  const res = {statusCode: 200, writableFinished: true} as never
  const record = (over: Partial<AccessRecord> = {}): AccessRecord => ({bytesIn: 1, bytesOut: 2, requestId: 'ab12-1', extra: {}, ...over})

  it('keeps no method, route, id or code that is not of the known safe forms', () => {
    const req = {method: 'SECRETMETHOD', url: '/v1/x?token=secret'} as never
    const line = accessLine(req, res, record({requestId: 'has spaces secret', code: 'not a code: secret', extra: {tokens: 3, note: 'secret' as never}}), knownRoutes(['/v1/x']), 1.234)
    expect(line).toEqual({event: 'access', method: '(other)', route: '/v1/x', status: 200, bytesIn: 1, bytesOut: 2, ms: 1.2, complete: true, requestId: '(other)', code: null, tokens: 3})
    expect(JSON.stringify(line)).not.toContain('secret')
  })

  it('does not let an extra replace a common field', () => {
    const line = accessLine({method: 'GET', url: '/'} as never, res, record({extra: {status: 999, bytesOut: 0}}), knownRoutes(['/']), 0)
    expect([line.status, line.bytesOut]).toEqual([200, 2])
  })
})
