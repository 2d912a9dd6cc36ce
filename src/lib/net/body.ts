/**
 * Reading a whole HTTP body with a limit: the one reader of the server, the proxy, the gateway, the
 * local KMS and the client. A body past `limit` (declared or counted) is refused without being
 * kept; one that stops arriving is refused after `timeoutMs`; a connection that closes mid-body is
 * `aborted`. Events, not an async iterator: this is on the proxy's hot path, and cheaper.
 */
import type {IncomingMessage} from 'node:http'

export type BodyRefusal = 'too-large' | 'aborted' | 'timeout'
export type BodyOutcome = {ok: true; body: Buffer} | {ok: false; reason: BodyRefusal}

export interface ReadBodyOptions {
  /** Bytes at most. */
  limit: number
  /** Refuse a body that has not fully arrived within this long (default: no timer of its own). */
  timeoutMs?: number
  /**
   * What to do with the rest of a refused body: `drain` reads it unkept so that a reply can still
   * be written on the same connection (a request); `destroy` drops the connection (a response).
   */
  onRefused?: 'drain' | 'destroy'
}

export function readBody(message: IncomingMessage, options: ReadBodyOptions): Promise<BodyOutcome> {
  const {limit} = options
  const refuse = (reason: BodyRefusal): BodyOutcome => {
    if (options.onRefused === 'destroy') message.destroy()
    else message.resume()
    return {ok: false, reason}
  }
  const declared = Number(message.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(refuse('too-large'))
  return new Promise((resolve) => {
    const parts: Buffer[] = []
    let size = 0
    let timer: NodeJS.Timeout | undefined
    const done = (outcome: BodyOutcome | BodyRefusal): void => {
      clearTimeout(timer)
      message.off('data', onData)
      message.off('end', onEnd)
      message.off('error', onAborted)
      message.off('close', onClose)
      resolve(typeof outcome === 'string' ? refuse(outcome) : outcome)
    }
    const onData = (part: Buffer): void => {
      size += part.length
      if (size > limit) done('too-large')
      else parts.push(part)
    }
    const onEnd = (): void => done({ok: true, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, size)})
    const onAborted = (): void => done('aborted')
    const onClose = (): void => {
      if (!message.complete) done('aborted')
    }
    if (options.timeoutMs !== undefined) timer = setTimeout(() => done('timeout'), options.timeoutMs)
    message.on('data', onData)
    message.on('end', onEnd)
    message.on('error', onAborted)
    message.on('close', onClose)
  })
}
