import {createCipheriv, createDecipheriv, createHash, randomBytes} from 'node:crypto'
import {request} from 'node:http'
import {type Socket, connect, createServer} from 'node:net'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {ServerKeyRing, decodeKeyConfig, sealRequest} from '../channel/index.js'
import {channelError} from '../channel/errors.js'
import {KmsRequestOpener, type UnwrapDataKey, type WrapDataKey, sealKmsRequest} from '../channel/kms-request.js'
import {NleClient} from '../client/index.js'
import {tempDir} from '../../test-support/tmp.js'
import {EnclaveServer} from './app.js'
import {type ChatEngine, echoChat, parseChatRequest} from './chat.js'
import {serverError} from './errors.js'
import {limitUnwrap} from './kms-mode.js'
import {rng as prng} from '../../test-support/rng.js'
import {KMS_REQUEST_TYPE} from '../protocol/routes.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const PCRS = {PCR0: digest('a'), PCR1: digest('b'), PCR2: digest('c')}
const DEFAULTS = {maxTokens: 64, sampling: {temperature: 0, topP: 1, topK: 0}}

let dir: string
let cleanup: () => void
let socket: string
let server: EnclaveServer
let keyRing: ServerKeyRing
let client: NleClient
const logs: string[] = []
let failNext = false
let nsm: NsmSimulator

const echo = echoChat()
const flaky: ChatEngine = {
  model: 'flaky',
  async *stream(messages, options) {
    if (failNext) {
      failNext = false
      yield {text: 'partial '}
      throw serverError('SERVER_GENERATION_FAILED', 'boom')
    }
    // Scripted answers for the wire-size comparisons: none at all, or the same one token as above.
    const last = messages.at(-1)?.content
    if (last === 'EMPTY') return {finishReason: 'stop', promptTokens: 1, completionTokens: 0}
    if (last === 'ONE') {
      yield {text: 'partial '}
      return {finishReason: 'stop', promptTokens: 1, completionTokens: 1}
    }
    return yield* echo.stream(messages, options)
  },
  close: async () => {},
}

beforeAll(async () => {
  ;({dir, cleanup} = tempDir())
  socket = join(dir, 'enclave.sock')
  nsm = new NsmSimulator({measurements: PCRS})
  keyRing = await ServerKeyRing.create({graceMs: 0})
  server = new EnclaveServer({chat: flaky, nsm, keyRing, defaults: DEFAULTS, logger: {log: (level, event, fields) => logs.push(JSON.stringify({level, event, ...fields}))}})
  await server.listen(socket)
  client = new NleClient({target: `unix:${socket}`, expectedPcrs: PCRS, insecureDevRoot: nsm.root})
})

afterAll(async () => {
  client.close()
  await server.drain(1000)
  cleanup()
})

