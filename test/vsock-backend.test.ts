// The vhost-user-vsock back-end as a process (dist/lib/vsock/main.js), without QEMU: its flags,
// its ready line, the control protocol over a plain Unix socket (messages without fds), and that
// it ends — on SIGTERM, when its parent goes, when the front-end disconnects or breaks the
// protocol — removing its sockets. The vsock traffic itself: test/vsock-qemu.test.ts.
import {existsSync} from 'node:fs'
import net from 'node:net'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {tempDir} from '../src/test-support/tmp.js'
import {startBackend} from './qemu/vsock.js'

const cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

function dir(): string {
  const t = tempDir('nle-vsock-be-')
  cleanups.push(t.cleanup)
  return t.dir
}

function message(request: number, payload: Buffer = Buffer.alloc(0), size = payload.length): Buffer {
  const h = Buffer.alloc(12)
  h.writeUInt32LE(request, 0)
  h.writeUInt32LE(1, 4)
  h.writeUInt32LE(size, 8)
  return Buffer.concat([h, payload])
}

describe('vhost-user-vsock back-end process', () => {
  it('refuses bad flags with VSOCK_USAGE (exit 2)', async () => {
    const d = dir()
    for (const args of [['--cid', '2', '--socket', join(d, 's')], ['--socket', join(d, 's'), '--connect', 'x=/tmp/y'], ['--cid', '16']]) {
      await expect(startBackend(args)).rejects.toThrow(/exited \(2\).*VSOCK_USAGE/s)
    }
  })

  it('prints its ready line, answers GET_FEATURES, and exits 0 when the front-end disconnects, removing its sockets', async () => {
    const d = dir()
    const b = await startBackend(['--socket', join(d, 'vhost.sock'), '--cid', '16', '--listen', `5000=${join(d, 'in.sock')}`])
    expect(existsSync(join(d, 'in.sock'))).toBe(true)
    const readyLine = await new Promise<Record<string, unknown>>((resolve) => {
      const check = (): void => {
        const line = b.stderr().split('\n').find((l) => l.includes('"event":"listening"'))
        if (line) resolve(JSON.parse(line) as Record<string, unknown>)
      }
      b.child.stderr!.on('data', check)
      check()
    })
    expect(readyLine).toMatchObject({ready: true, socket: join(d, 'vhost.sock')})
    const s = net.createConnection(join(d, 'vhost.sock'))
    s.write(message(1))
    const [reply] = (await new Promise<Buffer[]>((resolve) => s.once('data', (b: Buffer) => resolve([b])))) as [Buffer]
    expect(reply.readUInt32LE(0)).toBe(1)
    expect(reply.readUInt32LE(4)).toBe(0x5)
    expect(reply.readBigUInt64LE(12)).toBe((1n << 32n) | (1n << 30n))
    s.end()
    expect((await b.exited).code).toBe(0)
    expect(b.stderr()).toContain('"reason":"front-end disconnected"')
    expect(existsSync(join(d, 'vhost.sock'))).toBe(false)
    expect(existsSync(join(d, 'in.sock'))).toBe(false)
  })

  it('disconnects a front-end that sends an oversized message (VSOCK_FRONTEND_PROTOCOL, exit 7)', async () => {
    const d = dir()
    const b = await startBackend(['--socket', join(d, 'vhost.sock'), '--cid', '16'])
    const s = net.createConnection(join(d, 'vhost.sock'))
    s.on('error', () => undefined)
    s.write(message(5, Buffer.alloc(0), 1 << 20))
    expect((await b.exited).code).toBe(7)
    expect(b.stderr()).toContain('VSOCK_FRONTEND_PROTOCOL')
    s.destroy()
  })

  it('exits on SIGTERM while waiting for QEMU, and when its parent goes (stdin closed, NLE_EXIT_WITH_PARENT=1)', async () => {
    const d = dir()
    const a = await startBackend(['--socket', join(d, 'a.sock'), '--cid', '16'])
    a.child.kill('SIGTERM')
    expect((await a.exited).code).toBe(0)
    expect(existsSync(join(d, 'a.sock'))).toBe(false)
    const b = await startBackend(['--socket', join(d, 'b.sock'), '--cid', '16'], {NLE_EXIT_WITH_PARENT: '1'})
    b.child.stdin!.end()
    expect((await b.exited).code).toBe(0)
    expect(existsSync(join(d, 'b.sock'))).toBe(false)
  })
})
