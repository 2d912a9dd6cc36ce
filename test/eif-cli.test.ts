// `nle pcr`, `nle eif build` and `nle eif describe` as a user runs them (compiled CLI).
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {makeSigner} from '../src/test-support/eif.js'
import {tempDir} from '../src/test-support/tmp.js'

const EMPTY_PCR = '21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a'
const tmp = tempDir('nle-eif-cli-')
const d = (p: string): string => join(tmp.dir, p)

beforeAll(async () => {
  const s = await makeSigner('P-256')
  writeFileSync(d('cert.pem'), s.certificatePem)
  writeFileSync(d('key.pem'), s.privateKeyPem)
  writeFileSync(d('kernel'), Buffer.alloc(3000, 1))
  writeFileSync(d('rd0'), 'bootstrap')
  writeFileSync(d('rd1'), 'app')
  writeFileSync(d('empty'), '')
})
afterAll(() => tmp.cleanup())

describe('nle pcr', () => {
  it('--input of an empty file prints nitro-cli\'s {"PCR": …} with the empty-content PCR', async () => {
    const human = await runCli(['pcr', '--input', d('empty')])
    expect(human.exitCode).toBe(0)
    expect(human.stdout).toBe(`{\n  "PCR": "${EMPTY_PCR}"\n}`) // nitro-cli's pretty JSON (execa drops the final newline)
  })

  it('--signing-certificate prints {"PCR8": …}; a missing file exits 6', async () => {
    expect(Object.keys(jsonResult(await runCli(['pcr', '--signing-certificate', d('cert.pem'), '--json'])))).toEqual(['PCR8'])
    const r = await runCli(['pcr', '--input', d('missing'), '--json'])
    expect(r.exitCode).toBe(6)
    expect(jsonFailure(r).code).toBe('EIF_NOT_FOUND')
  })
})

describe('nle eif build / describe', () => {
  it('builds a signed image with a lockfile, and describe reports what build printed', async () => {
    const args = ['eif', 'build', '--kernel', d('kernel'), '--cmdline', 'console=ttyS0', '--ramdisk', d('rd0'), '--ramdisk', d('rd1'),
      '--signing-certificate', d('cert.pem'), '--private-key', d('key.pem'), '--lockfile', d('nle.lock.json'), '--input-digest', `runtimeBundle=sha256:${'0'.repeat(64)}`, '--json']
    const built = jsonResult<{Measurements: Record<string, string>; Eif: {size: number; sha384: string}; Lockfile: string}>(await runCli([...args, '--output', d('a.eif')]))
    expect(Object.keys(built.Measurements)).toEqual(['HashAlgorithm', 'PCR0', 'PCR1', 'PCR2', 'PCR8'])
    // A rebuild is byte-identical (--name pins ImageName, which defaults to the output file name).
    await runCli([...args, '--output', d('c.eif'), '--name', 'a'])
    expect(readFileSync(d('c.eif')).equals(readFileSync(d('a.eif')))).toBe(true)

    const r = await runCli(['eif', 'describe', d('a.eif'), '--json'])
    expect(r.exitCode).toBe(0)
    const desc = jsonResult<Record<string, unknown>>(r)
    expect(Object.keys(desc)).toEqual(['EifVersion', 'Measurements', 'IsSigned', 'SigningCertificate', 'CheckCRC', 'SignatureCheck', 'ImageName', 'ImageVersion', 'Metadata'])
    expect(desc).toMatchObject({EifVersion: 4, IsSigned: true, CheckCRC: true, SignatureCheck: true, ImageName: 'a', Measurements: built.Measurements})
    const lock = JSON.parse(readFileSync(d('nle.lock.json'), 'utf8')) as {measurements: Record<string, string>; inputs: Record<string, string>}
    expect(lock.measurements.PCR0).toBe(built.Measurements.PCR0)
    expect(lock.inputs.runtimeBundle).toBe(`sha256:${'0'.repeat(64)}`)
  })

  it('a corrupt CRC is reported by describe and fails describe --verify with exit 5', async () => {
    const bytes = readFileSync(d('a.eif'))
    bytes[600]! ^= 0xff
    writeFileSync(d('crc.eif'), bytes)
    const r = await runCli(['eif', 'describe', d('crc.eif')])
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain('CheckCRC: MISMATCH')
    expect(r.stdout).toMatch(/PCR0 +[0-9a-f]{96}/)
    const v = await runCli(['eif', 'describe', d('crc.eif'), '--verify', '--json'])
    expect(v.exitCode).toBe(5)
    expect(jsonFailure(v).code).toBe('EIF_BAD_CRC')
  })

  it('a file that is not an EIF exits 5 with EIF_BAD_MAGIC and no stack trace', async () => {
    writeFileSync(d('not.eif'), 'hello world, definitely not an enclave image'.repeat(20))
    const r = await runCli(['eif', 'describe', d('not.eif')])
    expect(r.exitCode).toBe(5)
    expect(r.stderr).toMatch(/^Error \[EIF_BAD_MAGIC\]: /)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  // Flag combinations are refused by oclif's flag relationships: a usage error (exit 2), nothing written.
  it.each([
    ['neither --cmdline nor --cmdline-file', ['--ramdisk', 'rd0']],
    ['both --cmdline and --cmdline-file', ['--cmdline', 'x', '--cmdline-file', 'rd0', '--ramdisk', 'rd0']],
    ['--init without --nsm-ko', ['--cmdline', 'x', '--init', 'rd0']],
    ['--nsm-ko without --init', ['--cmdline', 'x', '--nsm-ko', 'rd0']],
    ['--signing-certificate without --private-key', ['--cmdline', 'x', '--ramdisk', 'rd0', '--signing-certificate', 'cert.pem']],
    ['--private-key without --signing-certificate', ['--cmdline', 'x', '--ramdisk', 'rd0', '--private-key', 'key.pem']],
    ['--cmd without --rootfs', ['--cmdline', 'x', '--ramdisk', 'rd0', '--cmd', '/app']],
    ['--env without --rootfs', ['--cmdline', 'x', '--ramdisk', 'rd0', '--env', 'A=1']],
    ['--input-digest without --lockfile', ['--cmdline', 'x', '--ramdisk', 'rd0', '--input-digest', 'a=sha256:00']],
    ['no ramdisk at all', ['--cmdline', 'x']],
  ])('refuses %s with exit 2 [USAGE], writing nothing', async (_what, rest) => {
    const out = d(`refused-${rest.length}-${rest.join('').length}.eif`)
    const args = ['eif', 'build', '--kernel', d('kernel'), '--output', out, ...rest.map((a) => (/^(rd0|cert\.pem|key\.pem)$/.test(a) ? d(a) : a))]
    const r = await runCli([...args, '--json'])
    expect(r.exitCode).toBe(2)
    expect(jsonFailure(r).code).toBe('USAGE')
    const human = await runCli(args)
    expect(human.exitCode).toBe(2)
    expect(human.stderr).toMatch(/^Error \[USAGE\]: /)
    expect(existsSync(out)).toBe(false)
  })

  it('a malformed --input-digest exits with EIF_BAD_INPUT', async () => {
    const r = await runCli(['eif', 'build', '--kernel', d('kernel'), '--cmdline', 'x', '--ramdisk', d('rd0'), '--output', d('bad-digest.eif'), '--lockfile', d('bad.lock.json'), '--input-digest', 'nodigest', '--json'])
    expect(jsonFailure(r).code).toBe('EIF_BAD_INPUT')
    expect(existsSync(d('bad-digest.eif'))).toBe(false)
  })
})
