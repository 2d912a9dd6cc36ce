/**
 * A deterministic cpio "newc" (SVR4, magic 070701) writer for EIF ramdisks, and the two ramdisk
 * layouts nitro-cli's init expects. Determinism: entries sorted by name (bytewise), one fixed
 * mtime, uid/gid 0, inode numbers assigned in order, modes normalised (directories 0755, files
 * 0644 or 0755 when any execute bit is set, symlinks 0777), device numbers fixed. Numeric
 * conventions follow linuxkit's writer (inodes from 721, dev 3:1, nlink 2 for directories,
 * archive padded to 512 bytes); byte parity with linuxkit's output is not claimed.
 */
import {lstat, open, readdir, readlink} from 'node:fs/promises'
import {join} from 'node:path'

import {eifError} from './errors.js'

export type CpioEntry =
  | {name: string; type: 'dir'; mode?: number}
  | {name: string; type: 'file'; mode?: number; data: Buffer}
  | {name: string; type: 'file'; mode?: number; path: string; size: number}
  | {name: string; type: 'symlink'; target: string}

export interface CpioOptions {
  /** mtime of every entry (seconds). Default: linuxkit's 1492533000 (2017-04-18T16:30:00Z). */
  mtime?: number
  /** First inode number. Default 721. */
  inodeStart?: number
  devMajor?: number
  devMinor?: number
  /** Pad the whole archive to a multiple of this. Default 512. */
  blockSize?: number
}

export const CPIO_DEFAULT_MTIME = 1492533000
const MAX_FILE = 0xffffffff
const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const READ_CHUNK = 1024 * 1024

const pad4 = (n: number): number => (4 - (n % 4)) % 4
const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0')

function checkName(name: string): void {
  const parts = name.split('/')
  if (name === '' || name.includes('\0') || name.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw eifError('EIF_CPIO_BAD_NAME', `Invalid ramdisk entry name ${JSON.stringify(name)}.`)
  }
}

function header(fields: {ino: number; mode: number; nlink: number; mtime: number; size: number; devMajor: number; devMinor: number; name: string}): Buffer {
  const name = Buffer.from(fields.name + '\0', 'utf8')
  const text =
    '070701' +
    [fields.ino, fields.mode, 0, 0, fields.nlink, fields.mtime, fields.size, fields.devMajor, fields.devMinor, 0, 0, name.length, 0].map(hex8).join('')
  return Buffer.concat([Buffer.from(text, 'latin1'), name, Buffer.alloc(pad4(110 + name.length))])
}

/**
 * The bytes one entry takes in the archive this writer produces: the 110-byte header and the
 * NUL-terminated name padded to 4, then the data padded to 4 (none for a directory). Without the
 * archive's final 512-byte padding, which moves by less than a block. For size estimates
 * (src/lib/host/memory.ts: an EIF with and without the model's files).
 */
export function cpioEntryBytes(name: string, dataBytes = 0): number {
  const nameBytes = Buffer.byteLength(name, 'utf8') + 1
  return 110 + nameBytes + pad4(110 + nameBytes) + dataBytes + pad4(dataBytes)
}

/** Stream the archive for `entries` (sorted by name here, so input order does not matter). */
export async function* cpioChunks(entries: readonly CpioEntry[], options: CpioOptions = {}): AsyncGenerator<Buffer> {
  const mtime = options.mtime ?? CPIO_DEFAULT_MTIME
  const devMajor = options.devMajor ?? 3
  const devMinor = options.devMinor ?? 1
  const blockSize = options.blockSize ?? 512
  let ino = options.inodeStart ?? 721
  let total = 0
  const sorted = [...entries].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.name === sorted[i - 1]!.name) throw eifError('EIF_CPIO_BAD_NAME', `Duplicate ramdisk entry ${JSON.stringify(sorted[i]!.name)}.`)
  }
  for (const e of sorted) {
    checkName(e.name)
    const common = {ino: ino++, mtime, devMajor, devMinor, name: e.name}
    if (e.type === 'dir') {
      const h = header({...common, mode: S_IFDIR | ((e.mode ?? 0o755) & 0o7777), nlink: 2, size: 0})
      total += h.length
      yield h
    } else if (e.type === 'symlink') {
      const data = Buffer.from(e.target, 'utf8')
      const h = header({...common, mode: S_IFLNK | 0o777, nlink: 1, size: data.length})
      const out = Buffer.concat([h, data, Buffer.alloc(pad4(data.length))])
      total += out.length
      yield out
    } else {
      const size = 'data' in e ? e.data.length : e.size
      if (size > MAX_FILE) throw eifError('EIF_CPIO_FILE_TOO_LARGE', `${e.name} is ${size} bytes; a cpio newc entry holds at most 4 GiB - 1.`)
      const h = header({...common, mode: S_IFREG | ((e.mode ?? 0o644) & 0o7777), nlink: 1, size})
      total += h.length
      yield h
      if ('data' in e) {
        yield e.data
      } else {
        const fh = await open(e.path, 'r').catch((error: unknown) => {
          throw eifError('EIF_INPUT_NOT_FOUND', `Cannot open ${e.path}: ${(error as Error).message}`, {cause: error})
        })
        try {
          let done = 0
          while (done < size) {
            const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - done))
            const {bytesRead} = await fh.read(buf, 0, buf.length, done)
            if (bytesRead === 0) break
            done += bytesRead
            yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead)
          }
          if (done !== size || (await fh.stat()).size !== size) throw eifError('EIF_FILE_CHANGED', `${e.path} changed size while the ramdisk was being written.`)
        } finally {
          await fh.close()
        }
      }
      total += size
      const p = Buffer.alloc(pad4(size))
      total += p.length
      if (p.length) yield p
    }
  }
  const trailer = header({ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, devMajor: 0, devMinor: 0, name: 'TRAILER!!!'})
  total += trailer.length
  const tail = (blockSize - (total % blockSize)) % blockSize
  yield Buffer.concat([trailer, Buffer.alloc(tail)])
}

