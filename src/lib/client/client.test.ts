// The client against a hostile proxy (a fake on a Unix socket): it serves a genuine attestation, then
// stalls, trickles or floods the answer. Each case must end in a typed error, never a hang, and
// never hold more than the limits in memory. Small limits through the options; no timing asserted.
import {createHash} from 'node:crypto'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {ServerKeyRing} from '../channel/index.js'
import {tempDir} from '../../test-support/tmp.js'
import {EnclaveServer} from '../server/app.js'
import {echoChat} from '../server/chat.js'
import {expectCode} from '../../test-support/rejection.js'
import type {AttestationEvent} from './client.js'
import {NleClient, type NleClientOptions} from './index.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const PCRS = {PCR0: digest('a'), PCR1: digest('b'), PCR2: digest('c')}

type Behaviour = (req: IncomingMessage, res: ServerResponse, closed: Promise<void>) => void | Promise<void>

let dir: string
let cleanup: () => void
let nsm: NsmSimulator
let ring: ServerKeyRing
let hostile: Server
let socket: string
let behaviour: Behaviour = () => undefined
let attestationBehaviour: Behaviour | null = null
/** Resolves when the fake's latest response was closed by the client before it ended (a limit hit closes it). */
let cutByClient: Promise<void> = Promise.resolve()
const clients: NleClient[] = []

const every = (ms: number, res: ServerResponse, write: () => void): void => {
  const timer = setInterval(() => (res.writableEnded || res.destroyed ? clearInterval(timer) : write()), ms)
  res.on('close', () => clearInterval(timer))
}

beforeAll(async () => {
  ;({dir, cleanup} = tempDir())
  nsm = new NsmSimulator({measurements: PCRS})
  ring = await ServerKeyRing.create()
  socket = join(dir, 'hostile.sock')
  hostile = createServer((req, res) => {
    const closed = new Promise<void>((resolve) => res.on('close', () => resolve()))
    cutByClient = new Promise<void>((resolve) => res.on('close', () => (res.writableEnded ? undefined : resolve())))
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/v1/attestation') {
      if (attestationBehaviour) return void attestationBehaviour(req, res, closed)
      void (async () => {
        const document = await nsm.attestation({nonce: new Uint8Array(Buffer.from(url.searchParams.get('nonce') ?? '', 'hex')), publicKey: await ring.keyConfig()})
        res.writeHead(200, {'content-type': 'application/cbor', 'content-length': document.length}).end(document)
      })()
      return
    }
    req.resume()
    req.on('end', () => void behaviour(req, res, closed))
  })
  await new Promise<void>((resolve) => hostile.listen(socket, () => resolve()))
})

afterAll(async () => {
  for (const c of clients) c.close()
  hostile.closeAllConnections()
  await new Promise<void>((resolve) => hostile.close(() => resolve()))
  cleanup()
})

function client(extra: Partial<NleClientOptions> = {}, target = `unix:${socket}`): NleClient {
  const c = new NleClient({target, expectedPcrs: PCRS, insecureDevRoot: nsm.root, idleTimeoutMs: 300, deadlineMs: 60_000, maxEventBytes: 4096, maxResponseBytes: 8192, ...extra})
  clients.push(c)
  return c
}

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of it) n++
  return n
}

const question = {messages: [{role: 'user' as const, content: 'q'}]}
const sse = (res: ServerResponse): void => void res.writeHead(200, {'content-type': 'text/event-stream'}).flushHeaders()
const NONCE = `event: nonce\ndata: ${Buffer.alloc(32, 7).toString('base64')}\n\n`

