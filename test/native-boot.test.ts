// The bootable native build (issue 18): `nle build --builder native --blobs qemu` of a project made
// the newcomer's way (`nle init`, `nle model synth`: the tiny model) writes an EIF that boots in
// QEMU's nitro-enclave machine, where the real enclave server starts from the installed runtime
// package (start.sh, socat, the pinned Node), loads the model and listens; the PCRs it reads from
// its NSM equal the lockfile's. Over nle's vsock back-end (src/lib/vsock), a host connection goes
// into the guest's vsock port 5000, where start.sh's socat bridges it to the server: /healthz
// answers, and /v1/attestation returns QEMU's (unsigned) document with the lockfile's PCRs.
//
// Needs what `bash scripts/qemu-nitro.sh` caches (see test/qemu-boot.test.ts); skipped with the
// reason printed without it, or with NLE_QEMU=0. Deviations from a real enclave: TCG, acpi=on,
// Debian's cloud kernel and nle's busybox init instead of Nitro's.
import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {request} from 'node:http'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {QEMU_INSECURE_ACKNOWLEDGEMENT, insecurelyAcceptUnsignedQemuAttestation} from '../src/lib/attestation/qemu-insecure.js'
import {readLockfile} from '../src/lib/lockfile.js'
import {ATTESTATION_PATH, HEALTH_PATH} from '../src/lib/protocol/routes.js'
import {jsonResult, runCli} from '../src/test-support/cli.js'
import {TEST_CACHE_DIR} from '../src/test-support/node-cache.js'
import {tempDir} from '../src/test-support/tmp.js'
import {loadQemuManifest} from './qemu/image.js'
import {type ConsoleBoot, bootUntil} from './qemu/run.js'

const found = loadQemuManifest()
const skipReason = process.env.NLE_QEMU === '0' ? 'NLE_QEMU=0' : found.reason
if (skipReason) process.stdout.write(`[native-boot] SKIPPED the native EIF boot test: ${skipReason}\n`)

