/**
 * The parent's weights server for sealed models: serves the sealed files `nle model seal` wrote
 * (ciphertext only) to the enclave, which checks every chunk itself. In the enclave the server is
 * reached through a Unix socket bridged over vsock (model.weightsVsockPort); in `nle dev` through a
 * Unix socket directly.
 *
 * - only on a Unix socket (mode 0600), never on a TCP listener;
 * - `GET /v1/sealed/<name>` where <name> is one of the sealed files nle-sealed.json lists (read at
 *   start; a name is looked up, never joined to a path, so nothing else in the folder or outside it
 *   can be asked for); other paths 404, other methods 405;
 * - at most `maxStreams` files streamed at once (default 2; 429 beyond: the enclave reads them one by one);
 * - one content-free access line per request (the sealed file's name, status, bytes, ms).
 */
import {createReadStream} from 'node:fs'
import {readFile, rm, stat} from 'node:fs/promises'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {SEALED_MANIFEST_FILE, parseSealedManifest} from '../model/seal/format.js'
import type {Logger} from '../net/log.js'
import {sendJson} from '../net/json.js'
import {HttpService} from '../net/service.js'

export const SEALED_ROUTE = '/v1/sealed/'
const CLOSE_WAIT_MS = 5000

export interface WeightsServerOptions {
  /** The sealed folder (holds nle-sealed.json). */
  dir: string
  socketPath: string
  logger: Logger
  maxStreams?: number
}

export interface WeightsServer {
  socketPath: string
  /** Bytes read out to the enclave so far (all files; counted as they are handed to the response). */
  bytesServed(): number
  close(): Promise<void>
}

export async function startWeightsServer(options: WeightsServerOptions): Promise<WeightsServer> {
  const {dir, socketPath, logger} = options
  const maxStreams = options.maxStreams ?? 2
  const sealed = parseSealedManifest(await readFile(join(dir, SEALED_MANIFEST_FILE)).catch(() => Buffer.alloc(0)), join(dir, SEALED_MANIFEST_FILE))
  const files = new Map(sealed.files.map((f) => [f.sealed, join(dir, f.sealed)]))
  let streams = 0
  let served = 0

  const fail = (res: ServerResponse, status: number, code: string, message: string): void => void sendJson(res, status, {error: {code, message}}, status === 405 ? {allow: 'GET'} : {})

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now()
    const url = (req.url ?? '/').split('?')[0] ?? '/'
    const name = url.startsWith(SEALED_ROUTE) ? url.slice(SEALED_ROUTE.length) : undefined
    const path = name === undefined ? undefined : files.get(name)
    let bytes = 0
    res.on('close', () => {
      logger.log('info', 'weights', {method: req.method, file: path === undefined ? '(other)' : name, status: res.statusCode, bytes, ms: Math.round(performance.now() - t0)})
    })
    req.resume()
    if (path === undefined) return fail(res, 404, 'SEAL_WEIGHTS_UNAVAILABLE', 'No such sealed file.')
    if (req.method !== 'GET') return fail(res, 405, 'SEAL_LIMIT', 'Use GET.')
    if (streams >= maxStreams) return fail(res, 429, 'SEAL_LIMIT', `At most ${maxStreams} sealed files are streamed at once.`)
    streams++
    // Freed once the last byte is handed to the socket (or the response is cut): a reader that asks
    // for the next file as soon as it has this one must find the slot free.
    let freed = false
    const free = (): void => {
      if (!freed) streams--
      freed = true
    }
    res.once('finish', free)
    res.once('close', free)
    let size: number
    try {
      size = (await stat(path)).size
    } catch {
      return fail(res, 404, 'SEAL_WEIGHTS_UNAVAILABLE', 'The sealed file is missing on the host.')
    }
    res.writeHead(200, {'content-type': 'application/octet-stream', 'content-length': size, 'cache-control': 'no-store'})
    const stream = createReadStream(path, {highWaterMark: 1 << 20})
    stream.on('data', (chunk) => {
      bytes += chunk.length
      served += chunk.length
    })
    stream.on('error', () => res.destroy())
    stream.pipe(res)
  }

  // Long downloads: no request timeout once the (tiny) request arrived; headers within 10 s.
  const server: Server = createServer({keepAliveTimeout: 5000, headersTimeout: 10_000, requestTimeout: 10_000, maxHeaderSize: 8192}, (req, res) => void handle(req, res))
  server.maxConnections = 8
  const service = new HttpService(server)
  await service.listenPrivate(socketPath, {code: 'PROXY_LISTEN_FAILED', details: {socketPath}})
  logger.log('info', 'weights_listening', {socket: socketPath, files: files.size})
  return {
    socketPath,
    bytesServed: () => served,
    close: async () => {
      await service.drain(CLOSE_WAIT_MS)
      await rm(socketPath, {force: true})
    },
  }
}
