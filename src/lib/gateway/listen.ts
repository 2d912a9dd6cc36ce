/**
 * `--listen`: the gateway answers plaintext questions, so it binds loopback only. Names are not
 * resolved (a name could resolve off the machine), except `localhost`, which means 127.0.0.1.
 */
import {isIP} from 'node:net'

import {gatewayError} from './errors.js'

export const DEFAULT_LISTEN = '127.0.0.1:8787'

export interface ListenAddress {
  host: string
  port: number
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  if (h === 'localhost') return true
  if (isIP(h) === 4) return h.startsWith('127.')
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h)
  return false
}

/** "127.0.0.1:8787", "[::1]:8787", "localhost:0", "8787" (= 127.0.0.1:8787). */
export function parseListen(value: string): ListenAddress {
  const v = value.trim()
  let host = '127.0.0.1'
  let portText = v
  const m = /^(\[[^\]]+\]|[^:[\]]*):(\d+)$/.exec(v)
  if (m) {
    host = m[1] || '127.0.0.1'
    portText = m[2]!
  } else if (!/^\d+$/.test(v)) {
    throw gatewayError('GATEWAY_LISTEN_INVALID', `Not a listen address: ${JSON.stringify(value)}.`, {hint: 'Use 127.0.0.1:PORT, [::1]:PORT or PORT.'})
  }
  const port = Number(portText)
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw gatewayError('GATEWAY_LISTEN_INVALID', `Port out of range in ${JSON.stringify(value)}.`, {hint: 'Use a port from 0 (any free port) to 65535.'})
  }
  if (!isLoopbackHost(host)) {
    throw gatewayError('GATEWAY_LISTEN_NOT_LOOPBACK', `Refusing to listen on ${host}: the gateway serves questions and answers in clear, so it binds loopback only.`, {
      hint: 'Use 127.0.0.1:PORT (or [::1]:PORT). To reach the enclave from another machine, run the gateway there and point --upstream at the proxy.',
      details: {host},
    })
  }
  const bare = host.replace(/^\[|\]$/g, '')
  return {host: bare.toLowerCase() === 'localhost' ? '127.0.0.1' : bare, port}
}

/** The URL clients use (IPv6 in brackets). */
export function listenUrl(address: ListenAddress): string {
  return `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`
}