function post(body: Uint8Array, type = 'application/nle-sealed-request', socketPath = socket, accept?: string): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const headers = {'content-type': type, 'content-length': body.length, ...(accept === undefined ? {} : {accept})}
    const req = request({socketPath, method: 'POST', path: '/v1/chat/completions', headers}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(parts).toString()}))
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('enclave server', () => {
  it('answers whole and streamed, sealed end to end, and logs no content', async () => {
    const whole = await client.chat({messages: [{role: 'user', content: 'whole CANARY-1'}]})
    expect(whole.choices[0]!.message.content).toBe('Echo: whole CANARY-1')
    expect(whole.usage.completion_tokens).toBe(3)
    let text = ''
    let finish: string | null = null
    for await (const chunk of client.chatStream({messages: [{role: 'user', content: 'streamed CANARY-2'}]})) {
      text += chunk.choices[0]!.delta.content ?? ''
      finish = chunk.choices[0]!.finish_reason ?? finish
    }
    expect(text).toBe('Echo: streamed CANARY-2')
    expect(finish).toBe('stop')
    expect(logs.join('\n')).not.toContain('CANARY')
  })

  it('refuses a replayed request and an unsealed one, in clear, without content', async () => {
    const config = decodeKeyConfig(await keyRing.keyConfig())
    const sealed = await sealRequest(config, new TextEncoder().encode(JSON.stringify({messages: [{role: 'user', content: 'x'}]})))
    expect((await post(sealed.message)).status).toBe(200)
    const again = await post(sealed.message)
    expect(again.status).toBe(400)
    expect(JSON.parse(again.body).error.code).toBe('CHANNEL_REPLAY')
    expect((await post(new TextEncoder().encode('{"messages":[]}'), 'application/json')).status).toBe(415)
  })

  it('generates only the framing sealed into the request: a host that rewrites Accept gets an error stream, not the tokens', async () => {
    const config = decodeKeyConfig(await keyRing.keyConfig())
    const events = async (body: object): Promise<number> => {
      const sealed = await sealRequest(config, new TextEncoder().encode(JSON.stringify(body)))
      const r = await post(sealed.message, 'application/nle-sealed-request', socket, 'text/event-stream')
      expect(r.status).toBe(200)
      return r.body.split('\n').filter((l) => l.startsWith('data:')).length
    }
    const question = {messages: [{role: 'user', content: 'one two three four five'}]}
    const answer = await events({...question, stream: true})
    const flipped = await events(question)
    const error = await events({messages: [], stream: true})
    expect(answer).toBeGreaterThan(error)
    expect(flipped).toBe(error)
  })

  it('seals request errors and generation failures', async () => {
    await expect(client.chat({messages: []})).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_BAD_REQUEST'}})
    // Streamed, the error follows the role chunk on the wire; the caller gets it before any chunk.
    const before: unknown[] = []
    await expect(
      (async () => {
        for await (const c of client.chatStream({messages: []})) before.push(c)
      })(),
    ).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_BAD_REQUEST'}})
    expect(before).toEqual([])
    failNext = true
    const seen: string[] = []
    await expect(
      (async () => {
        for await (const c of client.chatStream({messages: [{role: 'user', content: 'q'}]})) seen.push(c.choices[0]!.delta.content ?? '')
      })(),
    ).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_GENERATION_FAILED'}})
    expect(seen).toContain('partial ')
  })

  it('re-attests transparently when the key is gone', async () => {
    await client.chat({messages: [{role: 'user', content: 'before'}]})
    await keyRing.rotate()
    await keyRing.rotate() // grace 0: the key the client holds is forgotten
    const r = await client.chat({messages: [{role: 'user', content: 'after'}]})
    expect(r.choices[0]!.message.content).toBe('Echo: after')
  })

  it('serves content-free health and metrics', async () => {
    const get = (path: string): Promise<string> =>
      new Promise((resolve) => request({socketPath: socket, path}, (res) => {
        let s = ''
        res.on('data', (d: Buffer) => (s += d))
        res.on('end', () => resolve(s))
      }).end())
    expect(JSON.parse(await get('/healthz'))).toMatchObject({status: 'ok', model: 'flaky'})
    const metrics = await get('/metrics')
    expect(metrics).toContain('nle_server_channel_errors_total{code="CHANNEL_REPLAY"} 1')
    expect(metrics).not.toContain('CANARY')
  })

  it('/metrics answers without the batch counts when the engine cannot give them; a queue of 0 still serves a free slot', async () => {
    const path = join(dir, 'stuck.sock')
    const stuck: ChatEngine = {...echoChat(), stats: () => new Promise(() => undefined)}
    const other = new EnclaveServer({chat: stuck, nsm, keyRing, defaults: DEFAULTS, generation: {concurrency: 1, queue: 0}})
    await other.listen(path)
    const c = new NleClient({target: `unix:${path}`, expectedPcrs: PCRS, insecureDevRoot: nsm.root})
    try {
      expect((await c.chat({messages: [{role: 'user', content: 'hi'}]})).choices[0]!.message.content).toBe('Echo: hi')
      const metrics = await new Promise<string>((resolve) =>
        request({socketPath: path, path: '/metrics'}, (res) => {
          let text = ''
          res.on('data', (d: Buffer) => (text += d))
          res.on('end', () => resolve(text))
        }).end(),
      )
      expect(metrics).toContain('nle_server_generation_slots 1\n')
      expect(metrics).not.toContain('nle_server_batch_active')
    } finally {
      c.close()
      await other.drain(1000)
    }
  })

  it('bounds a request by the runtime defaults', () => {
    const body = new TextEncoder().encode(JSON.stringify({messages: [{role: 'user', content: 'q'}], max_tokens: 9999, stop: 'x'}))
    expect(parseChatRequest(body, DEFAULTS).options).toMatchObject({maxTokens: 64, stop: ['x'], temperature: 0})
    expect(() => parseChatRequest(new TextEncoder().encode('{'), DEFAULTS)).toThrow(expect.objectContaining({code: 'SERVER_BAD_REQUEST'}))
  })
})

