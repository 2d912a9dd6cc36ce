import {EventEmitter, once} from 'node:events'
import net from 'node:net'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {FakeDriver, type ReceivedPacket} from '../../test-support/vsock-driver.js'
import {type LogLevel, VsockDevice} from './device.js'
import {Op, SHUTDOWN_RCV, SHUTDOWN_SEND} from './packet.js'
import {VIRTQ_DESC_F_NEXT} from './virtqueue.js'

const GUEST = 16
const DEADLINE_MS = 20_000

interface Harness {
  d: FakeDriver
  device: VsockDevice
  logs: {level: LogLevel; event: string; [k: string]: unknown}[]
  /** Kick tx and collect rx packets until `done` holds for everything received so far. */
  until: (done: (all: ReceivedPacket[]) => boolean) => Promise<ReceivedPacket[]>
  all: ReceivedPacket[]
  dir: string
}

const cleanups: (() => void | Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function harness(o: {bufAlloc?: number; ports?: Record<number, string>} = {}): Promise<Harness> {
  const tmp = tempDir('nle-vsock-dev-')
  cleanups.push(tmp.cleanup)
  const d = new FakeDriver(GUEST)
  const events = new EventEmitter()
  const logs: Harness['logs'] = []
  const device = new VsockDevice({
    guestCid: GUEST,
    ...(o.bufAlloc ? {bufAlloc: o.bufAlloc} : {}),
    closeTimeoutMs: 60_000,
    connectHost: (port) => {
      const path = o.ports?.[port]
      return path ? net.createConnection({path: join(tmp.dir, path), allowHalfOpen: true}) : undefined
    },
    notify: (q) => events.emit(q),
    log: (level, event, fields) => {
      logs.push({level, event, ...fields})
      events.emit('log')
    },
  })
  cleanups.push(() => device.reset('test end'))
  device.setQueues(d.rx.queue(), d.tx.queue())
  d.postRx(48)
  const all: ReceivedPacket[] = []
  const h: Harness = {
    d,
    device,
    logs,
    all,
    dir: tmp.dir,
    until: async (done) => {
      const deadline = Date.now() + DEADLINE_MS
      device.kick('tx')
      for (;;) {
        const got = d.received()
        all.push(...got)
        if (got.length > 0) {
          d.postRx(got.length)
          device.kick('rx')
        }
        if (done(all)) return all
        if (Date.now() > deadline) throw new Error(`not there in time; received: ${all.map((p) => `${p.header.op}:${p.header.len}`).join(' ')}`)
        await Promise.race([once(events, 'rx'), once(events, 'log'), new Promise((r) => setTimeout(r, 200))])
      }
    },
  }
  return h
}

async function echoServer(dir: string, name: string): Promise<net.Server> {
  const server = net.createServer({allowHalfOpen: true}, (s) => s.pipe(s))
  await new Promise<void>((r) => server.listen(join(dir, name), r))
  cleanups.push(() => void server.close())
  return server
}

/** Wait, on the event loop, until `done` holds (the device answers after a host connect). */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS
  while (!done()) {
    if (Date.now() > deadline) throw new Error('not there in time')
    await new Promise((r) => setImmediate(r))
  }
}

const ops = (all: ReceivedPacket[]): number[] => all.map((p) => p.header.op)

/** A host connection into guest port 5000 through the device: the client socket, and the REQUEST the guest saw. */
async function hostConnection(h: Awaited<ReturnType<typeof harness>>): Promise<{client: net.Socket; req: ReceivedPacket | undefined}> {
  const server = net.createServer({allowHalfOpen: true, pauseOnConnect: true}, (s) => h.device.acceptHost(s, 5000))
  await new Promise<void>((r) => server.listen(join(h.dir, 'in.sock'), r))
  cleanups.push(() => void server.close())
  const client = net.createConnection({path: join(h.dir, 'in.sock'), allowHalfOpen: true})
  cleanups.push(() => void client.destroy())
  const [req] = (await h.until((all) => ops(all).includes(Op.REQUEST))).filter((p) => p.header.op === Op.REQUEST)
  return {client, req}
}

