// Boots an EIF in QEMU's nitro-enclave machine (TCG, acpi=on) next to nle's vhost-user-vsock back-end,
// answers the probe's READY with a challenge on the serial console, and collects the attestation
// document it prints. Both processes are killed whatever happens (and on worker exit).
import {type ChildProcess, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {rmSync} from 'node:fs'
import {join} from 'node:path'

import {PROBE_MARKERS as MARKERS} from '../../runtime/enclave-server/attest-probe-protocol.js'
import {type Accelerator, type AcceleratorVerdict, probeAccelerator} from '../../src/lib/vm/accel.js'
import {startBackend} from './backend.js'
import type {QemuManifest} from './image.js'

export interface Challenge {
  nonce: Uint8Array
  userData: Uint8Array
  publicKey: Uint8Array
}

export interface BootResult {
  document: Uint8Array
  describe: Record<string, unknown>
  serial: string
  /** Milliseconds from spawning QEMU to: the probe's READY line, the END line. */
  readyMs: number
  attestedMs: number
  qemuArgs: string[]
}

export const ENCLAVE_CID = 16

let verdict: Promise<AcceleratorVerdict> | undefined
/** KVM where it boots the kernel, else TCG (src/lib/vm/accel.ts); decided once per test worker and printed. */
export async function accelerator(m: QemuManifest): Promise<AcceleratorVerdict> {
  verdict ??= probeAccelerator(m).then((v) => {
    process.stdout.write(`[qemu] accelerator: ${v.accelerator} (${v.reason})\n`)
    return v
  })
  return verdict
}

export function qemuArgs(m: QemuManifest, eif: string, socket: string, accelerator: Accelerator = 'tcg'): string[] {
  return [
    // acpi=on deviates from real enclaves (and QEMU's default for this machine): the cloud
    // kernel finds virtio-mmio devices only through ACPI.
    '-M', 'nitro-enclave,vsock=vsock0,acpi=on,id=nle-qemu-probe',
    '-accel', accelerator,
    '-smp', '2',
    // 2048 MiB hangs the guest kernel right after "ACPI: Core revision" (microvm's memory
    // layout + ACPI); 1024 MiB boots and holds the ~120 MB image and Node comfortably.
    '-m', '1024',
    '-kernel', eif,
    '-display', 'none',
    '-serial', 'stdio',
    '-monitor', 'none',
    '-no-reboot',
    ...m.firmwareDirs.flatMap((d) => ['-L', d]),
    '-chardev', `socket,id=vsock0,path=${socket}`,
  ]
}

/**
 * QEMU's serial console (its stdout) as lines: `onLine` for each complete line, `\r` removed;
 * returns the whole text read so far. One reader for every runner here.
 */
export function serialConsole(q: ChildProcess, onLine: (line: string) => void): () => string {
  let serial = ''
  let pending = ''
  q.stdout!.on('data', (b: Buffer) => {
    const text = b.toString('latin1')
    serial += text
    pending += text
    const parts = pending.split('\n')
    pending = parts.pop()!
    for (const raw of parts) onLine(raw.replace(/\r/g, ''))
  })
  return () => serial
}

const live = new Set<ChildProcess>()
let exitHookInstalled = false
function track(child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL')
    })
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stop(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!child || exited(child)) return
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await gone
  clearTimeout(timer)
}

function parseProbeOutput(lines: string[]): {document: Uint8Array; describe: Record<string, unknown>} {
  const begin = lines.findIndex((l) => l === MARKERS.begin)
  const end = lines.findIndex((l, i) => i > begin && l === MARKERS.end)
  if (begin < 0 || end < 0) throw new Error('no BEGIN/END block in the serial log')
  const block = lines.slice(begin + 1, end)
  const describeLine = block.find((l) => l.startsWith(`${MARKERS.describe} `))
  const shaLine = block.find((l) => l.startsWith(`${MARKERS.sha256} `))
  if (!describeLine || !shaLine) throw new Error('the probe block lacks the DescribeNSM or SHA-256 line')
  const b64 = block
    .filter((l) => l.startsWith(`${MARKERS.doc} `))
    .map((l) => l.slice(MARKERS.doc.length + 1))
    .join('')
  const document = new Uint8Array(Buffer.from(b64, 'base64'))
  const sha = createHash('sha256').update(document).digest('hex')
  if (sha !== shaLine.slice(MARKERS.sha256.length + 1)) throw new Error('the document read from the serial log does not match the SHA-256 the probe printed (a mangled line)')
  return {document, describe: JSON.parse(describeLine.slice(MARKERS.describe.length + 1)) as Record<string, unknown>}
}

/**
 * Boot `eif`, send `challenge` when the probe is ready, return the document it printed.
 * Rejects (with the serial log's tail) on a probe error, an early QEMU exit or `timeoutMs`.
 */
