/**
 * The enclave's side of the weights server (../../proxy/weights.ts): GET each sealed file over a
 * Unix socket (in the enclave bridged over vsock to the parent). What arrives is not trusted — the
 * opener (./open.ts) checks every chunk — so this only turns transport failures into
 * SEAL_WEIGHTS_UNAVAILABLE.
 */
import {request} from 'node:http'

import {isNleError} from '../../errors.js'
import {sealError} from './errors.js'
import type {FetchSealed} from './open.js'

const ROUTE = '/v1/sealed/'

/** FetchSealed over HTTP on a Unix socket; `timeoutMs` bounds each pause in the stream. */
export function weightsFromSocket(socketPath: string, o: {timeoutMs?: number} = {}): FetchSealed {
  const timeoutMs = o.timeoutMs ?? 30_000
  return (file) =>
    new Promise((resolve, reject) => {
      const unavailable = (message: string, cause?: unknown, extra: Record<string, unknown> = {}): Error =>
        sealError('SEAL_WEIGHTS_UNAVAILABLE', message, {...(cause === undefined ? {} : {cause}), details: {socket: socketPath, file: file.sealed, ...extra}})
      const req = request({socketPath, path: `${ROUTE}${file.sealed}`, method: 'GET', timeout: timeoutMs}, (res) => {
        if (res.statusCode !== 200) {
          res.resume()
          reject(unavailable(`The weights server answered ${res.statusCode} for ${file.sealed}.`))
          return
        }
        resolve(
          (async function* () {
            try {
              for await (const piece of res) yield piece as Buffer
            } catch (cause) {
              if (isNleError(cause)) throw cause
              throw unavailable(`The stream of ${file.sealed} broke off.`, cause)
            }
            if (!res.complete) throw unavailable(`The stream of ${file.sealed} broke off.`)
          })(),
        )
      })
      req.on('timeout', () => req.destroy(new Error('timed out')))
      req.on('error', (cause) => {
        // Nothing listening yet (the parent starts its side after the enclave): worth waiting for.
        const errno = (cause as NodeJS.ErrnoException).code
        reject(unavailable(`The weights server at ${socketPath} cannot be reached.`, cause, errno === 'ECONNREFUSED' || errno === 'ENOENT' ? {notListening: true} : {}))
      })
      req.end()
    })
}
