import {type IncomingMessage, type Server, createServer, request} from 'node:http'
import type {AddressInfo} from 'node:net'

import {afterEach, describe, expect, it} from 'vitest'

import {type BodyOutcome, type ReadBodyOptions, readBody} from './body.js'

let server: Server | undefined
afterEach(() => new Promise<void>((resolve) => {
  server?.closeAllConnections()
  if (server) server.close(() => resolve())
  else resolve()
}))

/** A loopback server that reads each request with `options`, reports the outcome and answers 200/413. */
async function serve(options: ReadBodyOptions): Promise<{port: number; outcomes: BodyOutcome[]}> {
  const outcomes: BodyOutcome[] = []
  server = createServer((req: IncomingMessage, res) => {
    void readBody(req, options).then((outcome) => {
      outcomes.push(outcome)
      res.writeHead(outcome.ok ? 200 : 413).end(outcome.ok ? String(outcome.body.length) : outcome.reason)
    })
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return {port: (server.address() as AddressInfo).port, outcomes}
}

/** Send `parts` (then end unless `hold`), resolve with the status and body of the answer. */
function send(port: number, parts: string[], headers: Record<string, string> = {}, hold = false): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const req = request({port, host: '127.0.0.1', method: 'POST', headers}, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
    })
    req.on('error', reject)
    for (const p of parts) req.write(p)
    if (!hold) req.end()
  })
}

describe('readBody', () => {
  it('reads a body within the limit, refuses one past it (counted or declared) and can still answer', async () => {
    const {port, outcomes} = await serve({limit: 10})
    expect(await send(port, ['hello', 'world'])).toEqual({status: 200, body: '10'})
    expect(await send(port, ['hello', 'world!'])).toEqual({status: 413, body: 'too-large'})
    expect(await send(port, ['x'], {'content-length': '11'}, true)).toEqual({status: 413, body: 'too-large'})
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, false])
  })

  it('refuses a body that stops arriving, after timeoutMs', async () => {
    const {port, outcomes} = await serve({limit: 100, timeoutMs: 50})
    expect(await send(port, ['part of it'], {'content-length': '50'}, true)).toEqual({status: 413, body: 'timeout'})
    expect(outcomes).toEqual([{ok: false, reason: 'timeout'}])
  })

  it('says aborted when the connection closes mid-body', async () => {
    const outcomes: BodyOutcome[] = []
    const got = new Promise<void>((resolve) => {
      server = createServer((req) => {
        void readBody(req, {limit: 100}).then((o) => {
          outcomes.push(o)
          resolve()
        })
      })
    })
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    const port = (server!.address() as AddressInfo).port
    const req = request({port, host: '127.0.0.1', method: 'POST', headers: {'content-length': '50'}})
    req.on('error', () => undefined)
    req.write('half', () => req.destroy())
    await got
    expect(outcomes).toEqual([{ok: false, reason: 'aborted'}])
  })
})
