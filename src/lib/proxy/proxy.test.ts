import {once} from 'node:events'
import {createServer, request, type Server} from 'node:http'
import {connect as netConnect} from 'node:net'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {MAX_HEADER_BYTES, ParentProxy, clientKey} from './proxy.js'

interface Upstream {
  path: string
  server: Server
  hits: number
}

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A fake enclave server on a Unix socket. */
async function upstream(dir: string, name: string, handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<Upstream> {
  const up: Upstream = {path: join(dir, `${name}.sock`), server: createServer((req, res) => {
    up.hits++
    handler(req, res)
  }), hits: 0}
  up.server.listen(up.path)
  await once(up.server, 'listening')
  cleanups.push(() => {
    up.server.closeAllConnections()
    return new Promise<void>((r) => up.server.close(() => r()))
  })
  return up
}

async function proxyFor(upstreams: string[], options: Partial<ConstructorParameters<typeof ParentProxy>[0]> = {}) {
  const lines: string[] = []
  const proxy = new ParentProxy({upstreams, bodyLimitBytes: 1024, concurrency: 2, queue: 0, upstreamTimeoutMs: 2000, logger: {log: (level, event, fields) => lines.push(JSON.stringify({level, event, ...fields}))}, ...options})
  const bound = await proxy.listen({http: {port: 0}})
  cleanups.push(async () => {
    await proxy.drain(0)
  })
  return {proxy, port: bound.http!.port, lines}
}

function call(port: number, method: string, path: string, body?: Buffer | string): Promise<{status: number; headers: import('node:http').IncomingHttpHeaders; body: string}> {
  return new Promise((resolve, reject) => {
    const req = request({host: '127.0.0.1', port, method, path, agent: false, headers: body ? {'content-type': 'application/nle-sealed-request'} : {}}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString()}))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('ParentProxy', () => {
  it('relays only the enclave API, round-robin, and logs no bodies', async () => {
    const {dir, cleanup} = tempDir()
    cleanups.push(cleanup)
    const echo = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
      const parts: Buffer[] = []
      req.on('data', (d: Buffer) => parts.push(d))
      req.on('end', () => res.writeHead(200, {'content-type': 'application/octet-stream', 'set-cookie': 'x=1'}).end(Buffer.concat(parts)))
    }
    const a = await upstream(dir, 'a', echo)
    const b = await upstream(dir, 'b', echo)
    const {port, lines} = await proxyFor([a.path, b.path])
    for (let i = 0; i < 4; i++) {
      const r = await call(port, 'POST', '/v1/chat/completions', 'SECRET-BODY')
      expect(r.status).toBe(200)
      expect(r.body).toBe('SECRET-BODY')
      expect(r.headers['set-cookie']).toBeUndefined()
    }
    expect([a.hits, b.hits]).toEqual([2, 2])
    expect((await call(port, 'GET', '/admin')).status).toBe(404)
    expect((await call(port, 'GET', '/v1/chat/completions')).status).toBe(405)
    expect(lines.join('\n')).not.toContain('SECRET')
    const access = lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'access' && l.status === 200)
    expect(access[0]).toMatchObject({method: 'POST', route: '/v1/chat/completions', bytesIn: 11, bytesOut: 11})
    expect(typeof access[0].ms).toBe('number')
  })

  it('skips a dead socket, and answers 502 when no enclave is up', async () => {
    const {dir, cleanup} = tempDir()
    cleanups.push(cleanup)
    const live = await upstream(dir, 'live', (_req, res) => res.end('ok'))
    const {port} = await proxyFor([join(dir, 'missing.sock'), live.path])
    for (let i = 0; i < 3; i++) expect((await call(port, 'GET', '/healthz')).status).toBe(200)
    const dead = await proxyFor([join(dir, 'missing.sock')])
    const r = await call(dead.port, 'GET', '/healthz')
    expect(r.status).toBe(502)
    expect(JSON.parse(r.body).error.code).toBe('PROXY_UPSTREAM_UNAVAILABLE')
  })

  it('answers 413 over the body limit without contacting the enclave', async () => {
    const {dir, cleanup} = tempDir()
    cleanups.push(cleanup)
    const up = await upstream(dir, 'u', (_req, res) => res.end('ok'))
    const {port} = await proxyFor([up.path])
    const r = await call(port, 'POST', '/v1/chat/completions', Buffer.alloc(2048))
    expect(r.status).toBe(413)
    expect(JSON.parse(r.body).error.code).toBe('PROXY_BODY_TOO_LARGE')
    expect(up.hits).toBe(0)
  })

  it('answers 429 with Retry-After over the concurrency limit, 504 on a silent enclave', async () => {
    const {dir, cleanup} = tempDir()
    cleanups.push(cleanup)
    const held: import('node:http').ServerResponse[] = []
    const up = await upstream(dir, 'slow', (_req, res) => {
      held.push(res)
    })
    const {port} = await proxyFor([up.path], {concurrency: 1, upstreamTimeoutMs: 300})
    const first = call(port, 'GET', '/healthz')
    while (held.length === 0) await new Promise((r) => setTimeout(r, 10))
    const second = await call(port, 'GET', '/healthz')
    expect(second.status).toBe(429)
    expect(second.headers['retry-after']).toBe('1')
    const r = await first
    expect(r.status).toBe(504)
    expect(JSON.parse(r.body).error.code).toBe('PROXY_UPSTREAM_TIMEOUT')
  })

  it('drains: a stream in flight finishes, new requests are refused', async () => {
    const {dir, cleanup} = tempDir()
    cleanups.push(cleanup)
    let release: (() => void) | undefined
    const up = await upstream(dir, 'stream', (_req, res) => {
      res.writeHead(200, {'content-type': 'text/event-stream'})
      res.write('data: one\n\n')
      release = () => res.end('data: two\n\n')
    })
    const {proxy, port} = await proxyFor([up.path])
    const pending = call(port, 'GET', '/healthz')
    while (!release) await new Promise((r) => setTimeout(r, 10))
    const drained = proxy.drain(5000)
    // drain() stops listening at once (server.close): no wait is needed before the refusal.
    await expect(call(port, 'GET', '/healthz')).rejects.toThrow() // no longer accepting
    release()
    expect((await pending).body).toBe('data: one\n\ndata: two\n\n')
    expect(await drained).toEqual({forced: false})
  })
})

