import {describe, expect, it} from 'vitest'

import {FakeDriver, words} from '../../test-support/vsock-driver.js'
import {VsockDevice} from './device.js'
import {FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, FrontendError, OFFERED_FEATURES, OFFERED_PROTOCOL_FEATURES, PROTOCOL_F_REPLY_ACK, Req, type SessionIo, VhostUserSession, type VhostMessage} from './vhost-user.js'

const USER_BASE = 0x7f0000000000

function le64(n: bigint): Uint8Array {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, n, true)
  return b
}
const msg = (request: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], flags = FLAG_VERSION): VhostMessage => ({request, flags, payload, fds})

function setup() {
  const d = new FakeDriver(16, 1 << 20, 8)
  const closed: number[] = []
  const kicks = new Map<number, number | undefined>()
  const calls = new Map<number, number | undefined>()
  const mapped: number[] = []
  const io: SessionIo = {
    map: (fd, length, offset) => {
      mapped.push(fd)
      return {bytes: d.bytes.subarray(offset, offset + length), unmap: () => undefined}
    },
    close: (fd) => void closed.push(fd),
    watchKick: (q, fd) => void kicks.set(q, fd),
    setCall: (q, fd) => void calls.set(q, fd),
  }
  const device = new VsockDevice({guestCid: 16, connectHost: () => undefined, notify: () => undefined, log: () => undefined})
  const logs: string[] = []
  const session = new VhostUserSession(device, io, 16, (_l, e) => void logs.push(e))
  return {d, session, closed, kicks, calls, mapped, device, logs}
}

/** The reply's payload (after checking its header). */
function replyPayload(reply: Uint8Array | undefined, request: number): Uint8Array {
  expect(reply).toBeDefined()
  const v = new DataView(reply!.buffer, reply!.byteOffset)
  expect(v.getUint32(0, true)).toBe(request)
  expect(v.getUint32(4, true)).toBe(FLAG_VERSION | FLAG_REPLY)
  expect(v.getUint32(8, true)).toBe(reply!.length - 12)
  return reply!.subarray(12)
}

