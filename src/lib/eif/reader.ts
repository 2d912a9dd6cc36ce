/**
 * Streaming EIF reader. Two phases:
 *  1. `readLayout`: the 548-byte header and each 12-byte section header (tiny reads), validated
 *     completely — every declared offset and size is checked against the real file size before
 *     anything is read or allocated from it, and the sections must tile the file exactly
 *     (header, then section after section, no gap, no overlap, nothing after the last).
 *  2. `inspectEif`: one sequential pass over the file in fixed-size chunks computing the CRC32,
 *     PCR0/1/2 (and PCR8 from the signing certificate) and, optionally, the file's SHA-384.
 * Memory is constant (one chunk buffer) apart from the small sections kept whole (cmdline,
 * metadata, signature), each capped and each already bounded by the file size.
 */
import {createHash, type Hash} from 'node:crypto'
import {crc32} from 'node:zlib'

import {pcr8Of} from './cert.js'
import {eifError} from './errors.js'
import {
  EIF_CRC_OFFSET,
  EIF_CURRENT_VERSION,
  EIF_FLAG_ARCH_ARM64,
  EIF_HEADER_SIZE,
  EIF_MAGIC,
  EIF_MAX_SECTIONS,
  EIF_SECTION_HEADER_SIZE,
  EIF_SIGNATURE_MAX_SIZE,
  SECTION_NAMES,
  SectionType,
  decodeHeader,
  decodeSectionHeader,
  isSectionType,
} from './format.js'
import {type EifMetadata, parseMetadata} from './metadata.js'
import {CHUNK_SIZE, HASH_ALGORITHM, PcrAccumulator} from './pcr.js'
import {type ByteSource, withFileSource} from './source.js'
import {type PcrSignature, type SignatureCheck, checkPcrSignature, parseSignatureSection} from './signature.js'

/** Sections nle keeps in memory whole, with their caps. Kernel and ramdisks are only streamed. */
export const MAX_CMDLINE_SIZE = 64 * 1024
export const MAX_METADATA_SIZE = 4 * 1024 * 1024

export type Arch = 'x86_64' | 'aarch64'

export interface EifSection {
  index: number
  type: SectionType
  typeName: string
  /** File offset of the 12-byte section header (what the EIF header's offset table holds). */
  offset: number
  /** File offset of the data. */
  dataOffset: number
  size: number
}

export interface EifLayout {
  fileSize: number
  version: number
  flags: number
  arch: Arch
  defaultMem: bigint
  defaultCpus: bigint
  storedCrc32: number
  sections: EifSection[]
  /** The 548 header bytes as read (the streaming pass checks they did not change). */
  rawHeader: Buffer
}

export interface Measurements {
  HashAlgorithm: string
  PCR0: string
  PCR1: string
  PCR2: string
  PCR8?: string
}

export interface EifInfo {
  layout: EifLayout
  measurements: Measurements
  crc: {stored: number; computed: number; ok: boolean}
  /** SHA-384 of the whole file (only with `fileDigest: true`). */
  fileSha384?: string
  cmdline: Buffer
  metadata?: EifMetadata
  signature?: {section: PcrSignature; check: SignatureCheck}
}

export interface InspectOptions {
  /** Also compute the SHA-384 of the whole file (for the lockfile). Costs one more hash pass. */
  fileDigest?: boolean
  /** The time to check the signing certificate's validity at (default: now). */
  now?: Date
}

async function readExactly(src: ByteSource, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length)
  const n = await src.readInto(buf, position, length)
  if (n !== length) throw eifError('EIF_FILE_CHANGED', 'The EIF became shorter while it was being read.', {details: {position, length, read: n}})
  return buf
}

