import {createHash} from 'node:crypto'
import {request} from 'node:http'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {ServerKeyRing, decodeKeyConfig, sealRequest} from '../channel/index.js'
import {NleClient} from '../client/index.js'
import {tempDir} from '../../test-support/tmp.js'
import {EnclaveServer} from './app.js'
import {type ChatEngine, echoChat, parseChatRequest} from './chat.js'
import {serverError} from './errors.js'

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

const echo = echoChat()
const flaky: ChatEngine = {
  model: 'flaky',
  async *stream(messages, options) {
    if (failNext) {
      failNext = false
      yield {text: 'partial '}
      throw serverError('SERVER_GENERATION_FAILED', 'boom')
    }
    return yield* echo.stream(messages, options)
  },
  close: async () => {},
}

beforeAll(async () => {
  ;({dir, cleanup} = tempDir())
  socket = join(dir, 'enclave.sock')
  const nsm = new NsmSimulator({measurements: PCRS})
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

function post(body: Uint8Array, type = 'application/nle-sealed-request'): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath: socket, method: 'POST', path: '/v1/chat/completions', headers: {'content-type': type, 'content-length': body.length}}, (res) => {
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

  it('seals request errors and generation failures', async () => {
    await expect(client.chat({messages: []})).rejects.toMatchObject({code: 'CLIENT_SERVER_ERROR', details: {serverCode: 'SERVER_BAD_REQUEST'}})
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

  it('bounds a request by the runtime defaults', () => {
    const body = new TextEncoder().encode(JSON.stringify({messages: [{role: 'user', content: 'q'}], max_tokens: 9999, stop: 'x'}))
    expect(parseChatRequest(body, DEFAULTS).options).toMatchObject({maxTokens: 64, stop: ['x'], temperature: 0})
    expect(() => parseChatRequest(new TextEncoder().encode('{'), DEFAULTS)).toThrow(expect.objectContaining({code: 'SERVER_BAD_REQUEST'}))
  })
})
