/**
 * The docker-free EIF builder behind `nle eif build`: turns paths and options into an
 * EifBuildSpec (directories become deterministic cpio ramdisks; --init/--nsm-ko and
 * --rootfs/--cmd/--env become the two layouts nitro-cli's init expects), writes the EIF and,
 * if asked, the measurements lockfile.
 */
import {readFile, stat} from 'node:fs/promises'
import {basename} from 'node:path'

import {type Lockfile, writeBuildLockfile} from '../lockfile.js'
import {type CpioEntry, bootstrapRamdiskEntries, cpioChunks, customerRamdiskEntries, directoryEntries} from './cpio.js'
import {eifError} from './errors.js'
import {lockfileFromBuild} from './lock.js'
import {MAX_CUSTOM_METADATA_SIZE} from './metadata.js'
import type {Arch, Measurements} from './reader.js'
import {type BlobInput, type EifBuildResult, trimCmdline, writeEif} from './writer.js'

export interface BuildFromFilesOptions {
  kernel: string
  /** The cmdline as given (stored exactly). */
  cmdline?: string
  /** A cmdline file (trimmed, as nitro-cli does with blobs/<arch>/cmdline). */
  cmdlineFile?: string
  /** Ramdisk files (used as they are) or directories (packed as cpio). */
  ramdisks?: string[]
  /** Build a bootstrap ramdisk (dev/, init, nsm.ko) first from these. */
  init?: string
  nsmKo?: string
  /** More files for that bootstrap ramdisk (the QEMU kernel's busybox and virtio_mmio.ko); parent folders are added. */
  bootstrapExtra?: readonly {name: string; path: string; mode: number}[]
  /** Build a customer ramdisk (rootfs/…, cmd, env) last from these. */
  rootfs?: string
  cmd?: string[]
  env?: string[]
  output: string
  signingCertificate?: string
  privateKey?: string
  /** JSON file for CustomMetadata (≤ 4096 bytes, like nitro-cli). */
  metadataFile?: string
  imageName?: string
  imageVersion?: string
  buildTime?: string
  arch?: Arch
  /** BuildToolVersion in the metadata and builder.version in the lockfile. */
  toolVersion: string
  /** Write the lockfile here. */
  lockfile?: string
  /** Extra input digests for the lockfile (modelManifest, runtimeBundle, …). */
  inputDigests?: Record<string, string>
}

export interface BuildFromFilesResult {
  result: EifBuildResult
  output: string
  lockfile?: {path: string; content: Lockfile}
}

async function readInput(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (error) {
    throw eifError('EIF_INPUT_NOT_FOUND', `Cannot read the ${what} ${path}: ${(error as Error).message}`, {details: {path}, cause: error})
  }
}

async function fileRef(path: string, what: string): Promise<{path: string; size: number}> {
  const st = await stat(path).catch((error: unknown) => {
    throw eifError('EIF_INPUT_NOT_FOUND', `No ${what} at ${path}.`, {details: {path}, cause: error})
  })
  if (!st.isFile()) throw eifError('EIF_BAD_INPUT', `The ${what} ${path} is not a regular file.`)
  return {path, size: st.size}
}

/** The entries plus a directory entry for each parent folder none of them names (cpio needs them). */
export function withParents(entries: readonly CpioEntry[]): CpioEntry[] {
  const have = new Set(entries.map((e) => e.name))
  const out = [...entries]
  for (const e of entries) {
    const parts = e.name.split('/')
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/')
      if (!have.has(d)) {
        have.add(d)
        out.push({name: d, type: 'dir'})
      }
    }
  }
  return out
}

const cpioBlob = (entries: CpioEntry[]): BlobInput => ({chunks: () => cpioChunks(entries)})