/** Phase 1: read and validate the header and the section table. */
export async function readLayout(src: ByteSource): Promise<EifLayout> {
  const fileSize = src.size
  const head = await readExactly(src, 0, Math.min(fileSize, EIF_HEADER_SIZE))
  const magicLen = Math.min(4, head.length)
  if (!head.subarray(0, magicLen).equals(EIF_MAGIC.subarray(0, magicLen))) {
    throw eifError('EIF_BAD_MAGIC', 'Not an EIF: the file does not start with ".eif".', {details: {magic: head.subarray(0, magicLen).toString('hex')}})
  }
  if (fileSize < EIF_HEADER_SIZE) {
    throw eifError('EIF_TRUNCATED', `The EIF is ${fileSize} bytes, shorter than its ${EIF_HEADER_SIZE}-byte header.`, {details: {fileSize}})
  }
  const h = decodeHeader(head)
  if (h.version < 1 || h.version > EIF_CURRENT_VERSION) {
    throw eifError('EIF_UNSUPPORTED_VERSION', `EIF version ${h.version} is not supported (1..${EIF_CURRENT_VERSION}).`, {details: {version: h.version}})
  }
  if ((h.flags & ~EIF_FLAG_ARCH_ARM64) !== 0) {
    throw eifError('EIF_BAD_FLAGS', `EIF header flags 0x${h.flags.toString(16)} set reserved bits.`, {details: {flags: h.flags}})
  }
  if (h.numSections > EIF_MAX_SECTIONS) {
    throw eifError('EIF_TOO_MANY_SECTIONS', `The EIF declares ${h.numSections} sections; at most ${EIF_MAX_SECTIONS} are allowed.`, {details: {numSections: h.numSections}})
  }
  const nonzeroTail = h.sectionOffsets.some((v, i) => i >= h.numSections && v !== 0n) || h.sectionSizes.some((v, i) => i >= h.numSections && v !== 0n)
  if (h.reserved !== 0 || h.unused !== 0 || nonzeroTail) {
    throw eifError('EIF_BAD_HEADER', 'The EIF header has non-zero reserved fields or unused section-table entries.', {
      details: {reserved: h.reserved, unused: h.unused, nonzeroTail},
    })
  }
  if (h.numSections === 0) throw eifError('EIF_MISSING_SECTION', 'The EIF declares no sections.')

  const size = BigInt(fileSize)
  const sections: EifSection[] = []
  let expected = BigInt(EIF_HEADER_SIZE)
  for (let i = 0; i < h.numSections; i++) {
    const off = h.sectionOffsets[i]!
    const len = h.sectionSizes[i]!
    const details = {index: i, offset: off.toString(), size: len.toString(), expectedOffset: expected.toString(), fileSize}
    if (off + BigInt(EIF_SECTION_HEADER_SIZE) > size) {
      throw eifError('EIF_SECTION_OUT_OF_BOUNDS', `Section ${i}'s offset ${off} lies past the end of the ${fileSize}-byte file.`, {details})
    }
    if (off < expected) throw eifError('EIF_SECTION_OVERLAP', `Section ${i} at offset ${off} overlaps the header or the previous section (which ends at ${expected}).`, {details})
    if (off > expected) throw eifError('EIF_SECTION_GAP', `Section ${i} starts at ${off}, leaving a gap after ${expected}; EIF sections must be contiguous.`, {details})
    const sh = decodeSectionHeader(await readExactly(src, Number(off), EIF_SECTION_HEADER_SIZE))
    if (!isSectionType(sh.type)) {
      throw eifError('EIF_UNKNOWN_SECTION_TYPE', `Section ${i} has type ${sh.type}; known types are 1 (kernel) to 5 (metadata).`, {details: {...details, type: sh.type}})
    }
    if (sh.flags !== 0) throw eifError('EIF_BAD_SECTION_FLAGS', `Section ${i} has non-zero flags 0x${sh.flags.toString(16)}.`, {details: {...details, flags: sh.flags}})
    if (sh.size !== len) {
      throw eifError('EIF_SECTION_SIZE_MISMATCH', `Section ${i}'s header says ${sh.size} bytes but the EIF header says ${len}.`, {
        details: {...details, sectionHeaderSize: sh.size.toString()},
      })
    }
    const end = off + BigInt(EIF_SECTION_HEADER_SIZE) + len
    if (end > size) {
      throw eifError('EIF_TRUNCATED', `Section ${i} (${SECTION_NAMES[sh.type]}, ${len} bytes) runs past the end of the ${fileSize}-byte file.`, {details})
    }
    sections.push({
      index: i,
      type: sh.type,
      typeName: SECTION_NAMES[sh.type],
      offset: Number(off),
      dataOffset: Number(off) + EIF_SECTION_HEADER_SIZE,
      size: Number(len),
    })
    expected = end
  }
  if (expected !== size) {
    throw eifError('EIF_TRAILING_DATA', `The EIF has ${size - expected} bytes after its last section.`, {details: {end: expected.toString(), fileSize}})
  }
  validateSectionSet(sections, h.version)
  return {
    fileSize,
    version: h.version,
    flags: h.flags,
    arch: (h.flags & EIF_FLAG_ARCH_ARM64) !== 0 ? 'aarch64' : 'x86_64',
    defaultMem: h.defaultMem,
    defaultCpus: h.defaultCpus,
    storedCrc32: h.crc32,
    sections,
    rawHeader: head,
  }
}

