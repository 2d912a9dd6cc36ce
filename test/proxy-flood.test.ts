// The parent proxy against hostile clients, as the network would send them: 1,000 TLS clients
// from 250 loopback addresses (127.1.x.y), some sending 1 MiB bodies they never finish, some
// never finishing their headers. The proxy runs as its own process (runtime/parent-proxy, built
// dist/), in front of a fake enclave socket; its RSS is read from /proc. No assertion on time.
import {once} from 'node:events'
import {readFileSync} from 'node:fs'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {connect as netConnect} from 'node:net'
import {join} from 'node:path'
import {type TLSSocket, connect as tlsConnect} from 'node:tls'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {tempDir} from '../src/test-support/tmp.js'
import {type Child, startRuntime} from './e2e-support.js'

const CLIENTS = Number(process.env.FLOOD_CLIENTS ?? 1000)
const ADDRESSES = 250
const BODY = 1024 * 1024

let dir: string
let cleanup: () => void
let upstream: Server
let proxy: Child
let port: number
let ca: string
let enclaveHits = 0

/** VmRSS and VmHWM (peak) of a process, in MiB. */
function memory(pid: number): {rss: number; peak: number} {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return {rss: Math.round(kib('VmRSS') / 1024), peak: Math.round(kib('VmHWM') / 1024)}
}

const address = (i: number): string => `127.1.${Math.floor((i % ADDRESSES) / 250)}.${(i % ADDRESSES) % 250 + 1}`

/** A well-behaved request; resolves with the status and the error code, or the network error. */
function legit(from: string): Promise<{status: number; code?: string} | {error: string}> {
  return new Promise((resolve) => {
    const req = httpsRequest({host: '127.0.0.1', port, localAddress: from, method: 'POST', path: '/v1/chat/completions', ca, agent: false, headers: {'content-type': 'application/nle-sealed-request'}}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => {
        const text = Buffer.concat(parts).toString()
        resolve({status: res.statusCode ?? 0, ...(text.startsWith('{"error"') ? {code: (JSON.parse(text) as {error: {code: string}}).error.code} : {})})
      })
    })
    req.on('error', (e: NodeJS.ErrnoException) => resolve({error: e.code ?? e.message}))
    req.end('sealed')
  })
}

interface Hostile {
  socket: TLSSocket
  /** The status of the proxy's answer ('429', '408'), or 'none' (closed without one). */
  answer: string
  /** Resolves once this client did all it will do: its bytes were taken, or the proxy closed it. */
  settled: Promise<void>
  closed: Promise<void>
}