/** A stand-in for KMS: AES-GCM under a master key, the encryption context as AAD; counts Decrypt calls. */
function fakeKms(): {wrap: WrapDataKey; unwrap: UnwrapDataKey; calls: number} {
  const master = randomBytes(32)
  const aad = (ec: Record<string, string>): Buffer => Buffer.from(JSON.stringify(Object.entries(ec).sort()))
  const kms = {
    calls: 0,
    async wrap(key: Uint8Array, ec: Record<string, string>) {
      const iv = randomBytes(12)
      const c = createCipheriv('aes-256-gcm', master, iv).setAAD(aad(ec))
      return new Uint8Array(Buffer.concat([iv, c.update(key), c.final(), c.getAuthTag()]))
    },
    async unwrap(blob: Uint8Array, ec: Record<string, string>) {
      kms.calls++
      const b = Buffer.from(blob)
      try {
        const d = createDecipheriv('aes-256-gcm', master, b.subarray(0, 12)).setAAD(aad(ec))
        d.setAuthTag(b.subarray(b.length - 16))
        return new Uint8Array(Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]))
      } catch (cause) {
        throw channelError('CHANNEL_KMS_REJECTED', 'InvalidCiphertextException', {cause})
      }
    },
  }
  return kms
}


describe('KMS mode under a flood', () => {
  it('garbage never reaches KMS unparsed, and what passes the free checks is rate-limited before KMS', async () => {
    const kms = fakeKms()
    let now = Date.now() // then frozen: the bucket refills only when the test says so
    const ring = await ServerKeyRing.create({now: () => now})
    const config = decodeKeyConfig(await ring.keyConfig())
    const limited = limitUnwrap(kms.unwrap, {perSecond: 1, burst: 5, concurrency: 2, now: () => now})
    const kmsSocket = join(dir, 'kms.sock')
    const kmsServer = new EnclaveServer({chat: echo, nsm, keyRing: ring, kms: new KmsRequestOpener({keys: ring, unwrap: limited, now: () => now}), defaults: DEFAULTS})
    await kmsServer.listen(kmsSocket)
    try {
      const rnd = prng(20)
      const bytes = (n: number): Uint8Array => Uint8Array.from({length: n}, () => Math.floor(rnd() * 256))
      const valid = (await sealKmsRequest(config, new TextEncoder().encode('{"messages":[{"role":"user","content":"x"}]}'), kms.wrap, {now})).message
      const flood: {kind: string; body: Uint8Array}[] = []
      for (let i = 0; i < 500; i++) {
        const kind = ['random', 'framed', 'framed', 'mutated', 'mutated'][i % 5]!
        let body: Uint8Array
        if (kind === 'random') body = bytes(Math.floor(rnd() * 2000))
        else if (kind === 'mutated') {
          body = new Uint8Array(valid)
          for (let k = 0; k <= Math.floor(rnd() * 3); k++) body[Math.floor(rnd() * body.length)]! ^= 1 + Math.floor(rnd() * 255)
        } else {
          // What anyone can make from the public key configuration: right framing, a fresh id, the
          // current time, the attested key id; the wrapped key and the ciphertext are noise.
          body = new Uint8Array(valid)
          body.set(bytes(16), 3)
          body.set(bytes(body.length - 29), 29)
        }
        flood.push({kind, body})
      }
      const reached: Record<string, number> = {random: 0, framed: 0, mutated: 0}
      const statuses: Record<number, number> = {}
      for (const {kind, body} of flood) {
        const before = kms.calls
        const {status} = await post(body, KMS_REQUEST_TYPE, kmsSocket)
        statuses[status] = (statuses[status] ?? 0) + 1
        reached[kind]! += kms.calls - before
      }
      // The same flood without the rate limit: what the free checks alone keep from KMS.
      const unlimited = fakeKms()
      const bare = new KmsRequestOpener({keys: ring, unwrap: unlimited.unwrap, now: () => now})
      for (const {body} of flood) await bare.open(body).catch(() => undefined)
      console.log(`KMS calls for ${flood.length} garbage requests: ${kms.calls} (by kind ${JSON.stringify(reached)}; statuses ${JSON.stringify(statuses)}); free checks alone: ${unlimited.calls}`)
      expect(reached.random).toBe(0)
      expect(kms.calls).toBeLessThanOrEqual(5)
      expect(unlimited.calls).toBeLessThan(250)
      expect(statuses[429]).toBeGreaterThan(0)
      // A genuine client is told to wait (429, CLIENT_RATE_LIMITED), and served once the bucket refills.
      const client = new NleClient({target: `unix:${kmsSocket}`, expectedPcrs: PCRS, insecureDevRoot: nsm.root, kms: {wrap: kms.wrap}})
      try {
        await expect(client.chat({messages: [{role: 'user', content: 'after the flood'}]})).rejects.toMatchObject({code: 'CLIENT_RATE_LIMITED'})
        now += 1000
        expect((await client.chat({messages: [{role: 'user', content: 'after the flood'}]})).choices[0]!.message.content).toBe('Echo: after the flood')
      } finally {
        client.close()
      }
    } finally {
      await kmsServer.drain(1000)
    }
  })
})