describe('ParentProxy: a client that leaves', () => {
  it('mid-stream: the upstream request is closed too (the enclave stops generating), and the slot is freed', async () => {
    const {dir, cleanup} = tempDir('nle-proxy-leave-')
    cleanups.push(cleanup)
    let upstreamClosed!: () => void
    const closed = new Promise<void>((resolve) => (upstreamClosed = resolve))
    const up = await upstream(dir, 'stream', (req, res) => {
      if (req.url === '/healthz') return res.end('{}')
      res.writeHead(200, {'content-type': 'text/event-stream'})
      const timer = setInterval(() => res.write('data: x\n\n'), 10)
      res.on('close', () => {
        clearInterval(timer)
        upstreamClosed()
      })
    })
    const {port} = await proxyFor([up.path], {concurrency: 1})
    await new Promise<void>((resolve, reject) => {
      const req = request({host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false, headers: {'content-type': 'application/nle-sealed-request'}}, (res) => {
        expect(res.statusCode).toBe(200)
        res.once('data', () => {
          req.destroy()
          resolve()
        })
      })
      req.on('error', () => undefined)
      req.end('x')
      setTimeout(() => reject(new Error('no first chunk')), 5000)
    })
    await closed
    // The only slot is free again: the next request is relayed, not refused with 429.
    const next = await call(port, 'GET', '/healthz')
    expect(next.status).toBe(200)
  })

  it('while queued: it is dropped from the queue and never reaches the enclave', async () => {
    const {dir, cleanup} = tempDir('nle-proxy-queue-')
    cleanups.push(cleanup)
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const up = await upstream(dir, 'slow', (req, res) => {
      if (req.url === '/healthz') return res.end('{}')
      void held.then(() => res.end('done'))
    })
    const {proxy, port} = await proxyFor([up.path], {concurrency: 1, queue: 4})
    const until = async (ok: () => boolean): Promise<void> => {
      while (!ok()) await new Promise((r) => setTimeout(r, 10))
    }
    const first = call(port, 'POST', '/v1/chat/completions', 'a')
    await until(() => up.hits === 1)
    // A second request waits for the slot; its client gives up.
    const leaver = request({host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false, headers: {'content-type': 'application/nle-sealed-request'}})
    leaver.on('error', () => undefined)
    leaver.end('b')
    await until(() => proxy.stats().queued === 1)
    leaver.destroy()
    await until(() => proxy.stats().queued === 0)
    release()
    expect((await first).status).toBe(200)
    await until(() => proxy.stats().inFlight === 0)
    expect(up.hits).toBe(1)
  })
})