export async function bootProbe(o: {manifest: QemuManifest; eif: string; workDir: string; challenge: Challenge; timeoutMs: number; onLine?: (line: string) => void}): Promise<BootResult> {
  const socket = join(o.workDir, 'vhost-user-vsock.sock')
  let backend: ChildProcess | undefined
  let qemu: ChildProcess | undefined
  let serial: () => string = () => ''
  let stderr = ''
  let finished = false
  const args = qemuArgs(o.manifest, o.eif, socket, (await accelerator(o.manifest)).accelerator)
  try {
    backend = (await startBackend(['--socket', socket, '--cid', String(ENCLAVE_CID)])).child
    const t0 = performance.now()
    qemu = spawn(o.manifest.qemu, args, {stdio: ['pipe', 'pipe', 'pipe']})
    track(qemu)
    const q = qemu
    q.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))
    q.stdin!.on('error', () => {}) // EPIPE after QEMU exits
    const tail = (): string => `\n--- serial (last 3000 chars):\n${serial().slice(-3000)}\n--- qemu stderr:\n${stderr.slice(-2000)}`

    return await new Promise<BootResult>((resolve, reject) => {
      const lines: string[] = []
      let readyMs = -1
      const timer = setTimeout(() => reject(new Error(`no attestation within ${o.timeoutMs} ms${tail()}`)), o.timeoutMs)
      const finish = (fn: () => void): void => {
        clearTimeout(timer)
        fn()
      }
      serial = serialConsole(q, (line) => {
        lines.push(line)
        o.onLine?.(line)
        if (line === MARKERS.ready && readyMs < 0) {
          readyMs = performance.now() - t0
          const c = o.challenge
          const b64 = (x: Uint8Array): string => Buffer.from(x).toString('base64')
          q.stdin!.write(`${MARKERS.challenge} nonce=${b64(c.nonce)} user_data=${b64(c.userData)} public_key=${b64(c.publicKey)}\n`)
        } else if (line.startsWith(MARKERS.error)) {
          finish(() => reject(new Error(`the probe failed: ${line}${tail()}`)))
        } else if (line === MARKERS.end) {
          const attestedMs = performance.now() - t0
          try {
            const parsed = parseProbeOutput(lines)
            finished = true
            finish(() => resolve({...parsed, serial: serial(), readyMs, attestedMs, qemuArgs: args}))
          } catch (error) {
            finish(() => reject(new Error(`${(error as Error).message}${tail()}`)))
          }
        }
      })
      q.once('exit', (code, signal) => finish(() => reject(new Error(`QEMU exited (${code ?? signal}) before the probe finished${tail()}`))))
      q.once('error', (error) => finish(() => reject(error)))
    })
  } finally {
    // After END the probe exits and init powers the machine off: give that a moment (a clean
    // shutdown); on any failure, or if it does not happen, kill.
    if (finished && qemu && !exited(qemu)) {
      const q = qemu
      await Promise.race([new Promise((r) => q.once('exit', r)), new Promise((r) => setTimeout(r, 20_000))])
    }
    await stop(qemu)
    await stop(backend)
    rmSync(socket, {force: true})
  }
}

export interface ConsoleBoot {
  /** Every serial line until the wanted one (carriage returns removed). */
  lines: string[]
  /** Milliseconds from spawning QEMU to each line `marks` asked for, by its name. */
  marks: Record<string, number>
}

/**
 * Boot `eif` and read its serial console until `done(line)` holds; `marks` name lines whose time
 * (from spawning QEMU) to record. QEMU and the vsock back-end are killed afterwards, whatever happens.
 * Rejects (with the serial log's tail) when `fail(line)` holds, QEMU exits first, or `timeoutMs`.
 */
export async function bootUntil(o: {
  manifest: QemuManifest
  eif: string
  workDir: string
  timeoutMs: number
  done: (line: string) => boolean
  fail?: (line: string) => boolean
  marks?: Record<string, (line: string) => boolean>
  /** More arguments for the vsock back-end (e.g. `--listen PORT=SOCKET`: host connections into the guest). */
  backendArgs?: string[]
  /** Run once `done` holds, with the machine still up (it is stopped after). */
  whileUp?: () => Promise<void>
}): Promise<ConsoleBoot> {
  const socket = join(o.workDir, 'vhost-user-vsock.sock')
  let backend: ChildProcess | undefined
  let qemu: ChildProcess | undefined
  let serial: () => string = () => ''
  let stderr = ''
  try {
    const accel = (await accelerator(o.manifest)).accelerator
    backend = (await startBackend(['--socket', socket, '--cid', String(ENCLAVE_CID), ...(o.backendArgs ?? [])])).child
    const t0 = performance.now()
    qemu = spawn(o.manifest.qemu, qemuArgs(o.manifest, o.eif, socket, accel), {stdio: ['ignore', 'pipe', 'pipe']})
    track(qemu)
    const q = qemu
    q.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))
    const tail = (): string => `\n--- serial (last 4000 chars):\n${serial().slice(-4000)}\n--- qemu stderr:\n${stderr.slice(-2000)}`
    return await new Promise<ConsoleBoot>((resolve, reject) => {
      const lines: string[] = []
      const marks: Record<string, number> = {}
      let settled = false
      const timer = setTimeout(() => finish(() => reject(new Error(`the wanted console line did not come within ${o.timeoutMs} ms${tail()}`))), o.timeoutMs)
      const finish = (fn: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        fn()
      }
      serial = serialConsole(q, (line) => {
        lines.push(line)
        for (const [name, test] of Object.entries(o.marks ?? {})) if (marks[name] === undefined && test(line)) marks[name] = performance.now() - t0
        if (o.fail?.(line)) finish(() => reject(new Error(`the guest failed: ${line}${tail()}`)))
        else if (o.done(line)) {
          const up = o.whileUp ?? (async () => {})
          finish(() => resolve(up().then(() => ({lines, marks}))))
        }
      })
      q.once('exit', (code, signal) => finish(() => reject(new Error(`QEMU exited (${code ?? signal}) before the wanted console line${tail()}`))))
      q.once('error', (error) => finish(() => reject(error)))
    })
  } finally {
    await stop(qemu)
    await stop(backend)
    rmSync(socket, {force: true})
  }
}
