// The vhost-user-vsock back-end process against a fake front-end that passes real file
// descriptors (src/test-support/vhost-frontend.ts): guest memory in a memfd the back-end mmaps,
// kick and call eventfds, the rings laid out by the fake driver in that shared memory. Runs without
// QEMU (Linux only): the back-end's recvmsg/SCM_RIGHTS, mmap and eventfd paths, a guest → host
// echo through them, and a hostile descriptor that cuts the guest off while the process goes on.
import net from 'node:net'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {PollSet, drainEventFd} from '../src/lib/vsock/libc.js'
import {Op} from '../src/lib/vsock/packet.js'
import {OFFERED_FEATURES, OFFERED_PROTOCOL_FEATURES, Req} from '../src/lib/vsock/vhost-user.js'
import {VIRTQ_DESC_F_NEXT} from '../src/lib/vsock/virtqueue.js'
import {tempDir} from '../src/test-support/tmp.js'
import {FakeDriver, GUEST_BASE, type ReceivedPacket, USER_BASE, words} from '../src/test-support/vsock-driver.js'
import {FakeFrontend, closeFd, eventFd, kick, memfd} from '../src/test-support/vhost-frontend.js'
import {startBackend} from './qemu/vsock.js'

const cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c()
})

describe.skipIf(process.platform !== 'linux')('vhost-user-vsock back-end with real fds (fake front-end, no QEMU)', () => {
  it('maps the memfd, runs the rings on the eventfds, echoes guest → host data, and survives a hostile descriptor', async () => {
    const tmp = tempDir('nle-vsock-fe-')
    cleanups.push(tmp.cleanup)
    const echo = net.createServer({allowHalfOpen: true}, (s) => s.pipe(s))
    await new Promise<void>((r) => echo.listen(join(tmp.dir, 'echo.sock'), r))
    cleanups.push(() => void echo.close())
    const backend = await startBackend(['--socket', join(tmp.dir, 'vhost.sock'), '--cid', '16', '--connect', `6000=${join(tmp.dir, 'echo.sock')}`])
    cleanups.push(() => void backend.child.kill('SIGKILL'))

    const mem = memfd(1 << 20)
    cleanups.push(mem.unmap)
    const d = new FakeDriver(16, 0, 16, mem.bytes)
    const fe = new FakeFrontend(join(tmp.dir, 'vhost.sock'))
    const kicks = [eventFd(), eventFd()]
    const calls = [eventFd(), eventFd()]
    cleanups.push(() => {
      fe.close()
      for (const fd of [mem.fd, ...kicks, ...calls]) closeFd(fd)
    })

    // The handshake, as QEMU does it.
    fe.send(Req.GET_FEATURES)
    expect(fe.reply().readBigUInt64LE(0)).toBe(OFFERED_FEATURES)
    fe.send(Req.SET_FEATURES, words([OFFERED_FEATURES, 8]))
    fe.send(Req.GET_PROTOCOL_FEATURES)
    expect(fe.reply().readBigUInt64LE(0)).toBe(OFFERED_PROTOCOL_FEATURES)
    fe.send(Req.SET_PROTOCOL_FEATURES, words([OFFERED_PROTOCOL_FEATURES, 8]))
    fe.send(Req.SET_OWNER)
    fe.send(Req.GET_CONFIG, words([0, 4], [8, 4], [0, 4], [0, 8]))
    expect(fe.reply().readBigUInt64LE(12)).toBe(16n)
    fe.send(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [GUEST_BASE, 8], [mem.bytes.length, 8], [USER_BASE, 8], [0, 8]), [mem.fd], true)
    expect(fe.reply().readBigUInt64LE(0)).toBe(0n)
    const user = (gpa: number): bigint => BigInt(USER_BASE + gpa - GUEST_BASE)
    for (const [q, ring] of [[0, d.rx], [1, d.tx]] as const) {
      fe.send(Req.SET_VRING_NUM, words([q, 4], [ring.num, 4]))
      fe.send(Req.SET_VRING_BASE, words([q, 4], [0, 4]))
      fe.send(Req.SET_VRING_ADDR, words([q, 4], [0, 4], [user(ring.desc), 8], [user(ring.used), 8], [user(ring.avail), 8], [0, 8]))
      fe.send(Req.SET_VRING_CALL, words([q, 8]), [calls[q]!])
      fe.send(Req.SET_VRING_KICK, words([q, 8]), [kicks[q]!])
      fe.send(Req.SET_VRING_ENABLE, words([q, 4], [1, 4]))
    }

    const poll = new PollSet(1)
    const all: ReceivedPacket[] = []
    const until = async (done: () => boolean): Promise<void> => {
      for (;;) {
        const got = d.received()
        all.push(...got)
        if (got.length > 0) {
          d.postRx(got.length)
          kick(kicks[0]!)
        }
        if (done()) return
        const [rev] = await poll.wait([calls[0]!], 20_000)
        if (!rev) throw new Error(`no rx interrupt in 20 s; stderr: ${backend.stderr()}`)
        drainEventFd(calls[0]!)
      }
    }

    d.postRx(8)
    kick(kicks[0]!)
    d.send({op: Op.REQUEST, dstPort: 6000, srcPort: 4000})
    kick(kicks[1]!)
    await until(() => all.some((p) => p.header.op === Op.RESPONSE))
    d.send({op: Op.RW, dstPort: 6000, srcPort: 4000}, Buffer.from('through a memfd and two eventfds'))
    kick(kicks[1]!)
    await until(() => all.some((p) => p.header.op === Op.RW))
    expect(all.find((p) => p.header.op === Op.RW)!.payload.toString()).toBe('through a memfd and two eventfds')

    // A descriptor pointing past guest memory: the guest is cut off, the process answers on.
    d.tx.setDesc(14, GUEST_BASE, 44, VIRTQ_DESC_F_NEXT, 15)
    d.tx.setDesc(15, GUEST_BASE + (1 << 20) - 8, 4096, 0)
    d.tx.publish(14)
    kick(kicks[1]!)
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (!backend.stderr().includes('"code":"VSOCK_GUEST_FAULT"')) return
        backend.child.stderr!.off('data', check)
        resolve()
      }
      backend.child.stderr!.on('data', check)
      check()
    })
    fe.send(Req.GET_FEATURES)
    expect(fe.reply().readBigUInt64LE(0)).toBe(OFFERED_FEATURES)
    fe.close()
    cleanups.splice(cleanups.length - 1, 1, () => {
      for (const fd of [mem.fd, ...kicks, ...calls]) closeFd(fd)
    })
    expect((await backend.exited).code).toBe(0)
  })
})