describe('ParentProxy: limits against hostile clients', () => {
  /** A raw TCP client from `from`; resolves with what the proxy sent before it closed the connection. */
  function raw(port: number, from: string, send: (s: import('node:net').Socket) => void): {socket: import('node:net').Socket; answer: Promise<string>} {
    const socket = netConnect({host: '127.0.0.1', port, localAddress: from})
    const parts: Buffer[] = []
    socket.on('data', (d: Buffer) => parts.push(d))
    socket.on('error', () => undefined)
    socket.once('connect', () => send(socket))
    return {socket, answer: new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(parts).toString('latin1'))))}
  }
  const head = (length: number): string => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/nle-sealed-request\r\nContent-Length: ${length}\r\n\r\n`

  it('counts clients by address (IPv4-mapped as IPv4, IPv6 by /64)', () => {
    expect(clientKey('127.0.0.1')).toBe('127.0.0.1')
    expect(clientKey('::ffff:10.1.2.3')).toBe('10.1.2.3')
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64')
    expect(clientKey('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64')
    expect(clientKey('::1')).toBe('0:0:0:0::/64')
    expect(clientKey(undefined)).toBe('?')
  })

  it('refuses a body that does not fit maxBufferedBytes with 429 before reading it; the enclave never sees it', async () => {
    const {dir, cleanup} = tempDir('nle-proxy-budget-')
    cleanups.push(cleanup)
    const up = await upstream(dir, 'u', (req, res) => {
      req.resume()
      req.on('end', () => res.end('ok'))
    })
    const {proxy, port} = await proxyFor([up.path], {bodyLimitBytes: 1000, maxBufferedBytes: 1500, requestTimeoutMs: 60_000})
    // One client holds 1,000 bytes of the 1,500 (it declared 1,000 and sent 10).
    const holder = raw(port, '127.0.0.1', (s) => s.write(head(1000) + 'x'.repeat(10)))
    while (proxy.stats().bufferedBytes === 0) await new Promise((r) => setTimeout(r, 10))
    const refused = await call(port, 'POST', '/v1/chat/completions', Buffer.alloc(600))
    expect(refused.status).toBe(429)
    expect(refused.headers['retry-after']).toBe('1')
    expect(JSON.parse(refused.body).error.code).toBe('PROXY_BUSY')
    expect((await call(port, 'POST', '/v1/chat/completions', Buffer.alloc(400))).status).toBe(200) // fits
    expect(proxy.stats()).toMatchObject({refusedBodies: 1})
    holder.socket.destroy()
    await holder.answer
    expect((await call(port, 'POST', '/v1/chat/completions', Buffer.alloc(600))).status).toBe(200)
    expect(up.hits).toBe(2)
  })

  it('closes connections over maxConnectionsPerClient on accept; another address still gets in', async () => {
    const {dir, cleanup} = tempDir('nle-proxy-perclient-')
    cleanups.push(cleanup)
    const up = await upstream(dir, 'u', (_req, res) => res.end('ok'))
    const {proxy, port} = await proxyFor([up.path], {maxConnectionsPerClient: 3})
    const held = [0, 1, 2].map(() => raw(port, '127.3.0.1', (s) => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n')))
    while (proxy.stats().connections < 3) await new Promise((r) => setTimeout(r, 10))
    const fourth = raw(port, '127.3.0.1', (s) => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))
    expect(await fourth.answer).toBe('') // closed unanswered
    expect(proxy.stats()).toMatchObject({refusedConnections: 1, connections: 3})
    const other = raw(port, '127.3.0.2', (s) => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
    expect(await other.answer).toMatch(/^HTTP\/1\.1 200/)
    for (const h of held) h.socket.destroy()
  })

  it('slow clients: unfinished headers and unfinished bodies are answered 408 and closed; oversized headers 431', async () => {
    const {dir, cleanup} = tempDir('nle-proxy-slow-')
    cleanups.push(cleanup)
    const up = await upstream(dir, 'u', (_req, res) => res.end('ok'))
    const {proxy, port} = await proxyFor([up.path], {headersTimeoutMs: 300, requestTimeoutMs: 600})
    const slowHeaders = raw(port, '127.0.0.1', (s) => s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty'))
    const slowBody = raw(port, '127.0.0.1', (s) => s.write(head(100) + 'x'.repeat(50)))
    const huge = raw(port, '127.0.0.1', (s) => s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`))
    expect(await slowHeaders.answer).toMatch(/^HTTP\/1\.1 408/)
    expect(await slowBody.answer).toMatch(/^HTTP\/1\.1 408/)
    expect(await huge.answer).toMatch(/^HTTP\/1\.1 431/)
    expect(up.hits).toBe(0)
    // Nothing is left held (the proxy's side of a close may follow the client's by a tick).
    while (proxy.stats().connections > 0) await new Promise((r) => setTimeout(r, 10))
    expect(proxy.stats().bufferedBytes).toBe(0)
  })
})
