/** Is it up? The runtime's /healthz over the bridge's socket, and a TCP listener. */
import {request} from 'node:http'
import {connect} from 'node:net'



/** GET /healthz over the bridge's Unix socket (plain HTTP to the enclave server behind socat). */
export async function probeHealth(socketPath: string, timeoutMs = 2000): Promise<{ok: boolean; status?: number; error?: string}> {
  return new Promise((resolve) => {
    const req = request({socketPath, path: '/healthz', method: 'GET', timeout: timeoutMs}, (res) => {
      res.resume()
      res.on('end', () => resolve({ok: res.statusCode === 200, status: res.statusCode}))
    })
    req.on('timeout', () => req.destroy(new Error('timed out')))
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ok: false, error: error.code ?? error.message}))
    req.end()
  })
}

/** Whether something accepts TCP connections on host:port (the proxy is listening). */
export async function probeTcp(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({host, port, timeout: timeoutMs})
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('timeout', () => done(false))
    s.once('error', () => done(false))
  })
}

/** Where to reach a listener bound to the wildcard address. */
export const loopback = (host: string): string => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host)
