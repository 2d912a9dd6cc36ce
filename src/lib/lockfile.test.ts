import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {codeOf} from '../test-support/rejection.js'
import {DEFAULT_LOCKFILE, type Lockfile, MAX_PREVIOUS, parseLockfile, readLockfile, serializeLockfile, withBuildHistory, writeBuildLockfile, writeLockfile} from './lockfile.js'

const h = (c: string): string => c.repeat(96)

/** An earlier build's set, distinct per character. */
const earlier = (c: string): NonNullable<Lockfile['previous']>[number] => ({PCR0: h(c), PCR1: h(c), PCR2: h('9'), eifSha384: h(c)})

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
    ['the current set in previous', (l) => (l.previous = [{...l.measurements}]), 'LOCKFILE_INVALID'],
    ['a set twice in previous', (l) => (l.previous = [earlier('1'), earlier('1')]), 'LOCKFILE_INVALID'],
    ['more than MAX_PREVIOUS earlier sets', (l) => (l.previous = Array.from({length: MAX_PREVIOUS + 1}, (_, i) => earlier(i.toString(16)))), 'LOCKFILE_INVALID'],
    ['an unknown key in a previous set', (l) => (l.previous = [{...earlier('1'), builtAt: 'yesterday'} as never]), 'LOCKFILE_INVALID'],
    ['upper-case hex in previous', (l) => (l.previous = [{...earlier('1'), PCR0: h('F')}]), 'LOCKFILE_INVALID'],
    ['previous not an array', (l) => ((l as Record<string, unknown>).previous = earlier('1')), 'LOCKFILE_INVALID'],
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

  it('previous: round-trips in order (newest first); absent or empty writes no field, so older lockfiles read and write as before', async () => {
    const withHistory = {...sample(), previous: [earlier('1'), {PCR0: h('2'), PCR1: h('2'), PCR2: h('2'), PCR8: h('3')}]}
    await writeLockfile(join(dir, 'h.json'), withHistory)
    expect(await readLockfile(join(dir, 'h.json'))).toEqual(withHistory)
    const text = serializeLockfile(withHistory)
    expect(JSON.parse(text).previous.map((p: {PCR0: string}) => p.PCR0)).toEqual([h('1'), h('2')])
    // A lockfile from before the field: reads, and its bytes do not change.
    const legacy = serializeLockfile(sample())
    expect(legacy).not.toContain('previous')
    expect(parseLockfile(JSON.parse(legacy)).previous).toBeUndefined()
    expect(serializeLockfile({...sample(), previous: []})).toBe(legacy)
  })

  it('withBuildHistory: the replaced set moves to the front, once, never the current one, at most MAX_PREVIOUS', () => {
    const build = (c: string): Lockfile => ({...sample(), measurements: {PCR0: h(c), PCR1: h(c), PCR2: h(c), PCR8: h('d')}, eif: {...sample().eif, sha384: h(c)}})
    const entry = (c: string) => ({PCR0: h(c), PCR1: h(c), PCR2: h(c), PCR8: h('d'), eifSha384: h(c)})
    expect(withBuildHistory(build('1'), undefined).previous).toBeUndefined()
    const two = withBuildHistory(build('2'), build('1'))
    expect(two.previous).toEqual([entry('1')])
    const three = withBuildHistory(build('3'), two)
    expect(three.previous).toEqual([entry('2'), entry('1')])
    // The same measurements again (a rebuild): the history is kept as it is.
    expect(withBuildHistory(build('3'), three).previous).toEqual(three.previous)
    // A rollback to 1: it leaves the history (it is current), 3 moves in front.
    expect(withBuildHistory(build('1'), three).previous).toEqual([entry('3'), entry('2')])
    // Whatever `next` says about the past is ignored: the history comes from the lockfile it replaces.
    expect(withBuildHistory({...build('4'), previous: [entry('9')]}, three).previous).toEqual([entry('3'), entry('2'), entry('1')])
    let lock = build('0')
    for (const c of 'abcdef0123456789') lock = withBuildHistory(build(c), lock)
    expect(lock.previous).toHaveLength(MAX_PREVIOUS)
    expect(lock.previous![0]!.PCR0).toBe(h('8'))
    expect(() => serializeLockfile(lock)).not.toThrow()
  })

  it('writeBuildLockfile carries the history of the lockfile it replaces; an unreadable or invalid one is refused, not overwritten', async () => {
    const path = join(dir, 'build', DEFAULT_LOCKFILE)
    const first = sample()
    expect(await writeBuildLockfile(path, first)).toEqual(first)
    const second = {...sample(), measurements: {...sample().measurements, PCR2: h('7')}}
    const written = await writeBuildLockfile(path, second)
    expect(written.previous).toEqual([{...first.measurements, eifSha384: first.eif.sha384}])
    expect(await readLockfile(path)).toEqual(written)
    const bad = join(dir, 'bad-build.json')
    await writeFile(bad, '{"version": 1, "measurements": {}}')
    const refused = await writeBuildLockfile(bad, sample()).catch((error: unknown) => error)
    expect(refused).toMatchObject({code: 'LOCKFILE_INVALID'})
    expect(await readFile(bad, 'utf8')).toBe('{"version": 1, "measurements": {}}')
    await writeFile(bad, '{')
    await expect(writeBuildLockfile(bad, sample())).rejects.toMatchObject({code: 'LOCKFILE_BAD_JSON'})
  })

  it('refuses to write an invalid lockfile', async () => {
    const l = sample()
    l.measurements.PCR0 = 'zz'
    await expect(writeLockfile(join(dir, 'never.json'), l)).rejects.toMatchObject({code: 'LOCKFILE_INVALID'})
  })
})
