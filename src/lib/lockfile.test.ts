import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {codeOf} from '../test-support/rejection.js'
import {DEFAULT_LOCKFILE, type Lockfile, parseLockfile, readLockfile, serializeLockfile, writeLockfile} from './lockfile.js'

const h = (c: string): string => c.repeat(96)

function sample(): Lockfile {
  return {
    version: 1,
    measurements: {PCR0: h('a'), PCR1: h('b'), PCR2: h('c'), PCR8: h('d')},
    eif: {path: 'build/enclave.eif', sha384: h('e'), size: 1234, version: 4, signed: true},
    builder: {name: 'nle', version: '0.1.0'},
    inputs: {runtimeBundle: 'sha256:' + '1'.repeat(64), modelManifest: 'sha384:' + '2'.repeat(96)},
  }
}

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nle-lock-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('lockfile', () => {
  it('has the documented default name', () => {
    expect(DEFAULT_LOCKFILE).toBe('nle.lock.json')
  })

  it('round-trips through write and read', async () => {
    const path = join(dir, 'a', DEFAULT_LOCKFILE)
    await writeLockfile(path, sample())
    expect(await readLockfile(path)).toEqual(sample())
  })

  it('writes deterministic bytes: sorted keys at every level, 2-space indent, trailing newline', async () => {
    const a = sample()
    // Same content, different insertion order.
    const b: Lockfile = {
      inputs: {modelManifest: a.inputs.modelManifest!, runtimeBundle: a.inputs.runtimeBundle!},
      builder: {version: '0.1.0', name: 'nle'},
      eif: {signed: true, version: 4, size: 1234, sha384: h('e'), path: 'build/enclave.eif'},
      measurements: {PCR8: h('d'), PCR2: h('c'), PCR1: h('b'), PCR0: h('a')},
      version: 1,
    }
    const text = serializeLockfile(a)
    expect(serializeLockfile(b)).toBe(text)
    expect(text.endsWith('}\n')).toBe(true)
    expect(text.endsWith('\n\n')).toBe(false)
    const keys = [...text.matchAll(/^ {2}"(\w+)"/gm)].map((m) => m[1])
    expect(keys).toEqual(['builder', 'eif', 'inputs', 'measurements', 'version'])
    await writeLockfile(join(dir, 'x.json'), a)
    await writeLockfile(join(dir, 'y.json'), b)
    expect(await readFile(join(dir, 'x.json'), 'utf8')).toBe(await readFile(join(dir, 'y.json'), 'utf8'))
  })

  it('accepts an unsigned image without PCR8 and without eif.path', () => {
    const l = sample()
    delete l.measurements.PCR8
    delete l.eif.path
    l.eif.signed = false
    expect(parseLockfile(l)).toEqual(l)
  })

  it.each<[string, (l: Record<string, unknown> & Lockfile) => unknown, string]>([
    ['upper-case hex', (l) => (l.measurements.PCR0 = h('A')), 'LOCKFILE_INVALID'],
    ['short PCR', (l) => (l.measurements.PCR1 = 'ab'), 'LOCKFILE_INVALID'],
    ['missing PCR2', (l) => delete (l.measurements as Partial<Lockfile['measurements']>).PCR2, 'LOCKFILE_INVALID'],
    ['unknown top-level key', (l) => (l.extra = 1), 'LOCKFILE_INVALID'],
    ['unknown measurement', (l) => ((l.measurements as unknown as Record<string, string>).PCR3 = h('0')), 'LOCKFILE_INVALID'],
    ['negative size', (l) => (l.eif.size = -1), 'LOCKFILE_INVALID'],
    ['fractional size', (l) => (l.eif.size = 1.5), 'LOCKFILE_INVALID'],
    ['signed without PCR8', (l) => delete l.measurements.PCR8, 'LOCKFILE_INVALID'],
    ['absolute eif path', (l) => (l.eif.path = '/tmp/x.eif'), 'LOCKFILE_INVALID'],
    ['bad digest', (l) => (l.inputs.modelManifest = 'md5:00'), 'LOCKFILE_INVALID'],
    ['bad input name', (l) => (l.inputs['../x'] = 'sha256:' + '0'.repeat(64)), 'LOCKFILE_INVALID'],
    ['version 2', (l) => ((l as {version: number}).version = 2), 'LOCKFILE_UNSUPPORTED_VERSION'],
  ])('rejects %s', (_name, mutate, code) => {
    const l = sample() as Record<string, unknown> & Lockfile
    mutate(l)
    expect(codeOf(() => parseLockfile(l))).toBe(code)
  })

  it('rejects non-objects', () => {
    for (const v of [null, 1, 'x', [], {}]) expect(codeOf(() => parseLockfile(v))).toBe('LOCKFILE_INVALID')
  })

  it('reports a missing file, bad JSON and an unwritable path with their own codes', async () => {
    await expect(readLockfile(join(dir, 'nope.json'))).rejects.toMatchObject({code: 'LOCKFILE_NOT_FOUND', exitCode: 6})
    await writeFile(join(dir, 'bad.json'), '{"version": 1,')
    await expect(readLockfile(join(dir, 'bad.json'))).rejects.toMatchObject({code: 'LOCKFILE_BAD_JSON', exitCode: 3})
    await expect(readLockfile(dir)).rejects.toMatchObject({code: 'LOCKFILE_UNREADABLE'})
    await writeFile(join(dir, 'file'), 'x')
    await expect(writeLockfile(join(dir, 'file', 'sub', 'l.json'), sample())).rejects.toMatchObject({code: 'LOCKFILE_WRITE_FAILED'})
  })

  it('refuses to write an invalid lockfile', async () => {
    const l = sample()
    l.measurements.PCR0 = 'zz'
    await expect(writeLockfile(join(dir, 'never.json'), l)).rejects.toMatchObject({code: 'LOCKFILE_INVALID'})
  })
})
