// Helpers for the end-to-end channel tests: child processes of the runtime entries, a byte tap
// that records (and can corrupt) what the proxy relays, and fd counting.
import {type ChildProcess, spawn} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {type Server, type Socket, connect, createServer} from 'node:net'

import {REPO_ROOT} from '../src/test-support/cli.js'

export interface Child {
  proc: ChildProcess
  pid: number
  /** Everything the process wrote to stdout and stderr. */
  output(): string
  /** Resolves with the first log line (JSON) whose event matches. */
  waitFor(event: string, timeoutMs?: number): Promise<Record<string, unknown>>
  exited: Promise<number | null>
}

/**
 * Start a runtime from the compiled dist/ that global-setup builds: the parent proxy's entry
 * (runtime/parent-proxy/index.js), or the enclave server's development entry
 * (dist/lib/dev/enclave-server.js: the NSM simulator and nle.yaml configs; the image's entry,
 * runtime/enclave-server/index.js, has neither).
 */
export function startRuntime(entry: 'enclave-server' | 'parent-proxy', args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return startScript(entry === 'enclave-server' ? 'dist/lib/dev/enclave-server.js' : `runtime/${entry}/index.js`, args, env)
}

/** Start `node <script> …args` in `cwd` (default: the checkout), collecting its output and JSON log lines. */
export function startScript(script: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd: string = REPO_ROOT): Child {
  const proc = spawn(process.execPath, [script, ...args], {cwd, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1', ...env}})
  let out = ''
  let partial = ''
  const waiters: {event: string; resolve: (v: Record<string, unknown>) => void}[] = []
  const onData = (d: Buffer): void => {
    const text = d.toString()
    out += text
    const lines = (partial + text).split('\n')
    partial = lines.pop() ?? ''
    if (waiters.length === 0) return
    for (const line of lines) {
      if (!line.startsWith('{')) continue
      let parsed: Record<string, unknown>
      try {
        parsed = JSON.parse(line) as Record<string, unknown>
      } catch {
        continue
      }
      for (const w of waiters.splice(0)) {
        if (parsed.event === w.event) w.resolve(parsed)
        else waiters.push(w)
      }
    }
  }
  proc.stdout!.on('data', onData)
  proc.stderr!.on('data', onData)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  return {
    proc,
    pid: proc.pid!,
    output: () => out,
    exited,
    waitFor(event, timeoutMs = 45_000) {
      return new Promise((resolve, reject) => {
        for (const line of out.split('\n')) {
          try {
            const parsed = JSON.parse(line) as Record<string, unknown>
            if (parsed.event === event) return resolve(parsed)
          } catch {
            // not a log line
          }
        }
        const timer = setTimeout(() => reject(new Error(`${script}: no "${event}" within ${timeoutMs} ms. Output:\n${out}`)), timeoutMs)
        waiters.push({event, resolve: (v) => (clearTimeout(timer), resolve(v))})
        void exited.then((code) => reject(new Error(`${script} exited (${code}) before "${event}". Output:\n${out}`)))
      })
    },
  }
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/** Poll until `check` is true or the deadline passes; returns the last value seen. */
export async function settle<T>(read: () => T, ok: (v: T) => boolean, deadlineMs = 10_000): Promise<T> {
  const end = Date.now() + deadlineMs
  let v = read()
  while (!ok(v) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100))
    v = read()
  }
  return v
}

/**
 * A relay between the proxy and an enclave socket that records every byte in both directions.
 * `corruptNextRequestBody` flips one byte of the next request body; `corruptNextStreamChunk`
 * changes one base64 character inside the next sealed SSE chunk sent back.
 */
export class Tap {
  readonly toEnclave: Buffer[] = []
  readonly fromEnclave: Buffer[] = []
  corruptNextRequestBody = false
  corruptNextStreamChunk = false
  private server: Server
  private readonly sockets = new Set<Socket>()

  constructor(
    readonly listenPath: string,
    private readonly target: string,
  ) {
    this.server = createServer((down) => this.relay(down))
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(this.listenPath, () => resolve()))
  }

  bytes(): Buffer {
    return Buffer.concat([...this.toEnclave, ...this.fromEnclave])
  }

  private relay(down: Socket): void {
    const up = connect(this.target)
    this.sockets.add(down).add(up)
    // Request direction: parse each request on the (kept-alive) connection to find its body.
    let head = Buffer.alloc(0)
    let remaining = 0
    let flip = false
    down.on('data', (chunk: Buffer) => {
      const data = Buffer.from(chunk)
      let at = 0
      while (at < data.length) {
        if (remaining === 0) {
          const before = head.length
          head = Buffer.concat([head, data.subarray(at)])
          const end = head.indexOf('\r\n\r\n')
          if (end === -1) {
            at = data.length
            break
          }
          at += end + 4 - before
          const text = head.subarray(0, end).toString('latin1')
          head = Buffer.alloc(0)
          remaining = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0)
          flip = this.corruptNextRequestBody && remaining > 0 && text.startsWith('POST')
          if (flip) this.corruptNextRequestBody = false
          continue
        }
        const n = Math.min(remaining, data.length - at)
        remaining -= n
        at += n
        if (remaining === 0 && flip) {
          data[at - 1] = data[at - 1]! ^ 0x01 // the body's last byte: the AEAD tag
          flip = false
        }
      }
      this.toEnclave.push(data)
      up.write(data)
    })
    up.on('data', (chunk: Buffer) => {
      const data = Buffer.from(chunk)
      if (this.corruptNextStreamChunk) {
        const text = data.toString('latin1')
        // A sealed chunk's data line (not the nonce event's): swap one base64 character for another.
        for (let at = text.indexOf('data: '); at !== -1; at = text.indexOf('data: ', at + 1)) {
          if (text.slice(Math.max(0, at - 13), at) === 'event: nonce\n') continue
          const pos = at + 6 + 12
          data[pos] = data[pos] === 0x41 ? 0x42 : 0x41
          this.corruptNextStreamChunk = false
          break
        }
      }
      this.fromEnclave.push(data)
      down.write(data)
    })
    const close = (): void => {
      down.destroy()
      up.destroy()
      this.sockets.delete(down)
      this.sockets.delete(up)
    }
    down.on('close', close).on('error', close)
    up.on('close', close).on('error', close)
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