function validateSectionSet(sections: EifSection[], version: number): void {
  const firstIndex = (t: SectionType): number => sections.findIndex((s) => s.type === t)
  for (const t of [SectionType.Kernel, SectionType.Cmdline, SectionType.Signature, SectionType.Metadata]) {
    const count = sections.filter((s) => s.type === t).length
    if (count > 1) throw eifError('EIF_DUPLICATE_SECTION', `The EIF has ${count} ${SECTION_NAMES[t]} sections; at most one is allowed.`, {details: {type: t}})
  }
  const required: SectionType[] = [SectionType.Kernel, SectionType.Cmdline, SectionType.Ramdisk]
  if (version >= 4) required.push(SectionType.Metadata)
  for (const t of required) {
    if (firstIndex(t) < 0) throw eifError('EIF_MISSING_SECTION', `The EIF has no ${SECTION_NAMES[t]} section.`, {details: {type: t}})
  }
  // PCRs concatenate in file order; require kernel < cmdline < every ramdisk so that every
  // implementation (file order or type order) measures the same bytes.
  if (!(firstIndex(SectionType.Kernel) < firstIndex(SectionType.Cmdline) && firstIndex(SectionType.Cmdline) < firstIndex(SectionType.Ramdisk))) {
    throw eifError('EIF_SECTION_ORDER', 'The kernel, cmdline and ramdisk sections must come in that order.')
  }
  for (const s of sections) {
    const cap = s.type === SectionType.Cmdline ? MAX_CMDLINE_SIZE : s.type === SectionType.Metadata ? MAX_METADATA_SIZE : s.type === SectionType.Signature ? EIF_SIGNATURE_MAX_SIZE : Infinity
    if (s.size > cap) {
      throw eifError('EIF_SECTION_TOO_LARGE', `The ${s.typeName} section is ${s.size} bytes; nle accepts at most ${cap}.`, {details: {index: s.index, size: s.size, max: cap}})
    }
  }
}