describe('what the host sees of an answer and of an error', () => {
  /** A relay that counts the bytes the enclave sends back and keeps the response heads. */
  async function tap(): Promise<{target: string; take(): {bytes: number; type: string}; close(): void}> {
    const path = join(dir, `tap-${randomBytes(4).toString('hex')}.sock`)
    let seen: Buffer[] = []
    const sockets = new Set<Socket>()
    const relay = createServer((down) => {
      const up = connect(socket)
      sockets.add(down).add(up)
      down.pipe(up)
      up.on('data', (d: Buffer) => {
        seen.push(d)
        down.write(d)
      })
      up.on('close', () => down.destroy())
      down.on('close', () => up.destroy())
    })
    await new Promise<void>((resolve) => relay.listen(path, () => resolve()))
    return {
      target: `unix:${path}`,
      take() {
        const all = Buffer.concat(seen).toString('latin1')
        seen = []
        return {bytes: all.length, type: /content-type: ([^\r]+)/i.exec(all)?.[1] ?? ''}
      },
      close() {
        for (const s of sockets) s.destroy()
        relay.close()
      },
    }
  }

  it('an error leaves in the content type and padded size of an answer of its length, whole and streamed', async () => {
    const t = await tap()
    const c = new NleClient({target: t.target, expectedPcrs: PCRS, insecureDevRoot: nsm.root})
    try {
      await c.attest()
      t.take()
      const drain = async (it: AsyncIterable<unknown>): Promise<void> => {
        for await (const _ of it) void _
      }
      const sizes: Record<string, {bytes: number; type: string}> = {}
      await c.chat({messages: [{role: 'user', content: 'hi'}]})
      sizes.wholeAnswer = t.take()
      await expect(c.chat({messages: []})).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_BAD_REQUEST'}})
      sizes.wholeError = t.take()
      await drain(c.chatStream({messages: [{role: 'user', content: 'EMPTY'}]}))
      sizes.streamEmptyAnswer = t.take()
      await expect(drain(c.chatStream({messages: []}))).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_BAD_REQUEST'}})
      sizes.streamError = t.take()
      await drain(c.chatStream({messages: [{role: 'user', content: 'ONE'}]}))
      sizes.streamOneToken = t.take()
      failNext = true
      await expect(drain(c.chatStream({messages: [{role: 'user', content: 'q'}]}))).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_GENERATION_FAILED'}})
      sizes.streamFailedAfterOneToken = t.take()
      console.log(`wire bytes (host side, headers included): ${JSON.stringify(sizes)}`)
      expect(sizes.wholeError).toEqual(sizes.wholeAnswer)
      expect(sizes.streamError).toEqual(sizes.streamEmptyAnswer)
      expect(sizes.streamFailedAfterOneToken).toEqual(sizes.streamOneToken)
      expect(sizes.streamError!.type).toBe('text/event-stream')
    } finally {
      c.close()
      t.close()
    }
  })
})
