/**
 * The vhost-user-vsock back-end's entry point (an internal program of nle, not a command):
 *
 *   node dist/lib/vsock/main.js --socket /run/vsock.sock --cid 16 \
 *     [--connect PORT=PATH]…   a guest connection to the host (CID 2 or 3) port PORT goes to PATH
 *     [--listen PORT=PATH]…    a connection to PATH (created here) goes to the guest's port PORT
 *     [--buf-alloc BYTES] [--max-connections N] [--verbose]
 *
 * Prints `listening <socket>` on stdout once QEMU may connect (-chardev socket,path=<socket>), and
 * logs JSON lines on stderr, the first of them {"event":"listening","ready":true,…} at that moment. Exits 0 when QEMU disconnects, on SIGTERM/SIGINT, and when its parent
 * dies (NLE_EXIT_WITH_PARENT=1 with stdin a pipe: ../dev/exit-with-parent.ts).
 */
import {resolve} from 'node:path'
import {pathToFileURL} from 'node:url'
import {parseArgs} from 'node:util'

import {isNleError} from '../errors.js'
import {exitWithParent} from '../dev/exit-with-parent.js'
import {type BackendOptions, VsockBackend} from './backend.js'
import type {LogLevel, Logger} from './device.js'
import {vsockError} from './errors.js'

function portMap(values: readonly string[], flag: string): Map<number, string> {
  const out = new Map<number, string>()
  for (const v of values) {
    const m = /^(\d{1,10})=(.+)$/.exec(v)
    const port = m ? Number(m[1]) : NaN
    if (!m || port > 0xfffffffe) throw vsockError('VSOCK_USAGE', `${flag} ${v}: expected PORT=PATH with PORT 0…4294967294.`)
    if (out.has(port)) throw vsockError('VSOCK_USAGE', `${flag}: port ${port} is given twice.`)
    out.set(port, resolve(m[2]!))
  }
  return out
}

function positiveInt(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw vsockError('VSOCK_USAGE', `${flag} ${value}: expected an integer ${min}…${max}.`)
  return n
}

export function parseBackendArgs(argv: readonly string[], log: Logger): BackendOptions {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        socket: {type: 'string'},
        cid: {type: 'string'},
        connect: {type: 'string', multiple: true, default: []},
        listen: {type: 'string', multiple: true, default: []},
        'buf-alloc': {type: 'string'},
        'max-connections': {type: 'string'},
        verbose: {type: 'boolean', default: false},
      },
      strict: true,
      allowPositionals: false,
    })
  } catch (error) {
    throw vsockError('VSOCK_USAGE', (error as Error).message)
  }
  const v = parsed.values
  if (!v.socket) throw vsockError('VSOCK_USAGE', '--socket PATH is required.')
  const cid = positiveInt(v.cid ?? '16', '--cid', 3, 0xfffffffe)!
  const bufAlloc = positiveInt(v['buf-alloc'], '--buf-alloc', 4096, 64 * 1024 * 1024)
  const maxConnections = positiveInt(v['max-connections'], '--max-connections', 1, 65536)
  return {
    socketPath: resolve(v.socket),
    guestCid: cid,
    guestToHost: portMap(v.connect, '--connect'),
    hostToGuest: portMap(v.listen, '--listen'),
    ...(bufAlloc ? {bufAlloc} : {}),
    ...(maxConnections ? {maxConnections} : {}),
    log,
  }
}

function jsonLogger(verbose: boolean): Logger {
  const rank: Record<LogLevel, number> = {debug: 0, info: 1, warn: 2, error: 3}
  const min = verbose ? 0 : 1
  return (level, event, fields = {}) => {
    if (rank[level] < min) return
    process.stderr.write(`${JSON.stringify({t: new Date().toISOString(), level, component: 'vsock', event, ...fields})}\n`)
  }
}

export async function runVsockBackend(argv: readonly string[]): Promise<number> {
  const log = jsonLogger(argv.includes('--verbose'))
  let backend: VsockBackend
  try {
    const options = parseBackendArgs(argv, log)
    backend = new VsockBackend({
      ...options,
      onListening: (path) => {
        process.stdout.write(`listening ${path}\n`)
        // The dev supervisor's ready line (a JSON line with ready: true: src/lib/dev/supervisor.ts).
        log('info', 'listening', {ready: true, socket: path})
      },
    })
  } catch (error) {
    const e = isNleError(error) ? error : vsockError('VSOCK_UNAVAILABLE', (error as Error).message)
    log('error', 'start_failed', {code: e.code, message: e.message, hint: e.hint})
    return e.exitCode
  }
  const stop = (): void => backend.stop()
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  try {
    const result = await backend.run()
    log('info', 'stopped', {reason: result.reason, ...result.stats})
    return result.reason === 'front-end protocol error' ? vsockError('VSOCK_FRONTEND_PROTOCOL', result.reason).exitCode : 0
  } catch (error) {
    const e = isNleError(error) ? error : vsockError('VSOCK_FRONTEND_PROTOCOL', (error as Error).message)
    log('error', 'failed', {code: e.code, message: e.message, hint: e.hint})
    return e.exitCode
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  exitWithParent()
  process.exitCode = await runVsockBackend(process.argv.slice(2))
  process.exit()
}
