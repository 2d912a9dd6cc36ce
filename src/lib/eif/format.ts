/**
 * The Enclave Image File (EIF) layout, as defined by aws-nitro-enclaves-image-format: a 548-byte
 * big-endian header, then sections, each a 12-byte big-endian section header followed by its data.
 * Pure encode/decode of the fixed-size parts; no I/O.
 */
export const EIF_MAGIC = Buffer.from('.eif', 'latin1')
export const EIF_HEADER_SIZE = 548
export const EIF_SECTION_HEADER_SIZE = 12
export const EIF_MAX_SECTIONS = 32
/** Offset of the CRC32 field: the CRC covers every byte of the file except these 4. */
export const EIF_CRC_OFFSET = 544
/** The version nle writes (V2 added the CRC, V3 the signature, V4 the metadata section). */
export const EIF_CURRENT_VERSION = 4
export const EIF_FLAG_ARCH_ARM64 = 0x1
/** The reference builder's fixed header defaults (unused by the hypervisor). */
export const EIF_DEFAULT_MEM = 1024n * 1024n * 1024n
export const EIF_DEFAULT_CPUS = 2n
/** The reference caps the signature section at 32 KiB. */
export const EIF_SIGNATURE_MAX_SIZE = 32 * 1024

export const SectionType = {
  Kernel: 1,
  Cmdline: 2,
  Ramdisk: 3,
  Signature: 4,
  Metadata: 5,
} as const
export type SectionType = (typeof SectionType)[keyof typeof SectionType]
export const SECTION_NAMES: Record<SectionType, string> = {1: 'kernel', 2: 'cmdline', 3: 'ramdisk', 4: 'signature', 5: 'metadata'}

export function isSectionType(n: number): n is SectionType {
  return Number.isInteger(n) && n >= 1 && n <= 5
}

/** The header as stored. 64-bit fields stay bigint: they are compared against the file size before use. */
export interface RawEifHeader {
  magic: Buffer
  version: number
  flags: number
  defaultMem: bigint
  defaultCpus: bigint
  reserved: number
  numSections: number
  sectionOffsets: bigint[]
  sectionSizes: bigint[]
  unused: number
  crc32: number
}

export function decodeHeader(buf: Buffer): RawEifHeader {
  if (buf.length < EIF_HEADER_SIZE) throw new RangeError('header buffer too short')
  const sectionOffsets: bigint[] = []
  const sectionSizes: bigint[] = []
  for (let i = 0; i < EIF_MAX_SECTIONS; i++) {
    sectionOffsets.push(buf.readBigUInt64BE(28 + 8 * i))
    sectionSizes.push(buf.readBigUInt64BE(28 + 8 * EIF_MAX_SECTIONS + 8 * i))
  }
  return {
    magic: Buffer.from(buf.subarray(0, 4)),
    version: buf.readUInt16BE(4),
    flags: buf.readUInt16BE(6),
    defaultMem: buf.readBigUInt64BE(8),
    defaultCpus: buf.readBigUInt64BE(16),
    reserved: buf.readUInt16BE(24),
    numSections: buf.readUInt16BE(26),
    sectionOffsets,
    sectionSizes,
    unused: buf.readUInt32BE(540),
    crc32: buf.readUInt32BE(EIF_CRC_OFFSET),
  }
}

export function encodeHeader(h: RawEifHeader): Buffer {
  const buf = Buffer.alloc(EIF_HEADER_SIZE)
  h.magic.copy(buf, 0, 0, 4)
  buf.writeUInt16BE(h.version, 4)
  buf.writeUInt16BE(h.flags, 6)
  buf.writeBigUInt64BE(h.defaultMem, 8)
  buf.writeBigUInt64BE(h.defaultCpus, 16)
  buf.writeUInt16BE(h.reserved, 24)
  buf.writeUInt16BE(h.numSections, 26)
  for (let i = 0; i < EIF_MAX_SECTIONS; i++) {
    buf.writeBigUInt64BE(h.sectionOffsets[i] ?? 0n, 28 + 8 * i)
    buf.writeBigUInt64BE(h.sectionSizes[i] ?? 0n, 28 + 8 * EIF_MAX_SECTIONS + 8 * i)
  }
  buf.writeUInt32BE(h.unused, 540)
  buf.writeUInt32BE(h.crc32, EIF_CRC_OFFSET)
  return buf
}

export interface RawSectionHeader {
  type: number
  flags: number
  size: bigint
}

export function decodeSectionHeader(buf: Buffer): RawSectionHeader {
  return {type: buf.readUInt16BE(0), flags: buf.readUInt16BE(2), size: buf.readBigUInt64BE(4)}
}

export function encodeSectionHeader(type: SectionType, size: number): Buffer {
  const buf = Buffer.alloc(EIF_SECTION_HEADER_SIZE)
  buf.writeUInt16BE(type, 0)
  buf.writeUInt16BE(0, 2)
  buf.writeBigUInt64BE(BigInt(size), 4)
  return buf
}
