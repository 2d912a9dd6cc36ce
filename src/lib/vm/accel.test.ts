import {mkdtempSync, rmSync, writeFileSync, chmodSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {acceleratorChoice, acceleratorPlan, kvmDeviceUsable, kvmFailure, probeAccelerator} from './accel.js'

describe('accelerator plan', () => {
  it('tries KVM then TCG only when the binary has KVM and the device opens', () => {
    expect(acceleratorPlan('auto', ['tcg', 'kvm'], true)).toEqual(['kvm', 'tcg'])
    expect(acceleratorPlan('auto', ['tcg', 'kvm'], false)).toEqual(['tcg'])
    expect(acceleratorPlan('auto', ['tcg'], true)).toEqual(['tcg'])
    expect(acceleratorPlan('auto', undefined, true)).toEqual(['tcg'])
  })

  it('honours an explicit choice; KVM asked for but unusable gives nothing to try', () => {
    expect(acceleratorPlan('tcg', ['tcg', 'kvm'], true)).toEqual(['tcg'])
    expect(acceleratorPlan('kvm', ['tcg', 'kvm'], true)).toEqual(['kvm'])
    expect(acceleratorPlan('kvm', ['tcg'], true)).toEqual([])
  })

  it('reads NLE_QEMU_ACCEL', () => {
    expect(acceleratorChoice({NLE_QEMU_ACCEL: 'tcg'})).toBe('tcg')
    expect(acceleratorChoice({NLE_QEMU_ACCEL: 'kvm'})).toBe('kvm')
    expect(acceleratorChoice({NLE_QEMU_ACCEL: 'fast'})).toBe('auto')
    expect(acceleratorChoice({})).toBe('auto')
  })
})

describe('KVM failure on stderr', () => {
  it('finds the emulation failure QEMU prints under PVM', () => {
    // What QEMU 10.0.2 printed here under kvm_pvm (docs/qemu-boot-check.md), shortened.
    const stderr = 'KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000000\nemulation failure\nRAX=0000000000000001 RBX=…\n'
    expect(kvmFailure(stderr)).toBe('KVM internal error. Suberror: 1')
  })

  it('says nothing for an ordinary boot', () => {
    expect(kvmFailure('qemu-system-x86_64: warning: host doesn\'t support requested feature: CPUID.01H:ECX.pni [bit 0]\n')).toBeUndefined()
  })
})

describe('KVM device', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nle-accel-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))

  it('is unusable when missing or not writable', () => {
    expect(kvmDeviceUsable(join(dir, 'absent'))).toBe(false)
    const readOnly = join(dir, 'ro')
    writeFileSync(readOnly, '')
    chmodSync(readOnly, 0o444)
    // root opens anything; the check is meaningful only for other users.
    if (process.getuid?.() !== 0) expect(kvmDeviceUsable(readOnly)).toBe(false)
    const writable = join(dir, 'rw')
    writeFileSync(writable, '')
    expect(kvmDeviceUsable(writable)).toBe(true)
  })
})

describe('probeAccelerator (fake QEMU executables)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nle-accel-probe-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))
  const device = join(dir, 'kvm')
  writeFileSync(device, '')
  const fake = (name: string, body: string): string => {
    const path = join(dir, name)
    writeFileSync(path, `#!/bin/sh\n${body}\n`)
    chmodSync(path, 0o755)
    return path
  }
  const probe = (qemu: string, accelerators = ['tcg', 'kvm']) => probeAccelerator({qemu, kernel: '/nonexistent', firmwareDirs: [], accelerators}, {env: {}, kvmDevice: device, timeoutMs: 20_000})

  it('picks TCG when KVM stops with an emulation failure (QEMU keeps running: it is killed)', async () => {
    const v = await probe(fake('pvm', 'echo "KVM internal error. Suberror: 1" >&2; echo "emulation failure" >&2; exec sleep 60'))
    expect(v).toMatchObject({accelerator: 'tcg'})
    expect(v.reason).toContain('KVM internal error')
  })

  it('picks KVM when the kernel prints its banner', async () => {
    expect(await probe(fake('good', 'echo "[    0.000000] Linux version 6.12.118 (debian)"; exec sleep 60'))).toMatchObject({accelerator: 'kvm'})
  })

  it('picks TCG when QEMU exits first, and does not try KVM the binary lacks', async () => {
    expect(await probe(fake('dies', 'echo "qemu: could not load kernel" >&2; exit 1'))).toMatchObject({accelerator: 'tcg', reason: expect.stringContaining('could not load kernel')})
    expect(await probe(fake('never', 'echo "Linux version" ; exec sleep 60'), ['tcg'])).toMatchObject({accelerator: 'tcg'})
  })
})
