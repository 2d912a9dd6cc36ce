import {mkdtemp, rm} from 'node:fs/promises'
import {type ServerResponse, createServer, request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {codeOf} from '../../test-support/rejection.js'
import {HttpService} from './service.js'

const services: HttpService[] = []
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()))
})

/** A service whose handler reports each request's response (to be answered by the test). */
function held(): {service: HttpService; next: () => Promise<ServerResponse>} {
  const waiting: ((res: ServerResponse) => void)[] = []
  const arrived: ServerResponse[] = []
  const service = new HttpService(
    createServer((_req, res) => {
      const w = waiting.shift()
      if (w) w(res)
      else arrived.push(res)
    }),
  )
  services.push(service)
  const next = (): Promise<ServerResponse> => {
    const res = arrived.shift()
    return res ? Promise.resolve(res) : new Promise((resolve) => waiting.push(resolve))
  }
  return {service, next}
}

async function listenLoopback(service: HttpService): Promise<number> {
  await service.listen({host: '127.0.0.1', port: 0}, {code: 'SERVER_LISTEN_FAILED'})
  return service.address()!.port
}

/** GET / ; resolves with the status and body, or the error's code when the connection fails. */
function get(port: number): Promise<{status: number; body: string} | {error: string}> {
  return new Promise((resolve) => {
    request({host: '127.0.0.1', port, path: '/', agent: false}, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
      res.on('error', (e: NodeJS.ErrnoException) => resolve({error: e.code ?? e.message}))
    })
      .on('error', (e: NodeJS.ErrnoException) => resolve({error: e.code ?? e.message}))
      .end()
  })
}

describe('HttpService', () => {
  it('drain stops accepting, waits for the request in flight to finish, then closes', async () => {
    const {service, next} = held()
    const port = await listenLoopback(service)
    const answer = get(port)
    const res = await next()
    expect(service.inFlight).toBe(1)
    const drained = service.drain(60_000)
    expect(service.draining).toBe(true)
    // No new connection is accepted while the one in flight goes on.
    expect(await get(port)).toEqual({error: 'ECONNREFUSED'})
    res.writeHead(200).end('done')
    expect(await answer).toEqual({status: 200, body: 'done'})
    expect(await drained).toEqual({forced: false})
    expect(service.inFlight).toBe(0)
  })

  it('drain cuts a request still in flight after its timeout: forced', async () => {
    const {service, next} = held()
    const port = await listenLoopback(service)
    const answer = get(port)
    await next() // never answered
    expect(await service.drain(20)).toEqual({forced: true})
    expect(await answer).toHaveProperty('error')
  })

  it('close cuts active requests at once', async () => {
    const {service, next} = held()
    const port = await listenLoopback(service)
    const answer = get(port)
    await next()
    await service.close()
    expect(await answer).toHaveProperty('error')
  })

  it('a second listen on a port in use is ADDRESS_IN_USE; another failure keeps the listener code', async () => {
    const first = held().service
    const port = await listenLoopback(first)
    const second = held().service
    expect(await codeOf(second.listen({host: '127.0.0.1', port}, {code: 'SERVER_LISTEN_FAILED'}))).toBe('ADDRESS_IN_USE')
    const dir = await mkdtemp(join(tmpdir(), 'nle-service-'))
    try {
      const socketPath = join(dir, 'a.sock')
      const onSocket = held().service
      await onSocket.listen({socketPath}, {code: 'GATEWAY_LISTEN_FAILED'})
      expect(await codeOf(held().service.listen({socketPath}, {code: 'GATEWAY_LISTEN_FAILED'}))).toBe('ADDRESS_IN_USE')
      expect(await codeOf(held().service.listen({socketPath: join(dir, 'missing', 'b.sock')}, {code: 'GATEWAY_LISTEN_FAILED'}))).toBe('GATEWAY_LISTEN_FAILED')
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })
})
