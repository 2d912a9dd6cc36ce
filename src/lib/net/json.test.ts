import {type IncomingHttpHeaders, type ServerResponse, createServer, request} from 'node:http'
import type {AddressInfo} from 'node:net'

import {afterEach, describe, expect, it} from 'vitest'

import {jsonError, sendJson} from './json.js'

let close: (() => Promise<void>) | undefined
afterEach(async () => {
  await close?.()
  close = undefined
})

/** Answer one GET with `answer`, resolve with what the client read and what `answer` returned. */
async function exchange<T>(answer: (res: ServerResponse) => T): Promise<{status: number; headers: IncomingHttpHeaders; body: string; returned: T}> {
  let returned: T | undefined
  const server = createServer((_req, res) => {
    returned = answer(res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  close = () => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
  const {port} = server.address() as AddressInfo
  const got = await new Promise<{status: number; headers: IncomingHttpHeaders; body: string}>((resolve, reject) => {
    request({host: '127.0.0.1', port, path: '/'}, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body}))
    })
      .on('error', reject)
      .end()
  })
  return {...got, returned: returned as T}
}

describe('sendJson', () => {
  it('writes the body with content-type, content-length and no-store, and returns its bytes', async () => {
    const got = await exchange((res) => sendJson(res, 201, {a: 'é'}, {'retry-after': '1'}))
    expect(got.status).toBe(201)
    expect(JSON.parse(got.body)).toEqual({a: 'é'})
    expect(got.returned).toBe(Buffer.byteLength(got.body))
    expect(got.headers['content-type']).toBe('application/json')
    expect(got.headers['content-length']).toBe(String(got.returned))
    expect(got.headers['cache-control']).toBe('no-store')
    expect(got.headers['retry-after']).toBe('1')
    expect(got.headers['transfer-encoding']).toBeUndefined()
  })

  it('a header given overrides the default; undefined leaves it out', async () => {
    const got = await exchange((res) => sendJson(res, 400, {__type: 'X'}, {'content-type': 'application/x-amz-json-1.1', 'cache-control': undefined}))
    expect(got.headers['content-type']).toBe('application/x-amz-json-1.1')
    expect(got.headers['cache-control']).toBeUndefined()
  })
})

describe('jsonError', () => {
  it('answers {error: {code, message}} with the wire table status and notes code and size in the log entry', async () => {
    const log: {code?: string; bytesOut: number} = {bytesOut: 0}
    const got = await exchange((res) => jsonError(res, 'SERVER_BUSY', 'Full.', {log}))
    expect(got.status).toBe(429)
    expect(JSON.parse(got.body)).toEqual({error: {code: 'SERVER_BUSY', message: 'Full.'}})
    expect(log).toEqual({code: 'SERVER_BUSY', bytesOut: Buffer.byteLength(got.body)})
  })

  it('a code the table does not list is a 400; a status given wins', async () => {
    expect((await exchange((res) => jsonError(res, 'CHANNEL_SOMETHING_NEW', 'x'))).status).toBe(400)
    const got = await exchange((res) => jsonError(res, 'PROXY_NOT_FOUND', 'Use GET.', {status: 405, headers: {allow: 'GET'}}))
    expect([got.status, got.headers.allow]).toEqual([405, 'GET'])
  })
})
