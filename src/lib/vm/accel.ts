/**
 * Which accelerator QEMU's `nitro-enclave` machine runs under: KVM where it can boot the guest,
 * TCG otherwise.
 *
 * KVM is tried only when the QEMU binary has it and `/dev/kvm` opens read-write. Whether it then
 * boots is up to the host: a KVM without hardware virtualisation (PVM, as on the machines this is
 * developed on: docs/qemu-boot-check.md) stops in the kernel's decompressor with an emulation
 * failure. QEMU does not exit then (the vCPU is paused), so the runner watches QEMU's stderr for
 * `kvmFailure()` and boots again under TCG.
 */
import {constants, openSync, closeSync} from 'node:fs'

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