export async function buildEifFromFiles(o: BuildFromFilesOptions): Promise<BuildFromFilesResult> {
  if ((o.cmdline === undefined) === (o.cmdlineFile === undefined)) throw eifError('EIF_BAD_INPUT', 'Give exactly one of a cmdline and a cmdline file.')
  const cmdline = o.cmdline ?? trimCmdline((await readInput(o.cmdlineFile!, 'cmdline file')).toString('utf8'))
  await fileRef(o.kernel, 'kernel')

  const ramdisks: BlobInput[] = []
  if (o.init !== undefined || o.nsmKo !== undefined) {
    if (o.init === undefined || o.nsmKo === undefined) throw eifError('EIF_BAD_INPUT', 'A bootstrap ramdisk needs both init and nsm.ko.')
    const entries = bootstrapRamdiskEntries(await fileRef(o.init, 'init'), await fileRef(o.nsmKo, 'nsm.ko'))
    for (const x of o.bootstrapExtra ?? []) entries.push({name: x.name, type: 'file', mode: x.mode, ...(await fileRef(x.path, x.name))})
    ramdisks.push(cpioBlob(withParents(entries)))
  }
  for (const r of o.ramdisks ?? []) {
    const st = await stat(r).catch((error: unknown) => {
      throw eifError('EIF_INPUT_NOT_FOUND', `No ramdisk at ${r}.`, {details: {path: r}, cause: error})
    })
    ramdisks.push(st.isDirectory() ? cpioBlob(await directoryEntries(r)) : {path: r})
  }
  if (o.rootfs !== undefined) {
    ramdisks.push(cpioBlob(customerRamdiskEntries(await directoryEntries(o.rootfs, 'rootfs/'), o.cmd ?? [], o.env ?? [])))
  } else if (o.cmd?.length || o.env?.length) {
    throw eifError('EIF_BAD_INPUT', 'cmd and env go into the customer ramdisk; give --rootfs too.')
  }

  let customMetadata: unknown = null
  if (o.metadataFile !== undefined) {
    const bytes = await readInput(o.metadataFile, 'metadata file')
    if (bytes.length > MAX_CUSTOM_METADATA_SIZE) {
      throw eifError('EIF_BAD_INPUT', `The metadata file is ${bytes.length} bytes; at most ${MAX_CUSTOM_METADATA_SIZE} are allowed.`)
    }
    try {
      customMetadata = JSON.parse(bytes.toString('utf8'))
    } catch (error) {
      throw eifError('EIF_BAD_INPUT', `The metadata file is not JSON: ${(error as Error).message}`, {cause: error})
    }
  }

  if ((o.signingCertificate === undefined) !== (o.privateKey === undefined)) {
    throw eifError('EIF_BAD_INPUT', 'Signing needs both a signing certificate and a private key.')
  }
  const signing =
    o.signingCertificate !== undefined
      ? {certificatePem: await readInput(o.signingCertificate, 'signing certificate'), privateKeyPem: await readInput(o.privateKey!, 'private key')}
      : undefined

  const result = await writeEif(o.output, {
    kernel: {path: o.kernel},
    cmdline,
    ramdisks,
    ...(o.arch ? {arch: o.arch} : {}),
    metadata: {
      imageName: o.imageName ?? basename(o.output).replace(/\.eif$/, ''),
      imageVersion: o.imageVersion ?? '0.0.0',
      ...(o.buildTime ? {buildTime: o.buildTime} : {}),
      buildTool: 'nle',
      buildToolVersion: o.toolVersion,
      customMetadata,
    },
    ...(signing ? {signing} : {}),
  })
  const out: BuildFromFilesResult = {result, output: o.output}
  if (o.lockfile !== undefined) {
    const content = lockfileFromBuild(result, {
      lockfilePath: o.lockfile,
      eifPath: o.output,
      builder: {name: 'nle', version: o.toolVersion},
      ...(o.inputDigests ? {inputs: o.inputDigests} : {}),
    })
    out.lockfile = {path: o.lockfile, content: await writeBuildLockfile(o.lockfile, content)}
  }
  return out
}

/** `--input-digest NAME=DIGEST` values as the lockfile's extra inputs. */
export function parseInputDigests(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const d of values) {
    const i = d.indexOf('=')
    if (i <= 0) throw eifError('EIF_BAD_INPUT', `--input-digest must be NAME=DIGEST, got ${JSON.stringify(d)}.`)
    out[d.slice(0, i)] = d.slice(i + 1)
  }
  return out
}

/** What `nle eif build --json` prints (nitro-cli's key names). */
export interface EifBuildOutput {
  Measurements: Measurements
  Eif: {path: string; size: number; sha384: string; version: number; signed: boolean}
  Lockfile?: string
}

export function eifBuildOutput(built: BuildFromFilesResult): EifBuildOutput {
  const r = built.result
  return {
    Measurements: r.measurements,
    Eif: {path: built.output, size: r.size, sha384: r.sha384, version: r.version, signed: r.signed},
    ...(built.lockfile ? {Lockfile: built.lockfile.path} : {}),
  }
}