type Event = {event?: string; component?: string; [k: string]: unknown}
/** The enclave server's JSON log line on the console, if `line` is one. */
function serverEvent(line: string): Event | undefined {
  const i = line.indexOf('{"ts":')
  if (i < 0) return undefined
  try {
    return JSON.parse(line.slice(i)) as Event
  } catch {
    return undefined
  }
}
/** GET over a Unix socket: status and body (bounded). */
function getUnix(socketPath: string, path: string): Promise<{status: number; body: Buffer}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath, path, method: 'GET', timeout: 120_000}, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > 1 << 20) req.destroy(new Error('response over 1 MiB'))
        else chunks.push(c)
      })
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(chunks)}))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer`)))
    req.on('error', reject)
    req.end()
  })
}

const is = (event: string) => (line: string): boolean => serverEvent(line)?.event === event

interface BuildJson {
  eif: {path: string; size: number; bootable: boolean}
  measurements: {PCR0: string; PCR1: string; PCR2: string}
  inputs: Record<string, string>
  blobs: {kind: string}
  runtime?: {packages: number; files: number; bytes: number}
  stages: {stage: string; ms: number}[]
}

describe.skipIf(skipReason !== undefined)('[qemu] a native EIF of a real project boots the enclave server (TCG or KVM as probed, acpi=on deviation)', () => {
  const manifest = found.manifest!
  let tmp: ReturnType<typeof tempDir>
  let project: string
  let built: BuildJson
  let boot: ConsoleBoot | undefined

  beforeAll(async () => {
    tmp = tempDir('nle-native-boot-')
    project = join(tmp.dir, 'booted')
    const env = {NLE_CACHE_DIR: TEST_CACHE_DIR}
    expect((await runCli(['init', project], {env})).exitCode).toBe(0)
    const synth = await runCli(['model', 'synth'], {cwd: project, env})
    expect(synth.exitCode, synth.stderr).toBe(0)
    const r = await runCli(['build', '--builder', 'native', '--blobs', 'qemu', '--json'], {cwd: project, env, timeout: 600_000})
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    built = jsonResult<BuildJson>(r)
    const system = Object.keys(built.inputs).filter((k) => k.startsWith('system/'))
    process.stdout.write(
      `[native-boot] EIF ${built.eif.size} bytes; ${system.length} system files from this host; runtime ${built.runtime?.packages} packages, ${built.runtime?.files} files, ${((built.runtime?.bytes ?? 0) / 1e6).toFixed(1)} MB; ` +
        `stages ${built.stages.map((s) => `${s.stage} ${Math.round(s.ms)} ms`).join(', ')}\n`,
    )
  }, 700_000)
  afterAll(() => tmp?.cleanup())

  it('[qemu] the build is bootable with the QEMU kernel, and the lockfile names every file taken from this host', async () => {
    expect(built.eif.bootable).toBe(true)
    expect(built.blobs.kind).toBe('qemu')
    const lock = await readLockfile(join(project, 'nle.lock.json'))
    expect(lock.measurements).toEqual(built.measurements)
    expect(Object.keys(lock.inputs)).toEqual(expect.arrayContaining(['node', 'modelManifest', 'runtimeBundle', 'system/bin/sh', 'system/usr/bin/socat', 'system/lib64/ld-linux-x86-64.so.2']))
    expect(Object.keys(lock.inputs).some((k) => /^system\/.*libstdc\+\+\.so/.test(k))).toBe(true)
  })

  it('[qemu] boots; start.sh starts the server from the installed runtime package, which loads the model and listens; its NSM reports the lockfile\'s PCRs', async () => {
    const hostSocket = join(tmp.dir, 'enclave-5000.sock')
    const nonce = new Uint8Array(randomBytes(32))
    const lockPcrs = JSON.parse(readFileSync(join(project, 'nle.lock.json'), 'utf8')) as {measurements: {PCR0: string; PCR1: string; PCR2: string}}
    let health: {status: number; body: Buffer} | undefined
    let attested: ReturnType<typeof insecurelyAcceptUnsignedQemuAttestation> | undefined
    boot = await bootUntil({
      manifest,
      eif: built.eif.path,
      workDir: tmp.dir,
      timeoutMs: 420_000,
      // A host connection to hostSocket becomes a connection to the guest's vsock port 5000 (vsockPort).
      backendArgs: ['--listen', `5000=${hostSocket}`],
      whileUp: async () => {
        health = await getUnix(hostSocket, HEALTH_PATH)
        const doc = await getUnix(hostSocket, `${ATTESTATION_PATH}?nonce=${Buffer.from(nonce).toString('hex')}`)
        expect(doc.status).toBe(200)
        attested = insecurelyAcceptUnsignedQemuAttestation(new Uint8Array(doc.body), {acknowledge: QEMU_INSECURE_ACKNOWLEDGEMENT, expectedPcrs: {PCR0: lockPcrs.measurements.PCR0, PCR1: lockPcrs.measurements.PCR1, PCR2: lockPcrs.measurements.PCR2}, expectedNonce: nonce, maxAgeMs: 600_000})
      },
      done: is('listening'),
      fail: (line) => line.startsWith('nle-init: FAILED') || line.startsWith('nle-init: application exited') || serverEvent(line)?.level === 'error',
      marks: {init: (l) => l.startsWith('nle-init: running'), measurements: is('measurements'), modelLoaded: is('model_loaded'), listening: is('listening')},
    })
    const m = boot.marks
    process.stdout.write(
      `[native-boot] QEMU start → init runs start.sh ${Math.round(m.init ?? -1)} ms → PCRs read ${Math.round(m.measurements ?? -1)} ms → model loaded ${Math.round(m.modelLoaded ?? -1)} ms → listening ${Math.round(m.listening ?? -1)} ms ` +
        `(server start → listening ${Math.round((m.listening ?? 0) - (m.init ?? 0))} ms)\n`,
    )
    // The vsock bridge: socat reports nothing (it did once, "Address family not supported", before
    // the image carried the vsock transport), and the server answered through it.
    for (const l of boot.lines.filter((x) => /socat\[\d+\]/.test(x))) process.stdout.write(`[native-boot] console: ${l}\n`)
    expect(boot.lines.filter((x) => /socat\[\d+\] E /.test(x))).toEqual([])
    expect(health?.status).toBe(200)
    expect(attested?.pcrChecks.filter((c) => c.expected !== null).map((c) => c.status)).toEqual(['match', 'match', 'match'])
    process.stdout.write(`[native-boot] over vsock: ${HEALTH_PATH} ${health?.status}; ${ATTESTATION_PATH} → QEMU's unsigned document, PCR0/1/2 equal the lockfile's, nonce echoed\n`)
    const events = boot.lines.map(serverEvent).filter((e): e is Event => e !== undefined)
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['measurements', 'model_loaded', 'listening']))
    const order = ['measurements', 'model_loaded', 'listening'].map((e) => events.findIndex((x) => x.event === e))
    expect([...order].sort((a, b) => a - b)).toEqual(order)
    const listening = events.find((e) => e.event === 'listening')!
    expect(listening).toMatchObject({component: 'enclave-server', socket: '/run/nle/server.sock'})
    const measured = events.find((e) => e.event === 'measurements')!
    const lock = JSON.parse(readFileSync(join(project, 'nle.lock.json'), 'utf8')) as {measurements: Record<string, string>}
    for (const i of [0, 1, 2]) process.stdout.write(`[native-boot] guest PCR${i} ${String(measured[`PCR${i}`])} ${measured[`PCR${i}`] === lock.measurements[`PCR${i}`] ? '== lockfile' : '!= lockfile'}\n`)
    expect({PCR0: measured.PCR0, PCR1: measured.PCR1, PCR2: measured.PCR2}).toEqual({PCR0: lock.measurements.PCR0, PCR1: lock.measurements.PCR1, PCR2: lock.measurements.PCR2})
  }, 600_000)
})