/** Phase 2: one pass computing CRC, PCRs and the kept sections. */
export async function inspectEif(src: ByteSource, options: InspectOptions = {}): Promise<EifInfo> {
  const layout = await readLayout(src)
  const chunk = Buffer.allocUnsafe(Math.max(EIF_HEADER_SIZE, Math.min(CHUNK_SIZE, src.size)))
  const fileHash: Hash | undefined = options.fileDigest ? createHash('sha384') : undefined
  let crc = 0

  const stream = async (position: number, length: number, sink: (b: Buffer) => void): Promise<void> => {
    for (let done = 0; done < length; ) {
      const want = Math.min(chunk.length, length - done)
      const n = await src.readInto(chunk, position + done, want)
      if (n !== want) throw eifError('EIF_FILE_CHANGED', 'The EIF became shorter while it was being read.', {details: {position: position + done}})
      const b = chunk.subarray(0, n)
      fileHash?.update(b)
      sink(b)
      done += n
    }
  }

  let header: Buffer | undefined
  await stream(0, EIF_HEADER_SIZE, (b) => {
    header = Buffer.from(b)
    crc = crc32(b.subarray(0, EIF_CRC_OFFSET), crc)
  })
  if (!header || !header.equals(layout.rawHeader)) {
    throw eifError('EIF_FILE_CHANGED', 'The EIF header changed while it was being read.')
  }

  const image = new PcrAccumulator() // PCR0: kernel ‖ cmdline ‖ every ramdisk
  const app = new PcrAccumulator() // PCR2: ramdisks after the first
  let bootstrap: PcrAccumulator | undefined // PCR1: a fork of PCR0's hash after the first ramdisk
  let ramdiskIndex = 0
  let cmdline = Buffer.alloc(0)
  let metadataBytes: Buffer | undefined
  let signatureBytes: Buffer | undefined

  for (const s of layout.sections) {
    await stream(s.offset, EIF_SECTION_HEADER_SIZE, (b) => {
      const sh = decodeSectionHeader(b)
      if (sh.type !== s.type || sh.size !== BigInt(s.size) || sh.flags !== 0) throw eifError('EIF_FILE_CHANGED', 'An EIF section header changed while the file was being read.')
      crc = crc32(b, crc)
    })
    const kept: Buffer[] = []
    const keep = s.type === SectionType.Cmdline || s.type === SectionType.Metadata || s.type === SectionType.Signature
    const measured = s.type === SectionType.Kernel || s.type === SectionType.Cmdline || s.type === SectionType.Ramdisk
    const toApp = s.type === SectionType.Ramdisk && ramdiskIndex > 0
    await stream(s.dataOffset, s.size, (b) => {
      crc = crc32(b, crc)
      if (measured) image.update(b)
      if (toApp) app.update(b)
      if (keep) kept.push(Buffer.from(b))
    })
    if (s.type === SectionType.Ramdisk) {
      if (ramdiskIndex === 0) bootstrap = image.fork()
      ramdiskIndex++
    }
    if (s.type === SectionType.Cmdline) cmdline = Buffer.concat(kept)
    if (s.type === SectionType.Metadata) metadataBytes = Buffer.concat(kept)
    if (s.type === SectionType.Signature) signatureBytes = Buffer.concat(kept)
  }

  const measurements: Measurements = {
    HashAlgorithm: HASH_ALGORITHM,
    PCR0: image.finish(),
    PCR1: bootstrap!.finish(),
    PCR2: app.finish(),
  }
  const metadata = metadataBytes === undefined ? undefined : parseMetadata(metadataBytes)
  let signature: EifInfo['signature']
  if (signatureBytes !== undefined) {
    const section = parseSignatureSection(signatureBytes)
    const check = checkPcrSignature(section, measurements.PCR0, options.now)
    measurements.PCR8 = pcr8Of(check.certificate)
    signature = {section, check}
  }
  const computed = crc >>> 0
  return {
    layout,
    measurements,
    crc: {stored: layout.storedCrc32, computed, ok: computed === layout.storedCrc32},
    ...(fileHash ? {fileSha384: fileHash.digest('hex')} : {}),
    cmdline,
    ...(metadata ? {metadata} : {}),
    ...(signature ? {signature} : {}),
  }
}

export async function readEif(path: string, options: InspectOptions = {}): Promise<EifInfo> {
  return withFileSource(path, (src) => inspectEif(src, options))
}

export interface TrustOptions {
  /** Fail unless the image is signed. */
  requireSignature?: boolean
}

/**
 * The checks for an EIF that is about to be trusted (run, pinned, released a key to): the CRC must
 * match, and a signature, when present (or required), must verify over exactly PCR0 under a
 * certificate that is valid now. describe reports these; this makes them fatal.
 */
export function assertTrusted(info: EifInfo, options: TrustOptions = {}): void {
  if (!info.crc.ok) {
    throw eifError('EIF_BAD_CRC', `The EIF's CRC32 does not match its contents (stored ${hex8(info.crc.stored)}, computed ${hex8(info.crc.computed)}).`, {
      hint: 'The file is corrupt or was modified; rebuild or re-download it.',
      details: {stored: info.crc.stored, computed: info.crc.computed},
    })
  }
  const sig = info.signature
  if (!sig) {
    if (options.requireSignature) throw eifError('EIF_NOT_SIGNED', 'The EIF is not signed, but a signature is required.')
    return
  }
  if (!sig.check.signatureValid) throw eifError('EIF_BAD_SIGNATURE', 'The EIF signature does not verify under its signing certificate.')
  if (!sig.check.payloadMatchesPcr0) throw eifError('EIF_SIGNATURE_PCR_MISMATCH', 'The EIF signature is valid but signs a different PCR0 than the image measures.')
  if (!sig.check.certificateValidNow) {
    const early = sig.check.checkedAt.getTime() < sig.check.certificate.notBefore.getTime()
    throw eifError(early ? 'EIF_CERT_NOT_YET_VALID' : 'EIF_CERT_EXPIRED', `The EIF signing certificate is ${early ? 'not yet valid' : 'expired'} (valid ${sig.check.certificate.x509.validFrom} to ${sig.check.certificate.x509.validTo}).`, {
      hint: 'Re-sign the image with a currently valid certificate.',
    })
  }
}

const hex8 = (n: number): string => n.toString(16).padStart(8, '0')
