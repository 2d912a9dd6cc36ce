/**
 * Deterministic EIF v4 writer: the same inputs give the same bytes. Layout as the reference
 * builder writes it: header, kernel, cmdline, metadata, ramdisk[0..n], then the signature when
 * signed; sections contiguous, the offset table pointing at each 12-byte section header.
 *
 * One pass over the inputs: sections are streamed to the output while PCR0/1/2 are measured; the
 * signature (over PCR0) is appended; the header is written last; then a read-back pass over the
 * output computes the CRC32 (which covers the signature) and the file's SHA-384.
 */
import {createHash} from 'node:crypto'
import {open, type FileHandle} from 'node:fs/promises'
import {crc32} from 'node:zlib'

import {isNleError} from '../errors.js'
import {eifError} from './errors.js'
import {
  EIF_CRC_OFFSET,
  EIF_CURRENT_VERSION,
  EIF_DEFAULT_CPUS,
  EIF_DEFAULT_MEM,
  EIF_FLAG_ARCH_ARM64,
  EIF_HEADER_SIZE,
  EIF_MAGIC,
  EIF_MAX_SECTIONS,
  EIF_SECTION_HEADER_SIZE,
  SectionType,
  encodeHeader,
  encodeSectionHeader,
} from './format.js'
import {type MetadataInput, buildMetadata, encodeMetadata} from './metadata.js'
import {CHUNK_SIZE, HASH_ALGORITHM, PcrAccumulator} from './pcr.js'
import type {Arch, Measurements} from './reader.js'
import {type SigningInput, prepareSigner, signPcr0} from './signature.js'
import {pcr8Of} from './cert.js'
import {writeAtomically} from '../files.js'

/** A section's content: a file, bytes, or a stream of chunks (e.g. a cpio archive being generated). */
export type BlobInput = {path: string} | {data: Buffer} | {chunks: () => AsyncIterable<Buffer>}

export interface EifBuildSpec {
  kernel: BlobInput
  /** Stored exactly as given (nitro-cli trims its cmdline file; see `trimCmdline`). */
  cmdline: string | Buffer
  /** The first is the bootstrap ramdisk (PCR1), the rest the application (PCR2). */
  ramdisks: BlobInput[]
  arch?: Arch
  metadata: MetadataInput
  signing?: SigningInput
}

export interface EifBuildResult {
  measurements: Measurements
  size: number
  sha384: string
  crc32: number
  version: number
  signed: boolean
  /** SHA-384 of each input as stored: kernel, cmdline, ramdisk0, ramdisk1, … */
  inputs: Record<string, string>
}

/** Where the EIF goes: a file or memory. */
interface Sink {
  append(b: Buffer): Promise<void>
  writeAt(b: Buffer, position: number): Promise<void>
  readAt(into: Buffer, position: number, length: number): Promise<number>
}

function memorySink(): Sink & {result(): Buffer} {
  const parts: Buffer[] = []
  let whole: Buffer | undefined
  const flat = (): Buffer => (whole ??= Buffer.concat(parts))
  return {
    async append(b) {
      whole = undefined
      parts.push(Buffer.from(b))
    },
    async writeAt(b, position) {
      b.copy(flat(), position)
      parts.splice(0, parts.length, flat())
    },
    async readAt(into, position, length) {
      return flat().copy(into, 0, position, position + length)
    },
    result: flat,
  }
}

function fileSink(fh: FileHandle): Sink {
  let end = 0
  return {
    async append(b) {
      let done = 0
      while (done < b.length) {
        const {bytesWritten} = await fh.write(b, done, b.length - done, end + done)
        done += bytesWritten
      }
      end += b.length
    },
    async writeAt(b, position) {
      await fh.write(b, 0, b.length, position)
    },
    async readAt(into, position, length) {
      return (await fh.read(into, 0, length, position)).bytesRead
    },
  }
}

async function* blobChunks(blob: BlobInput, what: string): AsyncGenerator<Buffer> {
  if ('data' in blob) {
    yield blob.data
    return
  }
  if ('chunks' in blob) {
    yield* blob.chunks()
    return
  }
  let fh: FileHandle
  try {
    fh = await open(blob.path, 'r')
  } catch (error) {
    throw eifError('EIF_INPUT_NOT_FOUND', `Cannot open the ${what} ${blob.path}: ${(error as Error).message}`, {details: {path: blob.path}, cause: error})
  }
  try {
    if (!(await fh.stat()).isFile()) throw eifError('EIF_BAD_INPUT', `The ${what} ${blob.path} is not a regular file.`)
    const buf = Buffer.allocUnsafe(CHUNK_SIZE)
    for (let pos = 0; ; ) {
      const {bytesRead} = await fh.read(buf, 0, buf.length, pos)
      if (bytesRead === 0) break
      pos += bytesRead
      yield buf.subarray(0, bytesRead)
    }
  } finally {
    await fh.close()
  }
}

/** nitro-cli's treatment of its cmdline file: surrounding whitespace removed. */
export function trimCmdline(text: string): string {
  return text.trim()
}

