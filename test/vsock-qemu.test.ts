// nle's vhost-user-vsock back-end (src/lib/vsock) against QEMU's nitro-enclave machine (TCG,
// acpi=on as in test/qemu-boot.test.ts): the guest (test/qemu/vsock-guest.mjs, AF_VSOCK through
// koffi) connects to the parent, CID 3, and host sockets connect into the guest, both ways with
// the bytes checked; a transfer of several MiB each way (credit flow) is checked by SHA-256 and
// its throughput printed next to a Unix-socket pair's in the same run.
//
// Needs what `bash scripts/qemu-nitro.sh` caches (skipped with the reason printed otherwise;
// NLE_QEMU=0 skips on purpose).   npx vitest run test/vsock-qemu.test.ts
import {createHash, randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import net from 'node:net'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {pinnedNodeBinary} from '../src/lib/host/node-runtime.js'
import {TEST_CACHE_DIR} from '../src/test-support/node-cache.js'
import {tempDir} from '../src/test-support/tmp.js'
import {CMDLINE, buildProbeEif, loadQemuManifest} from './qemu/image.js'
import {ENCLAVE_CID, accelerator, stop} from './qemu/run.js'
import {type Backend, type Vm, bootVm, startBackend, vsockGuestVariant} from './qemu/vsock.js'

const BIG = Number(process.env.NLE_VSOCK_TEST_BYTES ?? 8 * 1024 * 1024)
const HOST_ECHO_PORT = 6000
const HOST_SINK_PORT = 6001
const GUEST_ECHO_PORT = 5000
const GUEST_SINK_PORT = 5001

const found = loadQemuManifest()
const skipReason = process.env.NLE_QEMU === '0' ? 'NLE_QEMU=0' : found.reason
if (skipReason) process.stdout.write(`[vsock-qemu] SKIPPED the vsock tests against QEMU: ${skipReason}\n`)

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
function cpuSeconds(pid: number | undefined): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const mbps = (bytes: number, ms: number): string => (bytes / 1024 / 1024 / (ms / 1000)).toFixed(1)

/** The last transfer a sink received: its bytes and the milliseconds from its first byte to its end, on the host's clock. */
const lastSink = {bytes: 0, ms: 0}

/** A Unix-socket server: echo (every byte back, end after end) or sink (answers "<sha256>\n" at end). */
function hostServer(path: string, kind: 'echo' | 'sink'): Promise<net.Server> {
  const server = net.createServer({allowHalfOpen: true}, (s) => {
    if (kind === 'echo') {
      s.pipe(s)
      return
    }
    const h = createHash('sha256')
    let first = 0
    let bytes = 0
    s.on('data', (d: Buffer) => {
      if (bytes === 0) first = performance.now()
      bytes += d.length
      h.update(d)
    })
    s.on('end', () => {
      Object.assign(lastSink, {bytes, ms: performance.now() - first})
      s.end(`${h.digest('hex')}\n`)
    })
  })
  return new Promise((resolve) => server.listen(path, () => resolve(server)))
}

/** Connect to `path`, send `data`, end, and collect everything until the other side ends. */
function exchange(path: string, data: Uint8Array): Promise<{back: Buffer; ms: number}> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const s = net.createConnection({path, allowHalfOpen: true})
    const chunks: Buffer[] = []
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('end', () => {
      s.end()
      resolve({back: Buffer.concat(chunks), ms: performance.now() - t0})
    })
    s.on('error', reject)
    s.end(data)
  })
}