describe('vhost-user session', () => {
  it('negotiates features, answers GET_CONFIG with the guest CID, maps the memory table and runs the rings it is given', () => {
    const {d, session, kicks, calls, mapped, closed} = setup()
    expect(replyPayload(session.handle(msg(Req.GET_FEATURES)), Req.GET_FEATURES)).toEqual(le64(OFFERED_FEATURES))
    session.handle(msg(Req.SET_FEATURES, le64(OFFERED_FEATURES)))
    expect(replyPayload(session.handle(msg(Req.GET_PROTOCOL_FEATURES)), Req.GET_PROTOCOL_FEATURES)).toEqual(le64(OFFERED_PROTOCOL_FEATURES))
    session.handle(msg(Req.SET_PROTOCOL_FEATURES, le64(OFFERED_PROTOCOL_FEATURES)))
    const config = replyPayload(session.handle(msg(Req.GET_CONFIG, words([0, 4], [8, 4], [0, 4], [0, 8]))), Req.GET_CONFIG)
    expect(Buffer.from(config).toString('hex')).toBe('00000000' + '08000000' + '00000000' + '1000000000000000')
    // REPLY_ACK: a message that asks for a reply gets u64 0.
    const ack = session.handle(msg(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [0x10000, 8], [d.bytes.length, 8], [USER_BASE, 8], [0, 8]), [50], FLAG_VERSION | FLAG_NEED_REPLY))
    expect(replyPayload(ack, Req.SET_MEM_TABLE)).toEqual(le64(0n))
    expect(mapped).toEqual([50])
    expect(closed).toContain(50) // the mapping stays; the fd is closed
    for (const [q, ring] of [[0, d.rx], [1, d.tx]] as const) {
      session.handle(msg(Req.SET_VRING_NUM, words([q, 4], [8, 4])))
      session.handle(msg(Req.SET_VRING_BASE, words([q, 4], [0, 4])))
      const user = (gpa: number): bigint => BigInt(USER_BASE + gpa - 0x10000)
      session.handle(msg(Req.SET_VRING_ADDR, words([q, 4], [0, 4], [user(ring.desc), 8], [user(ring.used), 8], [user(ring.avail), 8], [0, 8])))
      session.handle(msg(Req.SET_VRING_CALL, le64(BigInt(q)), [60 + q]))
      session.handle(msg(Req.SET_VRING_KICK, le64(BigInt(q)), [70 + q]))
      expect(session.queue(q)).toBeUndefined() // disabled until SET_VRING_ENABLE (protocol features negotiated)
      session.handle(msg(Req.SET_VRING_ENABLE, words([q, 4], [1, 4])))
      expect(session.queue(q)).toBeDefined()
    }
    expect([...kicks.entries()]).toEqual([[0, 70], [1, 71]])
    expect([...calls.entries()]).toEqual([[0, 60], [1, 61]])
    expect(closed).not.toContain(70)
    // GET_VRING_BASE stops the ring and says where to resume.
    d.tx.addChain([{addr: d.alloc(44), len: 44, write: false}])
    session.queue(1)!.pop()
    expect(replyPayload(session.handle(msg(Req.GET_VRING_BASE, words([1, 4], [0, 4]))), Req.GET_VRING_BASE)).toEqual(words([1, 4], [1, 4]))
    expect(session.queue(1)).toBeUndefined()
    expect(kicks.get(1)).toBeUndefined()
  })

  it('refuses malformed messages (FrontendError) and closes every fd that came with them', () => {
    const cases: [string, VhostMessage][] = [
      ['regions without fds', msg(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [0, 8], [4096, 8], [USER_BASE, 8], [0, 8]), [])],
      ['more fds than regions', msg(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [0, 8], [4096, 8], [USER_BASE, 8], [0, 8]), [3, 4])],
      ['nine regions', msg(Req.SET_MEM_TABLE, new Uint8Array(8 + 32 * 9).fill(0).map((_, i) => (i === 0 ? 9 : 0)), [1, 2, 3, 4, 5, 6, 7, 8, 9])],
      ['a region size beyond 2^53', msg(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [0, 8], [2n ** 60n, 8], [USER_BASE, 8], [0, 8]), [5])],
      ['queue 2', msg(Req.SET_VRING_NUM, words([2, 4], [8, 4]))],
      ['queue size 3', msg(Req.SET_VRING_NUM, words([0, 4], [3, 4]))],
      ['kick without fd nor no-fd bit', msg(Req.SET_VRING_KICK, le64(0n))],
      ['kick with an fd and the no-fd bit', msg(Req.SET_VRING_KICK, le64(0x100n), [6])],
      ['short payload', msg(Req.SET_FEATURES, new Uint8Array(4))],
      ['fds on a message that takes none', msg(Req.SET_VRING_NUM, words([0, 4], [8, 4]), [7])],
      ['a huge config read', msg(Req.GET_CONFIG, words([0, 4], [100000, 4], [0, 4]))],
    ]
    for (const [name, m] of cases) {
      const {session, closed} = setup()
      expect(() => session.handle(m), name).toThrow(FrontendError)
      for (const fd of m.fds) expect(closed, `${name}: fd ${fd}`).toContain(fd)
    }
  })

  it('answers an unknown request with a failed REPLY_ACK when asked to, and otherwise ignores it', () => {
    const {session, logs} = setup()
    expect(session.handle(msg(99))).toBeUndefined()
    session.handle(msg(Req.SET_PROTOCOL_FEATURES, le64(PROTOCOL_F_REPLY_ACK)))
    expect(replyPayload(session.handle(msg(99, new Uint8Array(0), [], FLAG_VERSION | FLAG_NEED_REPLY)), 99)).toEqual(le64(1n))
    expect(logs).toContain('vhost_user_unsupported')
  })

  it('ring addresses outside the memory table leave the ring stopped, logged as a guest fault, without throwing', () => {
    const {d, session, logs} = setup()
    session.handle(msg(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [0x10000, 8], [d.bytes.length, 8], [USER_BASE, 8], [0, 8]), [50]))
    session.handle(msg(Req.SET_VRING_NUM, words([0, 4], [8, 4])))
    session.handle(msg(Req.SET_VRING_ADDR, words([0, 4], [0, 4], [0x1234, 8], [0x5678, 8], [0x9abc, 8], [0, 8])))
    session.handle(msg(Req.SET_VRING_KICK, le64(0n), [70]))
    expect(session.queue(0)).toBeUndefined()
    expect(logs).toContain('guest_fault')
  })

  it('maps a region larger than 4 GiB in overlapping views of at most 1 GiB + 1 MiB (Node aborts on a larger external buffer)', () => {
    const calls: [number, number][] = []
    const io: SessionIo = {
      map: (_fd, length, offset) => {
        calls.push([length, offset])
        return {bytes: {length} as unknown as Uint8Array, unmap: () => undefined}
      },
      close: () => undefined,
      watchKick: () => undefined,
      setCall: () => undefined,
    }
    const device = new VsockDevice({guestCid: 16, connectHost: () => undefined, notify: () => undefined, log: () => undefined})
    const session = new VhostUserSession(device, io, 16, () => undefined)
    const GiB = 2 ** 30
    session.handle(msg(Req.SET_MEM_TABLE, words([1, 4], [0, 4], [0x1_0000_0000, 8], [5 * GiB, 8], [USER_BASE, 8], [4096, 8]), [9]))
    expect(calls).toEqual([
      [GiB + 2 ** 20, 4096],
      [GiB + 2 ** 20, 4096 + GiB],
      [GiB + 2 ** 20, 4096 + 2 * GiB],
      [GiB + 2 ** 20, 4096 + 3 * GiB],
      [GiB, 4096 + 4 * GiB],
    ])
  })
})
