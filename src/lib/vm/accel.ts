/**
 * Which accelerator QEMU's `nitro-enclave` machine runs under: KVM where it can boot the guest,
 * TCG otherwise.
 *
 * KVM is tried only when the QEMU binary has it and `/dev/kvm` opens read-write. Whether it then
 * boots is up to the host: a KVM without hardware virtualisation (PVM, as on the machines this is
 * developed on: docs/qemu-boot-check.md) stops in the kernel's decompressor with an emulation
 * failure, and QEMU does not exit then (the vCPU is paused): probeAccelerator() boots the kernel
 * alone once under KVM and picks TCG when that happens.
 */
import {spawn} from 'node:child_process'
import {closeSync, constants, openSync} from 'node:fs'

export type Accelerator = 'kvm' | 'tcg'
export type AcceleratorChoice = Accelerator | 'auto'

/** NLE_QEMU_ACCEL=kvm|tcg|auto; anything else is auto. */
export function acceleratorChoice(env: NodeJS.ProcessEnv = process.env): AcceleratorChoice {
  const v = env.NLE_QEMU_ACCEL
  return v === 'kvm' || v === 'tcg' ? v : 'auto'
}

/** Whether the KVM device opens for read and write (what QEMU needs). */
export function kvmDeviceUsable(device = '/dev/kvm'): boolean {
  try {
    closeSync(openSync(device, constants.O_RDWR))
    return true
  } catch {
    return false
  }
}

/**
 * The accelerators to try, in order. `available` is what the QEMU binary lists (`-accel help`;
 * absent means an older cache without the list: TCG only).
 */
export function acceleratorPlan(choice: AcceleratorChoice, available: readonly string[] | undefined, kvmUsable: boolean): Accelerator[] {
  const hasKvm = (available ?? []).includes('kvm') && kvmUsable
  if (choice === 'tcg') return ['tcg']
  if (choice === 'kvm') return hasKvm ? ['kvm'] : []
  return hasKvm ? ['kvm', 'tcg'] : ['tcg']
}

/** QEMU's messages when KVM cannot run the guest (stderr). */
const KVM_FAILURE = /KVM internal error|emulation failure|kvm run failed|failed to initialize kvm|Could not access KVM kernel module|KVM_RUN failed/i

/** The line of QEMU's stderr that says KVM failed, if any. */
export function kvmFailure(stderr: string): string | undefined {
  return stderr.split('\n').find((line) => KVM_FAILURE.test(line))?.trim()
}

export interface AcceleratorProbe {
  qemu: string
  /** The guest kernel (bzImage): its decompressor is where a software-only KVM stops. */
  kernel: string
  firmwareDirs: readonly string[]
  accelerators?: readonly string[]
}

export interface AcceleratorVerdict {
  accelerator: Accelerator
  /** Why: "KVM boots the kernel", or what stopped KVM, or why it was not tried. */
  reason: string
}

/**
 * Boot the kernel alone on QEMU's microvm machine under KVM and watch: the kernel's first console
 * line means KVM works; an emulation failure on stderr, an exit or `timeoutMs` without output
 * means TCG. The probe's QEMU is killed either way. NLE_QEMU_ACCEL=kvm|tcg skips it.
 */
export async function probeAccelerator(p: AcceleratorProbe, o: {env?: NodeJS.ProcessEnv; timeoutMs?: number; kvmDevice?: string} = {}): Promise<AcceleratorVerdict> {
  const choice = acceleratorChoice(o.env)
  const plan = acceleratorPlan(choice, p.accelerators, kvmDeviceUsable(o.kvmDevice))
  if (plan.length === 0) throw new Error('NLE_QEMU_ACCEL=kvm, but this QEMU has no KVM or /dev/kvm does not open')
  if (plan[0] === 'tcg') return {accelerator: 'tcg', reason: choice === 'tcg' ? 'NLE_QEMU_ACCEL=tcg' : 'KVM not available (QEMU without it, or /dev/kvm does not open)'}
  if (choice === 'kvm') return {accelerator: 'kvm', reason: 'NLE_QEMU_ACCEL=kvm'}
  const args = ['-M', 'microvm', '-accel', 'kvm', '-m', '256', '-kernel', p.kernel, '-append', 'console=ttyS0 panic=-1 reboot=k', '-display', 'none', '-serial', 'stdio', '-monitor', 'none', '-no-reboot', '-nodefaults', ...p.firmwareDirs.flatMap((d) => ['-L', d])]
  const child = spawn(p.qemu, args, {stdio: ['ignore', 'pipe', 'pipe']})
  return new Promise<AcceleratorVerdict>((resolve) => {
    let stderr = ''
    let serial = ''
    const done = (v: AcceleratorVerdict): void => {
      clearTimeout(timer)
      child.kill('SIGKILL')
      resolve(v)
    }
    const timer = setTimeout(() => done({accelerator: 'tcg', reason: `KVM: no kernel output within ${o.timeoutMs ?? 30_000} ms`}), o.timeoutMs ?? 30_000)
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString()
      const failure = kvmFailure(stderr)
      if (failure !== undefined) done({accelerator: 'tcg', reason: `KVM cannot boot the kernel here: ${failure}`})
    })
    child.stdout.on('data', (b: Buffer) => {
      serial += b.toString('latin1')
      if (/Linux version /.test(serial)) done({accelerator: 'kvm', reason: 'KVM boots the kernel'})
    })
    // 'close', not 'exit': by then stderr is read, so the reason carries QEMU's last line.
    child.once('close', (code, signal) => done({accelerator: 'tcg', reason: `KVM: QEMU exited (${code ?? signal}) before the kernel printed anything: ${stderr.trim().split('\n').slice(-1)[0] ?? ''}`}))
    child.once('error', (error) => done({accelerator: 'tcg', reason: `KVM: QEMU did not start: ${error.message}`}))
  })
}
