import {execFileSync} from 'node:child_process'
import {chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {bootstrapRamdiskEntries, cpioBuffer, customerRamdiskEntries, directoryEntries} from './cpio.js'

interface Parsed {
  name: string
  ino: number
  mode: number
  uid: number
  gid: number
  nlink: number
  mtime: number
  devmajor: number
  devminor: number
  data: Buffer
}

/** An independent newc reader for the checks: fields, name/data 4-byte padding, trailer. */
function parseNewc(buf: Buffer): {entries: Parsed[]; end: number} {
  const entries: Parsed[] = []
  let pos = 0
  for (;;) {
    expect(pos % 4).toBe(0)
    const h = buf.subarray(pos, pos + 110).toString('latin1')
    expect(h.slice(0, 6)).toBe('070701')
    const f = (i: number): number => parseInt(h.slice(6 + 8 * i, 14 + 8 * i), 16)
    const namesize = f(11)
    const filesize = f(6)
    const name = buf.subarray(pos + 110, pos + 110 + namesize - 1).toString('utf8')
    expect(buf[pos + 110 + namesize - 1]).toBe(0)
    expect(f(12)).toBe(0) // check
    pos += 110 + namesize
    pos += (4 - (pos % 4)) % 4
    const data = buf.subarray(pos, pos + filesize)
    pos += filesize
    pos += (4 - (pos % 4)) % 4
    if (name === 'TRAILER!!!') return {entries, end: pos}
    entries.push({name, ino: f(0), mode: f(1), uid: f(2), gid: f(3), nlink: f(4), mtime: f(5), devmajor: f(7), devminor: f(8), data})
  }
}

const tmp = tempDir('nle-cpio-')
afterAll(() => tmp.cleanup())

function makeTree(root: string, mtime: number): void {
  mkdirSync(join(root, 'b/sub'), {recursive: true})
  mkdirSync(join(root, 'a'), {recursive: true})
  writeFileSync(join(root, 'b/sub/data.bin'), Buffer.alloc(1001, 7))
  writeFileSync(join(root, 'a/run.sh'), '#!/bin/sh\necho hi\n')
  chmodSync(join(root, 'a/run.sh'), 0o700)
  writeFileSync(join(root, 'a-b'), 'x')
  writeFileSync(join(root, 'empty'), '')
  symlinkSync('a/run.sh', join(root, 'link'))
  for (const p of ['b/sub/data.bin', 'a/run.sh', 'a-b', 'empty', 'a', 'b', 'b/sub']) utimesSync(join(root, p), mtime, mtime)
}

describe('cpio newc writer', () => {
  it('packs a tree: sorted names, fixed mtime, uid/gid 0, normalised modes, 4-byte padding, 512-byte archive', async () => {
    const root = join(tmp.dir, 't1')
    makeTree(root, 1_000_000)
    const buf = await cpioBuffer(await directoryEntries(root))
    expect(buf.length % 512).toBe(0)
    const {entries, end} = parseNewc(buf)
    expect(buf.subarray(end).every((b) => b === 0)).toBe(true)
    expect(entries.map((e) => e.name)).toEqual(['a', 'a-b', 'a/run.sh', 'b', 'b/sub', 'b/sub/data.bin', 'empty', 'link'])
    const by = Object.fromEntries(entries.map((e) => [e.name, e]))
    expect(by.a).toMatchObject({mode: 0o40755, nlink: 2})
    expect(by['a/run.sh']).toMatchObject({mode: 0o100755, nlink: 1})
    expect(by['a-b']).toMatchObject({mode: 0o100644})
    expect(by.link).toMatchObject({mode: 0o120777})
    expect(by.link!.data.toString()).toBe('a/run.sh')
    expect(by['b/sub/data.bin']!.data.equals(Buffer.alloc(1001, 7))).toBe(true)
    expect(by.empty!.data.length).toBe(0)
    for (const e of entries) expect([e.uid, e.gid, e.mtime, e.devmajor, e.devminor]).toEqual([0, 0, 1492533000, 3, 1])
    expect(entries.map((e) => e.ino)).toEqual(entries.map((_, i) => 721 + i))
  })

  it('is byte-identical for the same content regardless of timestamps, permissions beyond x, or creation order', async () => {
    const r1 = join(tmp.dir, 'd1')
    const r2 = join(tmp.dir, 'd2')
    makeTree(r1, 1_000_000)
    makeTree(r2, 2_000_000)
    chmodSync(join(r2, 'a/run.sh'), 0o751)
    chmodSync(join(r2, 'a-b'), 0o600)
    const a = await cpioBuffer(await directoryEntries(r1))
    const b = await cpioBuffer(await directoryEntries(r2))
    expect(b.equals(a)).toBe(true)
    const shuffled = (await directoryEntries(r1)).reverse()
    expect((await cpioBuffer(shuffled)).equals(a)).toBe(true)
  })

  it('extracts with GNU cpio to the same tree, when cpio is installed', async () => {
    let has = true
    try {
      execFileSync('cpio', ['--version'])
    } catch {
      has = false
    }
    if (!has) return
    const root = join(tmp.dir, 'g')
    makeTree(root, 1_000_000)
    const out = join(tmp.dir, 'g-out')
    mkdirSync(out)
    execFileSync('cpio', ['-idm', '--quiet'], {cwd: out, input: await cpioBuffer(await directoryEntries(root))})
    expect(execFileSync('diff', ['-r', root, out]).toString()).toBe('')
  })

  it('builds the two layouts nitro-cli\'s init expects', async () => {
    const boot = parseNewc(await cpioBuffer(bootstrapRamdiskEntries(Buffer.from('INIT'), Buffer.from('NSM')))).entries
    expect(boot.map((e) => [e.name, e.mode.toString(8)])).toEqual([['dev', '40755'], ['init', '100755'], ['nsm.ko', '100755']])
    expect(boot[1]!.data.toString()).toBe('INIT')
    const root = join(tmp.dir, 'app')
    mkdirSync(join(root, 'bin'), {recursive: true})
    writeFileSync(join(root, 'bin/server'), 'srv')
    const cust = parseNewc(await cpioBuffer(customerRamdiskEntries(await directoryEntries(root, 'rootfs/'), ['/bin/server', '--port', '8000'], ['A=1', 'B=two words']))).entries
    expect(cust.map((e) => e.name)).toEqual(['cmd', 'env', 'rootfs', 'rootfs/bin', 'rootfs/bin/server', 'rootfs/dev', 'rootfs/proc', 'rootfs/run', 'rootfs/sys', 'rootfs/tmp', 'rootfs/var'])
    const by = Object.fromEntries(cust.map((e) => [e.name, e]))
    expect(by.cmd!.data.toString()).toBe('/bin/server\n--port\n8000\n')
    expect(by.env!.data.toString()).toBe('A=1\nB=two words\n')
    expect(by.cmd!.mode).toBe(0o100644)
  })

  it('rejects bad names, duplicates, special files and newlines in cmd/env with their own codes', async () => {
    await expect(cpioBuffer([{name: '../x', type: 'dir'}])).rejects.toMatchObject({code: 'EIF_CPIO_BAD_NAME'})
    await expect(cpioBuffer([{name: '/abs', type: 'dir'}])).rejects.toMatchObject({code: 'EIF_CPIO_BAD_NAME'})
    await expect(cpioBuffer([{name: 'a', type: 'dir'}, {name: 'a', type: 'dir'}])).rejects.toMatchObject({code: 'EIF_CPIO_BAD_NAME'})
    await expect(cpioBuffer([{name: 'big', type: 'file', path: '/dev/null', size: 2 ** 32}])).rejects.toMatchObject({code: 'EIF_CPIO_FILE_TOO_LARGE'})
    expect(() => customerRamdiskEntries([], ['a\nb'], [])).toThrow(expect.objectContaining({code: 'EIF_BAD_INPUT'}))
    await expect(directoryEntries(join(tmp.dir, 'missing'))).rejects.toMatchObject({code: 'EIF_INPUT_NOT_FOUND'})
    const special = join(tmp.dir, 'special')
    mkdirSync(special)
    try {
      execFileSync('mkfifo', [join(special, 'fifo')])
    } catch {
      return
    }
    await expect(directoryEntries(special)).rejects.toMatchObject({code: 'EIF_CPIO_UNSUPPORTED_FILE'})
  })
})