async function writeTo(sink: Sink, spec: EifBuildSpec): Promise<EifBuildResult> {
  const signed = spec.signing !== undefined
  const maxRamdisks = EIF_MAX_SECTIONS - 3 - (signed ? 1 : 0)
  if (spec.ramdisks.length === 0) throw eifError('EIF_BAD_INPUT', 'An EIF needs at least one ramdisk.')
  if (spec.ramdisks.length > maxRamdisks) {
    throw eifError('EIF_TOO_MANY_RAMDISKS', `${spec.ramdisks.length} ramdisks given; an EIF holds at most ${maxRamdisks} here (32 sections in all).`)
  }
  const cmdline = Buffer.isBuffer(spec.cmdline) ? spec.cmdline : Buffer.from(spec.cmdline, 'utf8')
  if (cmdline.includes(0)) throw eifError('EIF_BAD_INPUT', 'The kernel cmdline cannot contain NUL bytes.')
  const signer = spec.signing ? prepareSigner(spec.signing) : undefined

  const offsets: bigint[] = []
  const sizes: bigint[] = []
  const inputs: Record<string, string> = {}
  const image = new PcrAccumulator()
  const app = new PcrAccumulator()
  let bootstrap: PcrAccumulator | undefined
  let pos = EIF_HEADER_SIZE
  await sink.append(Buffer.alloc(EIF_HEADER_SIZE)) // placeholder; the real header is written last

  const section = async (type: SectionType, chunks: AsyncIterable<Buffer>, measure: (b: Buffer) => void, inputName?: string): Promise<void> => {
    const start = pos
    await sink.append(Buffer.alloc(EIF_SECTION_HEADER_SIZE)) // size not known yet for streams
    const digest = inputName ? createHash('sha384') : undefined
    let size = 0
    for await (const b of chunks) {
      if (b.length === 0) continue
      measure(b)
      digest?.update(b)
      await sink.append(b)
      size += b.length
    }
    await sink.writeAt(encodeSectionHeader(type, size), start)
    offsets.push(BigInt(start))
    sizes.push(BigInt(size))
    pos = start + EIF_SECTION_HEADER_SIZE + size
    if (inputName && digest) inputs[inputName] = digest.digest('hex')
  }
  const once = async function* (b: Buffer): AsyncGenerator<Buffer> {
    yield b
  }

  await section(SectionType.Kernel, blobChunks(spec.kernel, 'kernel'), (b) => image.update(b), 'kernel')
  await section(SectionType.Cmdline, once(cmdline), (b) => image.update(b), 'cmdline')
  await section(SectionType.Metadata, once(encodeMetadata(buildMetadata(spec.metadata))), () => undefined)
  for (const [i, rd] of spec.ramdisks.entries()) {
    await section(SectionType.Ramdisk, blobChunks(rd, `ramdisk ${i}`), (b) => {
      image.update(b)
      if (i > 0) app.update(b)
    }, `ramdisk${i}`)
    if (i === 0) bootstrap = image.fork()
  }
  const measurements: Measurements = {HashAlgorithm: HASH_ALGORITHM, PCR0: image.finish(), PCR1: bootstrap!.finish(), PCR2: app.finish()}
  if (signer) {
    await section(SectionType.Signature, once(signPcr0(signer, measurements.PCR0)), () => undefined)
    measurements.PCR8 = pcr8Of(signer.certificate)
  }

  const header = encodeHeader({
    magic: EIF_MAGIC,
    version: EIF_CURRENT_VERSION,
    flags: spec.arch === 'aarch64' ? EIF_FLAG_ARCH_ARM64 : 0,
    defaultMem: EIF_DEFAULT_MEM,
    defaultCpus: EIF_DEFAULT_CPUS,
    reserved: 0,
    numSections: offsets.length,
    sectionOffsets: offsets,
    sectionSizes: sizes,
    unused: 0,
    crc32: 0,
  })
  await sink.writeAt(header, 0)

  // Read back: CRC over everything but the CRC field, and the file digest.
  let crc = crc32(header.subarray(0, EIF_CRC_OFFSET))
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_SIZE, Math.max(1, pos)))
  for (let at = EIF_HEADER_SIZE; at < pos; ) {
    const n = await sink.readAt(buf, at, Math.min(buf.length, pos - at))
    if (n <= 0) throw eifError('EIF_WRITE_FAILED', 'The EIF being written could not be read back.')
    crc = crc32(buf.subarray(0, n), crc)
    at += n
  }
  header.writeUInt32BE(crc >>> 0, EIF_CRC_OFFSET)
  await sink.writeAt(header.subarray(EIF_CRC_OFFSET, EIF_CRC_OFFSET + 4), EIF_CRC_OFFSET)

  const fileHash = createHash('sha384').update(header)
  for (let at = EIF_HEADER_SIZE; at < pos; ) {
    const n = await sink.readAt(buf, at, Math.min(buf.length, pos - at))
    fileHash.update(buf.subarray(0, n))
    at += n
  }
  return {measurements, size: pos, sha384: fileHash.digest('hex'), crc32: crc >>> 0, version: EIF_CURRENT_VERSION, signed, inputs}
}

/** Build an EIF in memory (tests, small images). */
export async function buildEif(spec: EifBuildSpec): Promise<{bytes: Buffer; result: EifBuildResult}> {
  const sink = memorySink()
  const result = await writeTo(sink, spec)
  return {bytes: sink.result(), result}
}

/** Build an EIF into `outputPath` atomically (`writeAtomically`: a reader never sees half an EIF). */
export async function writeEif(outputPath: string, spec: EifBuildSpec): Promise<EifBuildResult> {
  try {
    return await writeAtomically(outputPath, async (file) => writeTo(fileSink(file), spec))
  } catch (error) {
    if (isNleError(error)) throw error
    throw eifError('EIF_WRITE_FAILED', `Cannot write ${outputPath}: ${(error as Error).message}`, {details: {path: outputPath}, cause: error})
  }
}