/** A client that sends the head of a 1 MiB POST and all but one byte of the body — or only half a header. */
function hostile(i: number, kind: 'body' | 'headers', body: Buffer): Hostile {
  const raw = netConnect({host: '127.0.0.1', port, localAddress: address(i)})
  raw.on('error', () => undefined)
  const socket = tlsConnect({socket: raw, ca, servername: 'localhost'})
  socket.on('error', () => undefined)
  const h = {answer: 'none'} as Hostile
  // Read what the proxy answers (a 408, a 429): that is also how its FIN is seen and 'close' follows.
  socket.on('data', (d: Buffer) => {
    if (h.answer === 'none') h.answer = /^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1] ?? 'other'
  })
  // (Not events.once: it rejects on 'error', and a refused client sees EPIPE/ECONNRESET before 'close'.)
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const settled = new Promise<void>((resolve) => {
    void closed.then(resolve)
    socket.once('secureConnect', () => {
      if (kind === 'headers') {
        socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/nle-sea', () => resolve())
        return
      }
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/nle-sealed-request\r\nContent-Length: ${BODY}\r\n\r\n`)
      socket.write(body, () => resolve())
    })
  })
  return Object.assign(h, {socket, settled, closed})
}

beforeAll(async () => {
  ;({dir, cleanup} = tempDir('nle-proxy-flood-'))
  upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    enclaveHits++
    req.resume()
    req.on('end', () => res.writeHead(200, {'content-type': 'application/json'}).end('{"ok":true}'))
  })
  upstream.listen(join(dir, 'enclave.sock'))
  await once(upstream, 'listening')
  proxy = startRuntime('parent-proxy', [
    '--upstream', `unix:${join(dir, 'enclave.sock')}`,
    '--self-signed', join(dir, 'tls'),
    '--host', '127.0.0.1',
    '--port', '0',
    // Short header and body deadlines, so the test sees the proxy end slow clients (defaults: 10 s / 30 s).
    '--headers-timeout', '1500ms',
    '--request-timeout', '3s',
  ])
  const listening = await proxy.waitFor('listening')
  port = Number(String(listening.https).split(':').pop())
  ca = readFileSync(join(dir, 'tls', 'cert.pem'), 'utf8')
}, 60_000)

afterAll(async () => {
  if (proxy && proxy.proc.exitCode === null) proxy.proc.kill('SIGKILL')
  upstream?.closeAllConnections()
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()))
  cleanup?.()
})

describe('parent proxy under a flood of slow clients', () => {
  it(`${CLIENTS} TLS clients holding unfinished bodies and headers: bounded RSS, typed refusals, slow clients cut, service resumes`, async () => {
    for (let i = 0; i < 5; i++) expect(await legit('127.0.0.1')).toEqual({status: 200})
    const before = memory(proxy.pid)
    const hitsBefore = enclaveHits

    const body = Buffer.alloc(BODY - 1, 0x61)
    const clients: Hostile[] = []
    for (let i = 0; i < CLIENTS; i++) clients.push(hostile(i, i % 4 === 3 ? 'headers' : 'body', body))
    await Promise.all(clients.map((c) => c.settled))
    const during = memory(proxy.pid)
    const hitsDuring = enclaveHits
    const open = clients.filter((c) => !c.socket.destroyed).length

    // A client from an address of its own, while the flood holds: an answer or a typed refusal, never a hang.
    const meanwhile = await legit('127.2.0.1')

    // The header and body deadlines end every hostile client; then the proxy serves normally again.
    await Promise.all(clients.map((c) => c.closed))
    const after = memory(proxy.pid)
    const answers: Record<string, number> = {}
    for (const c of clients) answers[c.answer] = (answers[c.answer] ?? 0) + 1
    const served = await legit('127.2.0.2')

    proxy.proc.kill('SIGTERM')
    const drained = await proxy.waitFor('drained')
    console.log(
      `[flood] the proxy counted: ${JSON.stringify(drained)}`,
    )
    console.log(
      `[flood] proxy RSS: before ${before.rss} MiB; with ${CLIENTS} slow clients ${during.rss} MiB (peak ${during.peak} MiB, +${during.peak - before.rss} MiB); ` +
        `after they were cut ${after.rss} MiB; ${open} of ${CLIENTS} connections still open when all had settled; meanwhile a new client got ${JSON.stringify(meanwhile)}; the hostile clients got ${JSON.stringify(answers)} (none = closed on accept or mid-handshake)`,
    )
    // Unfinished bodies never reach the enclave.
    expect(hitsDuring - hitsBefore).toBe(0)
    // Generous: 1,000 × 1 MiB bodies buffered would be ~1 GiB; the limits keep it to tens of MiB.
    expect(during.peak - before.rss).toBeLessThan(160)
    expect('error' in meanwhile || meanwhile.status === 200 || meanwhile.code === 'PROXY_BUSY').toBe(true)
    expect(served).toEqual({status: 200})
    // Only ever: a refused body (429; its answer may be lost to the reset of a connection closed
    // while the client still sends), slow headers or bodies cut (408), or a connection closed over
    // the caps or mid-handshake. Some of the slow ones always reach the deadlines.
    expect(Object.keys(answers).filter((a) => !['408', '429', 'none'].includes(a))).toEqual([])
    expect(answers['408']).toBeGreaterThan(0)
  }, 180_000)
})