describe('client limits against a hostile proxy', () => {
  it('headers, then nothing: CLIENT_UPSTREAM_TIMEOUT (idle), connection closed', async () => {
    behaviour = (_req, res) => sse(res)
    await expect(drain(client().chatStream(question))).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
    await cutByClient
    behaviour = (_req, res) => void res.writeHead(200, {'content-type': 'application/nle-sealed-response', 'content-length': 5000}).flushHeaders()
    await expect(client().chat(question)).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
    await cutByClient
  })

  it('an error status whose body stalls or floods: CLIENT_UPSTREAM_TIMEOUT (idle), for the attestation, a chat and a 421 retry', async () => {
    const stall: Behaviour = (_req, res) => void res.writeHead(503, {'content-type': 'application/json', 'content-length': 1000}).flushHeaders()
    attestationBehaviour = stall
    await expect(client().attest()).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
    attestationBehaviour = null
    for (const status of [500, 421]) {
      behaviour = (_req, res) => void res.writeHead(status, {'content-type': 'application/json', 'content-length': 1000}).flushHeaders()
      await expect(client().chat(question), String(status)).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
      await cutByClient
    }
    // A flood behind an error status is read to 64 KiB at most, then refused like any garbage.
    behaviour = (_req, res) => {
      res.writeHead(500, {'content-type': 'application/json'})
      every(1, res, () => res.write(Buffer.alloc(16 * 1024, 0x61)))
    }
    await expect(client().chat(question)).rejects.toMatchObject({code: 'CLIENT_RESPONSE_TOO_LARGE'})
    await cutByClient
  })

  it('no headers at all: CLIENT_UPSTREAM_TIMEOUT (headers)', async () => {
    behaviour = () => undefined // holds the request open, says nothing
    await expect(client({timeoutMs: 300}).chat(question)).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'headers'}})
  })

  it('a trickle of one byte at a time is not progress: CLIENT_UPSTREAM_TIMEOUT (idle), whole and streamed, attestation too', async () => {
    let sent = 0
    behaviour = (req, res) => {
      if ((req.headers.accept ?? '').includes('event-stream')) {
        sse(res)
        res.write(NONCE)
        every(10, res, () => res.write('A', () => sent++))
      } else {
        res.writeHead(200, {'content-type': 'application/nle-sealed-response', 'content-length': 4000})
        every(10, res, () => res.write('A', () => sent++))
      }
    }
    await expect(drain(client().chatStream(question))).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
    await expect(client().chat(question)).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
    attestationBehaviour = (_req, res) => {
      res.writeHead(200, {'content-type': 'application/cbor', 'content-length': 4000})
      every(10, res, () => res.write('A'))
    }
    try {
      await expect(client().attest()).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
    } finally {
      attestationBehaviour = null
    }
    console.log(`trickled bytes before the client gave up: ${sent}`)
    expect(sent).toBeGreaterThan(0)
  })

  it('an endless SSE event: CLIENT_RESPONSE_TOO_LARGE once it passes maxEventBytes', async () => {
    let written = 0
    behaviour = (_req, res) => {
      sse(res)
      res.write(NONCE)
      res.write('data: ')
      const flood = (): void => {
        // As fast as the socket takes it, never a blank line.
        while (!res.destroyed && res.write(Buffer.alloc(1024, 0x41))) written += 1024
        if (!res.destroyed) res.once('drain', flood)
      }
      flood()
    }
    await expect(drain(client().chatStream(question))).rejects.toMatchObject({code: 'CLIENT_RESPONSE_TOO_LARGE', details: {what: 'event', limit: 4096}})
    await cutByClient
    console.log(`endless event: the fake wrote ${written} bytes into the socket before the client closed it`)
  })

  it('endless events: a flood of garbage chunks ends at the first (CHANNEL_RESPONSE_AUTH_FAILED), of empty events at once (CLIENT_PROTOCOL), of keep-alive comments at the idle limit', async () => {
    let events = 0
    behaviour = (_req, res) => {
      sse(res)
      res.write(NONCE)
      every(1, res, () => {
        events++
        res.write(`data: ${Buffer.alloc(64, events).toString('base64')}\n\n`)
      })
    }
    await expect(drain(client().chatStream(question))).rejects.toMatchObject({code: 'CHANNEL_RESPONSE_AUTH_FAILED'})
    behaviour = (_req, res) => {
      sse(res)
      every(1, res, () => res.write('data:\n\n'))
    }
    await expect(drain(client().chatStream(question))).rejects.toMatchObject({code: 'CLIENT_PROTOCOL'})
    // Comments are SSE keep-alives: not progress, so a flood of them ends at the idle limit.
    behaviour = (_req, res) => {
      sse(res)
      res.write(NONCE)
      every(1, res, () => res.write(': keep-alive\r\n\r\n'))
    }
    await expect(drain(client().chatStream(question))).rejects.toMatchObject({code: 'CLIENT_UPSTREAM_TIMEOUT', details: {phase: 'idle'}})
  })

  it('a whole answer larger than maxResponseBytes: CLIENT_RESPONSE_TOO_LARGE', async () => {
    behaviour = (_req, res) => {
      res.writeHead(200, {'content-type': 'application/nle-sealed-response'})
      every(1, res, () => res.write(Buffer.alloc(4096)))
    }
    await expect(client().chat(question)).rejects.toMatchObject({code: 'CLIENT_RESPONSE_TOO_LARGE', details: {what: 'body', limit: 8192}})
  })

  it('a genuine stream longer than the deadline: CLIENT_UPSTREAM_TIMEOUT (deadline); the same within limits completes', async () => {
    // A real enclave server, slow on purpose: 400 words at 5 ms each take two seconds at the least.
    const realSocket = join(dir, 'real.sock')
    const real = new EnclaveServer({chat: echoChat({tokenDelayMs: 5}), nsm, keyRing: ring, defaults: {maxTokens: 1000, sampling: {temperature: 0, topP: 1, topK: 0}}})
    await real.listen(realSocket)
    try {
      const long = {messages: [{role: 'user' as const, content: Array.from({length: 400}, (_, i) => `w${i}`).join(' ')}], max_tokens: 1000}
      await expect(drain(client({deadlineMs: 300, idleTimeoutMs: 30_000}, `unix:${realSocket}`).chatStream(long))).rejects.toMatchObject({
        code: 'CLIENT_UPSTREAM_TIMEOUT',
        details: {phase: 'deadline'},
      })
      expect(await drain(client({idleTimeoutMs: 30_000}, `unix:${realSocket}`).chatStream({messages: [{role: 'user', content: 'short'}]}))).toBeGreaterThan(2)
    } finally {
      await real.drain(1000)
    }
  })
})

