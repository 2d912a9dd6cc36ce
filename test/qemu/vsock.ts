// Pieces of the vsock test against QEMU: the guest image (the probe image with the vsock modules
// and test/qemu/vsock-guest.mjs as its program), nle's vhost-user-vsock back-end as a child
// process, and a QEMU whose serial console is read line by line.
import {type ChildProcess, spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import type {CpioEntry} from '../../src/lib/eif/cpio.js'
import {vsockModuleName} from '../../src/lib/host/blobs.js'
import {type ImageVariant, type QemuManifest, REPO} from './image.js'
import {qemuArgs, serialConsole} from './run.js'
import type {Accelerator} from '../../src/lib/vm/accel.js'

export {type Backend, startBackend} from './backend.js'

/** The vsock test's image variant: the guest program, and the guest kernel's vsock modules (scripts/qemu-nitro.sh unpacks them: manifest.vsockKos). */
export function vsockGuestVariant(m: QemuManifest): ImageVariant {
  if (m.vsockKos === undefined) throw new Error('the QEMU cache has no vsock modules (manifest.vsockKos): run `bash scripts/qemu-nitro.sh` again')
  const bootstrapFiles: CpioEntry[] = m.vsockKos.map((path) => ({name: `${vsockModuleName(path)}.ko`, type: 'file', mode: 0o644, data: readFileSync(path)}))
  return {program: {name: 'vsock-guest.mjs', data: readFileSync(join(REPO, 'test/qemu/vsock-guest.mjs'))}, bootstrapFiles}
}

const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL')
})

export interface Vm {
  qemu: ChildProcess
  /** Resolves with the first serial line (from now on, or already seen after `from`) that starts with `prefix`. */
  line: (prefix: string, timeoutMs: number) => Promise<string>
  send: (line: string) => void
  serial: () => string
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

export function bootVm(m: QemuManifest, eif: string, socket: string, accel: Accelerator = 'tcg'): Vm {
  const qemu = spawn(m.qemu, qemuArgs(m, eif, socket, accel), {stdio: ['pipe', 'pipe', 'pipe']})
  live.add(qemu)
  let stderr = ''
  const lines: string[] = []
  const waiters: {prefix: string; resolve: (l: string) => void; seen: number}[] = []
  let consumed = 0
  qemu.stderr!.on('data', (b: Buffer) => (stderr += b.toString()))
  qemu.stdin!.on('error', () => {})
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
    qemu.once('exit', (code, signal) => {
      live.delete(qemu)
      resolve({code, signal})
    }),
  )
  const serial = serialConsole(qemu, (line) => {
    lines.push(line)
    for (const w of [...waiters]) {
      if (line.startsWith(w.prefix)) {
        waiters.splice(waiters.indexOf(w), 1)
        consumed = lines.length
        w.resolve(line)
      }
    }
  })
  const tail = (): string => `\n--- serial (last 3000):\n${serial().slice(-3000)}\n--- qemu stderr:\n${stderr.slice(-2000)}`
  return {
    qemu,
    serial,
    exited,
    send: (line) => qemu.stdin!.write(`${line}\n`),
    line: (prefix, timeoutMs) =>
      new Promise((resolve, reject) => {
        const already = lines.slice(consumed).find((l) => l.startsWith(prefix))
        if (already) {
          consumed = lines.indexOf(already, consumed) + 1
          return resolve(already)
        }
        const timer = setTimeout(() => reject(new Error(`no serial line starting "${prefix}" within ${timeoutMs} ms${tail()}`)), timeoutMs)
        const w = {prefix, seen: lines.length, resolve: (l: string) => (clearTimeout(timer), resolve(l))}
        waiters.push(w)
        void exited.then(({code, signal}) => {
          if (waiters.includes(w)) {
            clearTimeout(timer)
            reject(new Error(`QEMU exited (${code ?? signal}) before "${prefix}"${tail()}`))
          }
        })
      }),
  }
}
