// Generated EIF fixtures: seeded random images and ephemeral signing certificates, so tests use
// real bytes without committing binaries.
import {webcrypto} from 'node:crypto'
import {crc32} from 'node:zlib'

import 'reflect-metadata'
import {EIF_CRC_OFFSET, EIF_HEADER_SIZE, EIF_MAGIC, EIF_SECTION_HEADER_SIZE, decodeHeader, encodeHeader} from '../lib/eif/format.js'
import type {EifBuildSpec} from '../lib/eif/writer.js'
import {rng} from './rng.js'

export {rng}

export interface TestSigner {
  curve: 'P-256' | 'P-384'
  certificatePem: string
  privateKeyPem: string
}

/** A self-signed EC certificate and its key, made in-process with @peculiar/x509. */
export async function makeSigner(
  curve: 'P-256' | 'P-384',
  validity: {notBefore?: Date; notAfter?: Date} = {},
  subject = `CN=nle test ${curve}, O=nle, C=US`,
): Promise<TestSigner> {
  const x509 = await import('@peculiar/x509')
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
  const alg = {name: 'ECDSA', namedCurve: curve, hash: curve === 'P-256' ? 'SHA-256' : 'SHA-384'}
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: subject,
    notBefore: validity.notBefore ?? new Date(Date.now() - 24 * 3600e3),
    notAfter: validity.notAfter ?? new Date(Date.now() + 365 * 24 * 3600e3),
    signingAlgorithm: alg,
    keys,
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  const privateKeyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`
  return {curve, certificatePem: cert.toString('pem') + '\n', privateKeyPem}
}


export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256)
  return b
}

/** A random image spec: 1–4 ramdisks (some empty), random sizes, optionally signed. */
export function randomSpec(seed: number, signer?: TestSigner): EifBuildSpec {
  const rand = rng(seed)
  const int = (max: number): number => Math.floor(rand() * (max + 1))
  const ramdisks = Array.from({length: 1 + int(3)}, () => ({data: randomBytes(rand, rand() < 0.15 ? 0 : int(3000))}))
  return {
    kernel: {data: randomBytes(rand, 1 + int(4000))},
    cmdline: `console=ttyS0 nle.seed=${seed}${'x'.repeat(int(40))}`,
    ramdisks,
    arch: rand() < 0.5 ? 'x86_64' : 'aarch64',
    metadata: {imageName: `img-${seed}`, imageVersion: `v${int(9)}`, customMetadata: rand() < 0.5 ? {seed, b: [1, 2], a: 'z'} : null},
    ...(signer ? {signing: {certificatePem: signer.certificatePem, privateKeyPem: signer.privateKeyPem}} : {}),
  }
}


export interface RawSection {
  type: number
  data: Buffer
  flags?: number
}

/**
 * Assemble an EIF from arbitrary sections, contiguous, with a correct CRC: for crafting images the
 * writer refuses to make (duplicate or missing sections, bad CBOR, unknown types…).
 */
export function assembleEif(sections: RawSection[], opts: {version?: number; flags?: number} = {}): Buffer {
  const parts: Buffer[] = []
  const offsets: bigint[] = []
  const sizes: bigint[] = []
  let pos = EIF_HEADER_SIZE
  for (const s of sections) {
    const h = Buffer.alloc(EIF_SECTION_HEADER_SIZE)
    h.writeUInt16BE(s.type, 0)
    h.writeUInt16BE(s.flags ?? 0, 2)
    h.writeBigUInt64BE(BigInt(s.data.length), 4)
    offsets.push(BigInt(pos))
    sizes.push(BigInt(s.data.length))
    parts.push(h, s.data)
    pos += EIF_SECTION_HEADER_SIZE + s.data.length
  }
  const header = encodeHeader({
    magic: EIF_MAGIC,
    version: opts.version ?? 4,
    flags: opts.flags ?? 0,
    defaultMem: 1n << 30n,
    defaultCpus: 2n,
    reserved: 0,
    numSections: sections.length,
    sectionOffsets: offsets,
    sectionSizes: sizes,
    unused: 0,
    crc32: 0,
  })
  return fixCrc(Buffer.concat([header, ...parts]))
}

/** Recompute and store the CRC of a (possibly mutated) image in place; returns it. */
export function fixCrc(eif: Buffer): Buffer {
  if (eif.length < EIF_HEADER_SIZE) return eif
  const crc = crc32(eif.subarray(EIF_HEADER_SIZE), crc32(eif.subarray(0, EIF_CRC_OFFSET)))
  eif.writeUInt32BE(crc >>> 0, EIF_CRC_OFFSET)
  return eif
}

/** Split a well-formed EIF back into raw sections (through its offset table). */
export function splitEif(eif: Buffer): RawSection[] {
  const h = decodeHeader(eif)
  return Array.from({length: h.numSections}, (_, i) => {
    const off = Number(h.sectionOffsets[i])
    const size = Number(h.sectionSizes[i])
    return {type: eif.readUInt16BE(off), flags: eif.readUInt16BE(off + 2), data: Buffer.from(eif.subarray(off + EIF_SECTION_HEADER_SIZE, off + EIF_SECTION_HEADER_SIZE + size))}
  })
}