export async function cpioBuffer(entries: readonly CpioEntry[], options: CpioOptions = {}): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of cpioChunks(entries, options)) parts.push(c)
  return Buffer.concat(parts)
}

/**
 * The entries for a directory tree, named `prefix` + relative path. Regular files, directories and
 * symlinks only; modes normalised; ownership and timestamps dropped.
 */
export async function directoryEntries(dir: string, prefix = ''): Promise<CpioEntry[]> {
  const out: CpioEntry[] = []
  const walk = async (abs: string, rel: string): Promise<void> => {
    let names: string[]
    try {
      names = await readdir(abs)
    } catch (error) {
      throw eifError('EIF_INPUT_NOT_FOUND', `Cannot read directory ${abs}: ${(error as Error).message}`, {cause: error})
    }
    for (const n of names.sort()) {
      const p = join(abs, n)
      const name = prefix + (rel ? `${rel}/${n}` : n)
      const st = await lstat(p)
      if (st.isDirectory()) {
        out.push({name, type: 'dir'})
        await walk(p, rel ? `${rel}/${n}` : n)
      } else if (st.isFile()) {
        out.push({name, type: 'file', path: p, size: st.size, mode: st.mode & 0o111 ? 0o755 : 0o644})
      } else if (st.isSymbolicLink()) {
        out.push({name, type: 'symlink', target: await readlink(p)})
      } else {
        throw eifError('EIF_CPIO_UNSUPPORTED_FILE', `${p} is not a regular file, directory or symlink; ramdisks cannot hold it.`)
      }
    }
  }
  const st = await lstat(dir).catch((error: unknown) => {
    throw eifError('EIF_INPUT_NOT_FOUND', `No such directory: ${dir}`, {cause: error})
  })
  if (!st.isDirectory()) throw eifError('EIF_BAD_INPUT', `${dir} is not a directory.`)
  await walk(dir, '')
  return out
}

/** The bootstrap ramdisk nitro-cli's init expects first: `dev/`, `init` (0755), `nsm.ko` (0755). */
export function bootstrapRamdiskEntries(init: {path: string; size: number} | Buffer, nsmKo: {path: string; size: number} | Buffer): CpioEntry[] {
  const file = (name: string, src: {path: string; size: number} | Buffer): CpioEntry =>
    Buffer.isBuffer(src) ? {name, type: 'file', mode: 0o755, data: src} : {name, type: 'file', mode: 0o755, ...src}
  return [{name: 'dev', type: 'dir'}, file('init', init), file('nsm.ko', nsmKo)]
}

/**
 * The customer ramdisk: the application's filesystem under `rootfs/`, the mount points init
 * needs (`rootfs/{dev,run,sys,var,proc,tmp}`), `cmd` (one argv element per line) and `env`
 * (one `K=V` per line), both 0644 and newline-terminated.
 */
export function customerRamdiskEntries(rootfs: readonly CpioEntry[], cmd: readonly string[], env: readonly string[]): CpioEntry[] {
  for (const v of [...cmd, ...env]) {
    if (v.includes('\n') || v.includes('\0')) throw eifError('EIF_BAD_INPUT', `cmd/env values cannot contain newlines or NUL: ${JSON.stringify(v)}`)
  }
  const lines = (xs: readonly string[]): Buffer => Buffer.from(xs.map((x) => `${x}\n`).join(''), 'utf8')
  const names = new Set(rootfs.map((e) => e.name))
  const entries: CpioEntry[] = [...rootfs]
  for (const d of ['rootfs', 'rootfs/dev', 'rootfs/run', 'rootfs/sys', 'rootfs/var', 'rootfs/proc', 'rootfs/tmp']) {
    if (!names.has(d)) entries.push({name: d, type: 'dir'})
  }
  entries.push({name: 'cmd', type: 'file', mode: 0o644, data: lines(cmd)}, {name: 'env', type: 'file', mode: 0o644, data: lines(env)})
  return entries
}