describe('virtio-vsock device', () => {
  it('guest → host: REQUEST to CID 3 on a mapped port gets RESPONSE, data echoes through the host socket, shutdowns and RST close it', async () => {
    const h = await harness({ports: {6000: 'echo.sock'}})
    await echoServer(h.dir, 'echo.sock')
    h.d.send({op: Op.REQUEST, dstPort: 6000, srcPort: 1111})
    await h.until((all) => ops(all).includes(Op.RESPONSE))
    expect(h.all[0]!.header).toMatchObject({srcCid: 3n, dstCid: 16n, srcPort: 6000, dstPort: 1111, op: Op.RESPONSE, bufAlloc: 256 * 1024})
    h.d.send({op: Op.RW, dstPort: 6000, srcPort: 1111}, Buffer.from('hello, host'))
    const afterRw = await h.until((all) => all.some((p) => p.header.op === Op.RW))
    expect(afterRw.find((p) => p.header.op === Op.RW)!.payload.toString()).toBe('hello, host')
    h.d.send({op: Op.SHUTDOWN, dstPort: 6000, srcPort: 1111, flags: SHUTDOWN_SEND})
    // The echo server ends in turn: its end-of-file comes back as SHUTDOWN(SEND).
    await h.until((all) => all.some((p) => p.header.op === Op.SHUTDOWN))
    expect(h.all.find((p) => p.header.op === Op.SHUTDOWN)!.header.flags & SHUTDOWN_SEND).toBe(SHUTDOWN_SEND)
    h.d.send({op: Op.SHUTDOWN, dstPort: 6000, srcPort: 1111, flags: SHUTDOWN_RCV | SHUTDOWN_SEND})
    await h.until((all) => ops(all).includes(Op.RST))
    expect(h.device.connectionCount).toBe(0)
  })

  it('answers RST to a request for an unmapped port or a CID that is not the host\'s, and to data on no connection; drops packets with another source CID', async () => {
    const h = await harness({ports: {}})
    h.d.send({op: Op.REQUEST, dstPort: 7777, srcPort: 1})
    h.d.send({op: Op.REQUEST, dstCid: 5n, dstPort: 7777, srcPort: 2})
    h.d.send({op: Op.RW, dstPort: 7777, srcPort: 3}, Buffer.from('x'))
    h.d.send({op: Op.RST, dstPort: 7777, srcPort: 4})
    h.d.send({op: Op.REQUEST, srcCid: 99n, dstPort: 7777, srcPort: 5})
    const all = await h.until((a) => a.length >= 3)
    expect(all.map((p) => [p.header.op, p.header.dstPort])).toEqual([
      [Op.RST, 1],
      [Op.RST, 2],
      [Op.RST, 3],
    ])
    expect(h.device.stats.droppedWrongCid).toBe(1)
  })

  it('a request for a mapped port whose host socket is not there gets RST once the connect fails', async () => {
    const h = await harness({ports: {6000: 'missing.sock'}})
    h.d.send({op: Op.REQUEST, dstPort: 6000, srcPort: 77})
    const all = await h.until((a) => a.length >= 1)
    expect(all.map((p) => [p.header.op, p.header.dstPort])).toEqual([[Op.RST, 77]])
    expect(h.device.connectionCount).toBe(0)
  })

  it('a guest that sends beyond the credit it was given is reset (VSOCK_GUEST_PROTOCOL), and the next connection works', async () => {
    const h = await harness({bufAlloc: 4096, ports: {6000: 'echo.sock', 6001: 'stall.sock'}})
    await echoServer(h.dir, 'echo.sock')
    let closedHost!: () => void
    const closed = new Promise<void>((resolve) => (closedHost = resolve))
    // The two packets arrive in one kick: the second is beyond the credit before any byte is flushed.
    const stall = net.createServer((s) => {
      s.resume()
      s.on('close', () => closedHost())
    })
    await new Promise<void>((r) => stall.listen(join(h.dir, 'stall.sock'), r))
    cleanups.push(() => void stall.close())
    h.d.send({op: Op.REQUEST, dstPort: 6001, srcPort: 10})
    await h.until((all) => ops(all).includes(Op.RESPONSE))
    h.d.send({op: Op.RW, dstPort: 6001, srcPort: 10}, Buffer.alloc(4096, 1))
    h.d.send({op: Op.RW, dstPort: 6001, srcPort: 10}, Buffer.alloc(1, 2))
    await h.until((all) => ops(all).includes(Op.RST))
    expect(h.logs.find((l) => l.event === 'guest_protocol_error')).toMatchObject({code: 'VSOCK_GUEST_PROTOCOL', reason: expect.stringMatching(/credit overrun/)})
    await closed
    h.d.send({op: Op.REQUEST, dstPort: 6000, srcPort: 11})
    await h.until((all) => all.filter((p) => p.header.op === Op.RESPONSE).length === 2)
    expect(h.device.broken).toBeUndefined()
  })

  it('host → guest: a host connection becomes a REQUEST to the guest port; data never exceeds the guest\'s credit, and CREDIT_UPDATE lets more through', async () => {
    const h = await harness()
    const {client, req} = await hostConnection(h)
    expect(req!.header).toMatchObject({srcCid: 3n, dstCid: 16n, dstPort: 5000})
    const port = req!.header.srcPort
    const data = Buffer.alloc(5000)
    for (let i = 0; i < data.length; i++) data[i] = i % 251
    client.write(data)
    // The guest accepts with 1000 bytes of buffer.
    h.d.send({op: Op.RESPONSE, dstPort: port, srcPort: 5000, bufAlloc: 1000, fwdCnt: 0})
    const got: Buffer[] = []
    let consumed = 0
    const rwBytes = (): number => h.all.filter((p) => p.header.op === Op.RW).reduce((n, p) => n + p.payload.length, 0)
    while (consumed < data.length) {
      await h.until(() => rwBytes() - consumed >= Math.min(1000, data.length - consumed) || ops(h.all).includes(Op.CREDIT_REQUEST))
      const inFlight = rwBytes() - consumed
      expect(inFlight).toBeLessThanOrEqual(1000)
      consumed = rwBytes()
      h.d.send({op: Op.CREDIT_UPDATE, dstPort: port, srcPort: 5000, bufAlloc: 1000, fwdCnt: consumed})
    }
    for (const p of h.all) if (p.header.op === Op.RW) got.push(p.payload)
    expect(Buffer.concat(got).equals(data)).toBe(true)
  })

  it('host → guest: when the guest\'s credit stays 0 the device asks for more (CREDIT_REQUEST), and the answer lets the rest through', async () => {
    const h = await harness()
    const {client, req} = await hostConnection(h)
    const port = req!.header.srcPort
    client.write(Buffer.alloc(500, 9))
    h.d.send({op: Op.RESPONSE, dstPort: port, srcPort: 5000, bufAlloc: 100, fwdCnt: 0})
    await h.until((all) => ops(all).includes(Op.CREDIT_REQUEST))
    const rw = (): number => h.all.filter((p) => p.header.op === Op.RW).reduce((n, p) => n + p.payload.length, 0)
    expect(rw()).toBe(100)
    h.d.send({op: Op.CREDIT_UPDATE, dstPort: port, srcPort: 5000, bufAlloc: 1000, fwdCnt: 100})
    await h.until(() => rw() === 500)
    expect(h.device.stats.creditRequests).toBe(1)
  })

  it('a descriptor outside guest memory cuts the guest off (VSOCK_GUEST_FAULT): connections closed, rings ignored, nothing thrown', async () => {
    const h = await harness({ports: {6000: 'echo.sock'}})
    await echoServer(h.dir, 'echo.sock')
    h.d.send({op: Op.REQUEST, dstPort: 6000, srcPort: 1})
    await h.until((all) => ops(all).includes(Op.RESPONSE))
    expect(h.device.connectionCount).toBe(1)
    h.d.tx.setDesc(60, 0x10, 44, VIRTQ_DESC_F_NEXT, 61)
    h.d.tx.setDesc(61, 2 ** 40, 4096, 0)
    h.d.tx.publish(60)
    h.device.kick('tx')
    expect(h.device.broken).toMatch(/outside guest memory|out of range/)
    expect(h.logs.find((l) => l.event === 'guest_fault')).toMatchObject({level: 'error', code: 'VSOCK_GUEST_FAULT'})
    expect(h.device.connectionCount).toBe(0)
    h.d.send({op: Op.REQUEST, dstPort: 6000, srcPort: 2})
    h.device.kick('tx')
    h.device.kick('rx')
    expect(h.d.received()).toEqual([])
    // The front-end stops both rings (the guest reset its device) and starts new ones: it runs again.
    h.device.setQueues(undefined, undefined)
    expect(h.device.broken).toBeUndefined()
    const fresh = new FakeDriver(GUEST)
    h.device.setQueues(fresh.rx.queue(), fresh.tx.queue())
    fresh.postRx(4)
    fresh.send({op: Op.REQUEST, dstPort: 6000, srcPort: 3})
    h.device.kick('tx')
    await until(() => fresh.received().some((p) => p.header.op === Op.RESPONSE))
  })
})