describe.skipIf(skipReason !== undefined)('[qemu] nle vhost-user-vsock back-end in QEMU nitro-enclave (TCG or KVM as probed, acpi=on deviation)', () => {
  const manifest = found.manifest!
  let tmp: ReturnType<typeof tempDir>
  let backend: Backend
  let vm: Vm
  const servers: net.Server[] = []
  const path = (name: string): string => join(tmp.dir, name)
  const figures: string[] = []

  beforeAll(async () => {
    tmp = tempDir('nle-vsock-qemu-')
    const node = await pinnedNodeBinary({env: {...process.env, NLE_CACHE_DIR: TEST_CACHE_DIR}})
    const eif = await buildProbeEif(manifest, path('vsock.eif'), node, CMDLINE, vsockGuestVariant(manifest))
    servers.push(await hostServer(path('host-echo.sock'), 'echo'), await hostServer(path('host-sink.sock'), 'sink'))
    backend = await startBackend(
      [
        '--socket', path('vhost.sock'),
        '--cid', String(ENCLAVE_CID),
        '--connect', `${HOST_ECHO_PORT}=${path('host-echo.sock')}`,
        '--connect', `${HOST_SINK_PORT}=${path('host-sink.sock')}`,
        '--listen', `${GUEST_ECHO_PORT}=${path('guest-echo.sock')}`,
        '--listen', `${GUEST_SINK_PORT}=${path('guest-sink.sock')}`,
        ...(process.env.NLE_VSOCK_VERBOSE ? ['--verbose'] : []),
      ],
      {NLE_EXIT_WITH_PARENT: '1'},
    )
    const t0 = performance.now()
    vm = bootVm(manifest, eif.path, path('vhost.sock'), (await accelerator(manifest)).accelerator)
    await vm.line('VSOCK-GUEST READY', 300_000)
    process.stdout.write(`[vsock-qemu] boot → guest program ready ${Math.round(performance.now() - t0)} ms (EIF ${eif.size} bytes)\n`)
  }, 600_000)

  afterAll(async () => {
    if (figures.length > 0) process.stdout.write(`[vsock-qemu] ${figures.join('\n[vsock-qemu] ')}\n`)
    await stop(vm?.qemu)
    await stop(backend?.child)
    for (const s of servers) s.close()
    tmp?.cleanup()
  }, 60_000)

  async function guest(command: string): Promise<string[]> {
    vm.send(command)
    const line = await vm.line('RESULT', 600_000)
    return line.split(' ').slice(1)
  }

  it('[qemu] a guest connection to CID 3 port P reaches the host socket mapped for P, and the bytes echo back', async () => {
    const [kind, status, , bytes] = await guest(`ECHO ${HOST_ECHO_PORT} 65536`)
    expect([kind, status, bytes]).toEqual(['ECHO', 'ok', '65536'])
  }, 600_000)

  it('[qemu] a host connection to the socket mapped for guest port Q reaches the guest\'s port Q, and the bytes echo back', async () => {
    const data = randomBytes(65536)
    const {back} = await exchange(path('guest-echo.sock'), data)
    expect(back.length).toBe(data.length)
    expect(sha256(back)).toBe(sha256(data))
  }, 600_000)

  it('[qemu] a guest connection to a port nobody mapped is refused (RST: the guest\'s connect fails with ECONNRESET)', async () => {
    const [kind, ...rest] = await guest('ECHO 6999 16')
    expect(kind).toBe('ERROR')
    expect(rest.join(' ')).toMatch(/connect 3:6999 failed \(errno 104\)/)
  }, 600_000)

  it('[qemu] 16 host connections at once into the guest\'s echo port: each one\'s bytes come back intact', async () => {
    const runs = Array.from({length: 16}, () => randomBytes(128 * 1024))
    const backs = await Promise.all(runs.map((data) => exchange(path('guest-echo.sock'), data)))
    backs.forEach(({back}, i) => expect(sha256(back), `connection ${i}`).toBe(sha256(runs[i]!)))
  }, 600_000)

  it(`[qemu] ${BIG} bytes guest → host arrive intact (SHA-256; credit flow), throughput printed`, async () => {
    const cpu0 = cpuSeconds(backend.child.pid)
    const [kind, status, sha, reply, ms] = await guest(`SEND ${HOST_SINK_PORT} ${BIG}`)
    const cpu = cpuSeconds(backend.child.pid) - cpu0
    expect([kind, status]).toEqual(['SEND', 'ok'])
    expect(reply).toBe(sha)
    expect(lastSink.bytes).toBe(BIG)
    figures.push(
      `guest → host ${BIG} bytes: ${mbps(BIG, lastSink.ms)} MB/s on the host's clock (first byte to end, ${lastSink.ms.toFixed(1)} ms); ${mbps(BIG, Number(ms))} MB/s on the guest's (connect to answer, ${ms} ms); back-end CPU ${cpu.toFixed(2)} s`,
    )
  }, 600_000)

  it(`[qemu] ${BIG} bytes host → guest arrive intact (SHA-256; credit flow), throughput printed`, async () => {
    const data = randomBytes(BIG)
    const cpu0 = cpuSeconds(backend.child.pid)
    const {back, ms} = await exchange(path('guest-sink.sock'), data)
    const cpu = cpuSeconds(backend.child.pid) - cpu0
    expect(back.toString().trim()).toBe(`${sha256(data)} ${BIG}`)
    figures.push(`host → guest ${BIG} bytes in ${ms.toFixed(1)} ms: ${mbps(BIG, ms)} MB/s (measured on the host, connect to answer; back-end CPU ${cpu.toFixed(2)} s)`)
  }, 600_000)

  it('[qemu] one-byte round trips guest → host echo → guest, against the same over a Unix-socket pair', async () => {
    const count = 200
    const [kind, status, n, ms] = await guest(`RTT ${HOST_ECHO_PORT} ${count}`)
    expect([kind, status, n]).toEqual(['RTT', 'ok', String(count)])
    const s = net.createConnection(path('host-echo.sock'))
    await once(s, 'connect')
    const t0 = performance.now()
    for (let i = 0; i < count; i++) {
      const back = once(s, 'data')
      s.write(Buffer.from([i & 0xff]))
      await back
    }
    const refMs = performance.now() - t0
    s.destroy()
    figures.push(`round trip (1 byte, guest → host echo → guest): ${((1000 * Number(ms)) / count).toFixed(0)} µs, Unix-socket pair on the host ${((1000 * refMs) / count).toFixed(0)} µs (${count} each)`)
  }, 600_000)

  it('[qemu] the same transfer over a Unix-socket pair on the host (the reference figure)', async () => {
    const server = await hostServer(path('ref-sink.sock'), 'sink')
    const data = randomBytes(BIG)
    const {back, ms} = await exchange(path('ref-sink.sock'), data)
    server.close()
    expect(back.toString().trim()).toBe(sha256(data))
    figures.push(`Unix-socket pair ${BIG} bytes in ${ms.toFixed(1)} ms: ${mbps(BIG, ms)} MB/s (same run, host only)`)
  }, 120_000)

  it('[qemu] when the guest powers off, QEMU exits and so does the back-end (front-end disconnected), leaving its sockets removed', async () => {
    await guest('QUIT')
    const q = await vm.exited
    expect(q.code).toBe(0)
    const b = await backend.exited
    expect(b.code, backend.stderr()).toBe(0)
    expect(backend.stderr()).toContain('"reason":"front-end disconnected"')
    figures.push(`back-end at exit: ${backend.stderr().split('\n').find((l) => l.includes('"event":"stopped"'))}`)
    expect(backend.stderr()).not.toContain('"level":"error"')
    expect(existsSync(path('vhost.sock'))).toBe(false)
    expect(existsSync(path('guest-echo.sock'))).toBe(false)
  }, 120_000)
})