describe('client attestation events', () => {
  it('fires on the first attestation and on each re-attestation (asked for, after a 421), before the call settles; a failure with its code; unsubscribe stops it', async () => {
    const c = client()
    const events: (AttestationEvent & {settled: boolean})[] = []
    let settled = false
    const unsubscribe = c.onAttestation((e) => events.push({...e, settled}))
    c.onAttestation(() => {
      throw new Error('a faulty listener') // changes nothing of the outcome
    })
    const first = await c.attest().finally(() => (settled = true))
    expect(events).toEqual([{ok: true, cause: 'initial', attestation: first, settled: false}])
    expect(await c.attest()).toBe(first) // the session is reused: no attestation, no event
    expect(events).toHaveLength(1)

    settled = false
    const fresh = await c.attest({fresh: true}).finally(() => (settled = true))
    expect(fresh).not.toBe(first)
    expect(events[1]).toEqual({ok: true, cause: 'requested', attestation: fresh, settled: false})

    // The enclave no longer holds the key (421): the client re-attests by itself and retries once.
    let posts = 0
    behaviour = (_req, res) => {
      posts++
      const body = JSON.stringify({error: {code: posts === 1 ? 'CHANNEL_UNKNOWN_KEY' : 'SERVER_UNAVAILABLE'}})
      res.writeHead(posts === 1 ? 421 : 503, {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)}).end(body)
    }
    await expectCode(c.chat(question), 'CLIENT_ENCLAVE_UNAVAILABLE')
    expect(posts).toBe(2)
    expect(events[2]).toMatchObject({ok: true, cause: 'rotated'})

    unsubscribe()
    await c.attest({fresh: true})
    expect(events).toHaveLength(3)

    // A document that does not verify: the failure comes with its code.
    const wrong = client({expectedPcrs: {...PCRS, PCR0: digest('another image')}})
    const failures: AttestationEvent[] = []
    wrong.onAttestation((e) => failures.push(e))
    await expectCode(wrong.attest(), 'ATTEST_PCR_MISMATCH')
    expect(failures).toEqual([{ok: false, cause: 'initial', code: 'ATTEST_PCR_MISMATCH', error: expect.objectContaining({code: 'ATTEST_PCR_MISMATCH'})}])
  })
})
