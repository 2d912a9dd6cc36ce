// Reader, writer, PCRs and signatures: known answers, round trips, reproducibility, bad input.
import {createHash} from 'node:crypto'
import {execFileSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {Decoder} from 'cbor-x'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {type TestSigner, assembleEif, fixCrc, makeSigner, randomSpec, splitEif} from '../../test-support/eif.js'
import {sharedTestdata} from '../../test-support/testdata.js'
import {tempDir} from '../../test-support/tmp.js'
import {hasCode} from '../errors.js'
import {codeOf} from '../../test-support/rejection.js'
import {parseSigningCertificate, pcr8Of} from './cert.js'
import {describeEif} from './describe.js'
import {EIF_HEADER_SIZE, SectionType, decodeHeader} from './format.js'
import {EMPTY_PCR, pcrOf, pcrOfFile} from './pcr.js'
import {assertTrusted, inspectEif, readEif} from './reader.js'
import {bufferSource} from './source.js'
import {decodeCoseSign1, encodeSignatureSection, parseSignatureSection, pcrPayload} from './signature.js'
import {type EifBuildSpec, buildEif, writeEif} from './writer.js'

/** The formula written out independently of pcr.ts: SHA384(0^48 || SHA384(content)). */
const independentPcr = (...parts: Buffer[]): string => {
  const inner = createHash('sha384')
  for (const p of parts) inner.update(p)
  return createHash('sha384').update(Buffer.concat([Buffer.alloc(48), inner.digest()])).digest('hex')
}
const blob = (b: EifBuildSpec['kernel']): Buffer => ('data' in b ? b.data : Buffer.alloc(0))
const inspect = (b: Buffer, now?: Date) => inspectEif(bufferSource(b), {fileDigest: true, ...(now ? {now} : {})})

let p256: TestSigner
let p384: TestSigner
const tmp = tempDir('nle-eif-')
beforeAll(async () => {
  ;[p256, p384] = await Promise.all([makeSigner('P-256'), makeSigner('P-384')])
})
afterAll(() => tmp.cleanup())

const SMALL: EifBuildSpec = {
  kernel: {data: Buffer.from('KERNEL')},
  cmdline: 'console=ttyS0',
  ramdisks: [{data: Buffer.from('rd0')}, {data: Buffer.from('rd1')}],
  metadata: {imageName: 'x', imageVersion: '1'},
}

const ATTESTATION = sharedTestdata('attestation/')

describe('known answers', () => {
  it('the PCR of empty content is 21b9efbc…fc500a, the PCR2 real single-ramdisk enclaves report', async () => {
    expect(EMPTY_PCR).toBe('21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a')
    expect(pcrOf(Buffer.alloc(0))).toBe(EMPTY_PCR)
    expect(independentPcr()).toBe(EMPTY_PCR)
    const empty = join(tmp.dir, 'empty')
    writeFileSync(empty, '')
    expect(await pcrOfFile(empty)).toBe(EMPTY_PCR)
  })

  it.skipIf(ATTESTATION === undefined)('…and it is the PCR2 of the real AWS-signed attestation document (turnkey_prod)', () => {
    const v = JSON.parse(readFileSync(`${ATTESTATION!}vectors.json`, 'utf8')) as Record<string, {pcrs?: Record<string, string>}>
    expect(v['turnkey_prod_attestation.bin']?.pcrs?.['2']).toBe(EMPTY_PCR)
  })

  it('pins the PCRs, CRC and bytes of a fixed small image', async () => {
    const {bytes, result} = await buildEif(SMALL)
    expect(result.measurements).toEqual({
      HashAlgorithm: 'Sha384 { ... }',
      PCR0: 'bcb904363947d3dc9b626880f275f54f6fbc0a79e711ff222b3fe557bb0e59ec189b15bba1aa6773e9fb17cd8373872e',
      PCR1: '35f98b375b9122b016bbcc06795a995a1cb5036d6e438795dc7ceca8f5045b972c66d2e358882ca0a08b261d55b038bb',
      PCR2: '695029c2c04573eb1daf702d94e399b1c92ea53256b3f6683606ddbbb368c9c3b6f0a5059b95c334d8f9dca2d1bcf6b4',
    })
    expect(result.measurements.PCR0).toBe(independentPcr(Buffer.from('KERNELconsole=ttyS0rd0rd1')))
    expect(result.measurements.PCR1).toBe(independentPcr(Buffer.from('KERNELconsole=ttyS0rd0')))
    expect(result.measurements.PCR2).toBe(independentPcr(Buffer.from('rd1')))
    expect(result.crc32).toBe(2686694629)
    expect(createHash('sha384').update(bytes).digest('hex')).toBe(result.sha384)
    // The header as the reference builder writes it.
    const h = decodeHeader(bytes)
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('.eif')
    expect([h.version, h.flags, h.defaultMem, h.defaultCpus, h.numSections]).toEqual([4, 0, 1n << 30n, 2n, 5])
    const meta = Buffer.from(
      '{"ImageName":"x","ImageVersion":"1","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00+00:00","BuildTool":"nle","BuildToolVersion":"0.0.0","OperatingSystem":"Linux","KernelVersion":"unknown"},"DockerInfo":null,"CustomMetadata":null}',
    )
    const k = 548
    const c = k + 12 + 6
    const m = c + 12 + 13
    const r0 = m + 12 + meta.length
    const r1 = r0 + 12 + 3
    expect(h.sectionOffsets.slice(0, 6)).toEqual([k, c, m, r0, r1, 0].map(BigInt))
    expect(h.sectionSizes.slice(0, 6)).toEqual([6, 13, meta.length, 3, 3, 0].map(BigInt))
    expect(bytes.length).toBe(r1 + 12 + 3)
    expect(bytes.subarray(m + 12, m + 12 + meta.length).equals(meta)).toBe(true)
    expect(bytes.subarray(k, k + 12).toString('hex')).toBe('000100000000000000000006')
  })

  it('with one ramdisk, PCR0 = PCR1 and PCR2 is the empty PCR (as in real single-ramdisk attestations)', async () => {
    const {bytes} = await buildEif({...SMALL, ramdisks: [{data: Buffer.from('only')}]})
    const info = await inspect(bytes)
    expect(info.measurements.PCR0).toBe(info.measurements.PCR1)
    expect(info.measurements.PCR2).toBe(EMPTY_PCR)
  })

  it('signing adds PCR8 and changes no other PCR; PCR8 is the PCR of the DER certificate', async () => {
    const plain = (await buildEif(SMALL)).result.measurements
    const signed = (await buildEif({...SMALL, signing: {certificatePem: p384.certificatePem, privateKeyPem: p384.privateKeyPem}})).result.measurements
    expect({...signed, PCR8: undefined}).toEqual({...plain, PCR8: undefined})
    const der = parseSigningCertificate(p384.certificatePem).der
    expect(signed.PCR8).toBe(independentPcr(der))
    // DER obtained independently with the openssl CLI, when present.
    let opensslDer: Buffer | undefined
    try {
      opensslDer = execFileSync('openssl', ['x509', '-outform', 'DER'], {input: p384.certificatePem})
    } catch {
      opensslDer = undefined
    }
    if (opensslDer) expect(signed.PCR8).toBe(independentPcr(opensslDer))
  })

  it('encodes the signature section and COSE payload byte for byte as serde_cbor does', async () => {
    expect(pcrPayload(0, '00'.repeat(47) + 'ff').toString('hex')).toBe(
      'a2' + '6e' + Buffer.from('register_index').toString('hex') + '00' + '6e' + Buffer.from('register_value').toString('hex') + '9830' + '00'.repeat(47) + '18ff',
    )
    expect(encodeSignatureSection({certificatePem: Buffer.from('AB'), coseSign1: Buffer.from([1, 200])}).toString('hex')).toBe(
      '81a2' + '73' + Buffer.from('signing_certificate').toString('hex') + '8218411842' + '69' + Buffer.from('signature').toString('hex') + '820118c8',
    )
    const {bytes, result} = await buildEif({...SMALL, signing: {certificatePem: p256.certificatePem, privateKeyPem: p256.privateKeyPem}})
    const sigSection = splitEif(bytes).at(-1)!
    expect(sigSection.type).toBe(SectionType.Signature)
    const parsed = parseSignatureSection(sigSection.data)
    expect(parsed.certificatePem.toString()).toBe(p256.certificatePem)
    const cose = decodeCoseSign1(parsed.coseSign1)
    expect(cose.alg).toBe(-7)
    expect(cose.protectedBytes.toString('hex')).toBe('a10126')
    expect(cose.payload.equals(pcrPayload(0, result.measurements.PCR0))).toBe(true)
    // Untagged 4-array with an empty unprotected map.
    const top = new Decoder({mapsAsObjects: false}).decode(parsed.coseSign1) as unknown[]
    expect(top).toHaveLength(4)
    expect(top[1]).toEqual(new Map())
    expect(cose.signature).toHaveLength(64)
  })
})

describe('writer → reader round trip', () => {
  it('reads back 48 generated images (1–4 ramdisks, unsigned, P-256 and P-384 signed) exactly', async () => {
    const signers = [undefined, p256, p384]
    for (let seed = 1; seed <= 48; seed++) {
      const signer = signers[seed % 3]
      const spec = randomSpec(seed, signer)
      const {bytes, result} = await buildEif(spec)
      const info = await inspect(bytes)
      const rds = spec.ramdisks.map(blob)
      const k = blob(spec.kernel)
      const cmd = Buffer.from(spec.cmdline as string)
      expect(info.measurements, `seed ${seed}`).toEqual(result.measurements)
      expect(info.measurements.PCR0).toBe(independentPcr(k, cmd, ...rds))
      expect(info.measurements.PCR1).toBe(independentPcr(k, cmd, rds[0]!))
      expect(info.measurements.PCR2).toBe(independentPcr(...rds.slice(1)))
      expect(info.crc.ok).toBe(true)
      expect(info.fileSha384).toBe(result.sha384)
      expect(info.layout.arch).toBe(spec.arch)
      expect(info.layout.fileSize).toBe(bytes.length)
      expect(info.cmdline.equals(cmd)).toBe(true)
      // Section order: kernel, cmdline, metadata, ramdisks…, signature.
      expect(info.layout.sections.map((s) => s.type)).toEqual([1, 2, 5, ...rds.map(() => 3), ...(signer ? [4] : [])])
      expect(info.layout.sections.filter((s) => s.type === 3).map((s) => s.size)).toEqual(rds.map((r) => r.length))
      expect(info.metadata?.ImageName).toBe(spec.metadata.imageName)
      expect(info.metadata?.CustomMetadata).toEqual(spec.metadata.customMetadata ?? null)
      if (signer) {
        expect(info.signature?.check).toMatchObject({signatureValid: true, payloadMatchesPcr0: true, certificateValidNow: true})
        expect(info.measurements.PCR8).toBe(pcr8Of(parseSigningCertificate(signer.certificatePem)))
      } else {
        expect(info.signature).toBeUndefined()
        expect(info.measurements.PCR8).toBeUndefined()
      }
      expect(() => assertTrusted(info, {requireSignature: signer !== undefined})).not.toThrow()
    }
  })

  it('describes an image with exactly nitro-cli describe-eif\'s keys, in its order', async () => {
    const {bytes} = await buildEif({...SMALL, metadata: {...SMALL.metadata, customMetadata: {team: 'ml', n: 1}}, signing: {certificatePem: p384.certificatePem, privateKeyPem: p384.privateKeyPem}})
    const d = await describeEif(await inspect(bytes))
    expect(Object.keys(d)).toEqual(['EifVersion', 'Measurements', 'IsSigned', 'SigningCertificate', 'CheckCRC', 'SignatureCheck', 'ImageName', 'ImageVersion', 'Metadata'])
    expect(Object.keys(d.Measurements)).toEqual(['HashAlgorithm', 'PCR0', 'PCR1', 'PCR2', 'PCR8'])
    expect(d).toMatchObject({EifVersion: 4, IsSigned: true, CheckCRC: true, SignatureCheck: true, ImageName: 'x', ImageVersion: '1'})
    expect(d.SigningCertificate).toMatchObject({IssuerName: {commonName: 'nle test P-384', organizationName: 'nle', countryName: 'US'}, Algorithm: 'ecdsa-with-SHA384'})
    expect(d.SigningCertificate?.NotBefore).toMatch(/^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT$/)
    expect(d.SigningCertificate?.Signature).toMatch(/^30(:[0-9A-F]{2})+$/)
    // CustomMetadata is flattened into Metadata, as serde(flatten) does.
    expect(d.Metadata).toEqual({BuildTime: '1970-01-01T00:00:00+00:00', BuildTool: 'nle', BuildToolVersion: '0.0.0', OperatingSystem: 'Linux', KernelVersion: 'unknown', DockerInfo: null, n: 1, team: 'ml'})
    const unsigned = await describeEif(await inspect((await buildEif(SMALL)).bytes))
    expect(Object.keys(unsigned)).toEqual(['EifVersion', 'Measurements', 'IsSigned', 'CheckCRC', 'ImageName', 'ImageVersion', 'Metadata'])
  })
})

describe('reproducibility', () => {
  it('rebuilds are byte-identical (unsigned and signed with P-256/P-384), in memory and on disk', async () => {
    for (const [seed, signer] of [[101, undefined], [102, p256], [103, p384]] as const) {
      const a = await buildEif(randomSpec(seed, signer))
      const b = await buildEif(randomSpec(seed, signer))
      expect(b.bytes.equals(a.bytes), `seed ${seed}`).toBe(true)
      const out = join(tmp.dir, `r${seed}.eif`)
      const r = await writeEif(out, randomSpec(seed, signer))
      expect(readFileSync(out).equals(a.bytes)).toBe(true)
      expect(r).toEqual(a.result)
      expect((await readEif(out, {fileDigest: true})).fileSha384).toBe(a.result.sha384)
    }
  })

  it('streams file and chunked inputs to the same bytes as in-memory inputs', async () => {
    const spec = randomSpec(7)
    const kpath = join(tmp.dir, 'kernel.bin')
    writeFileSync(kpath, blob(spec.kernel))
    const rd = blob(spec.ramdisks[0]!)
    const chunked: EifBuildSpec = {
      ...spec,
      kernel: {path: kpath},
      ramdisks: [{chunks: async function* () { yield rd.subarray(0, 5); yield Buffer.alloc(0); yield rd.subarray(5) }}, ...spec.ramdisks.slice(1)],
    }
    expect((await buildEif(chunked)).bytes.equals((await buildEif(spec)).bytes)).toBe(true)
  })
})

describe('bad input: each failure its own code', () => {
  let base: Buffer
  let signedBase: Buffer
  beforeAll(async () => {
    base = (await buildEif(SMALL)).bytes
    signedBase = (await buildEif({...SMALL, signing: {certificatePem: p256.certificatePem, privateKeyPem: p256.privateKeyPem}})).bytes
  })
  const mutate = (b: Buffer, f: (c: Buffer) => Buffer | void): Buffer => {
    const c = Buffer.from(b)
    return f(c) ?? c
  }
  const setOffset = (c: Buffer, i: number, v: bigint): void => void c.writeBigUInt64BE(v, 28 + 8 * i)
  const setSize = (c: Buffer, i: number, v: bigint): void => void c.writeBigUInt64BE(v, 28 + 256 + 8 * i)
  const sections = (): ReturnType<typeof splitEif> => splitEif(base)
  const cases: [string, () => Buffer, string][] = [
    ['wrong magic', () => mutate(base, (c) => void c.write('ELF!', 0, 'latin1')), 'EIF_BAD_MAGIC'],
    ['truncated header', () => base.subarray(0, 300), 'EIF_TRUNCATED'],
    ['truncated section', () => base.subarray(0, base.length - 2), 'EIF_TRUNCATED'],
    ['version 5', () => mutate(base, (c) => void c.writeUInt16BE(5, 4)), 'EIF_UNSUPPORTED_VERSION'],
    ['reserved flag bits', () => mutate(base, (c) => void c.writeUInt16BE(0x8000, 6)), 'EIF_BAD_FLAGS'],
    ['non-zero reserved field', () => mutate(base, (c) => void c.writeUInt16BE(1, 24)), 'EIF_BAD_HEADER'],
    ['more than 32 sections', () => mutate(base, (c) => void c.writeUInt16BE(33, 26)), 'EIF_TOO_MANY_SECTIONS'],
    ['zero sections', () => mutate(base, (c) => { c.writeUInt16BE(0, 26); c.fill(0, 28, 540) }), 'EIF_MISSING_SECTION'],
    ['offset past the end', () => mutate(base, (c) => setOffset(c, 1, 1n << 62n)), 'EIF_SECTION_OUT_OF_BOUNDS'],
    ['offsets overlapping', () => mutate(base, (c) => setOffset(c, 1, BigInt(EIF_HEADER_SIZE + 4))), 'EIF_SECTION_OVERLAP'],
    ['offset inside the header', () => mutate(base, (c) => setOffset(c, 0, 100n)), 'EIF_SECTION_OVERLAP'],
    ['gap between sections', () => mutate(base, (c) => setOffset(c, 1, c.readBigUInt64BE(28 + 8) + 1n)), 'EIF_SECTION_GAP'],
    ['bytes after the last section', () => Buffer.concat([base, Buffer.from('junk')]), 'EIF_TRAILING_DATA'],
    ['size mismatch header vs section header', () => mutate(base, (c) => setSize(c, 0, 5n)), 'EIF_SECTION_SIZE_MISMATCH'],
    ['unknown section type 6', () => mutate(base, (c) => void c.writeUInt16BE(6, EIF_HEADER_SIZE)), 'EIF_UNKNOWN_SECTION_TYPE'],
    ['invalid section type 0', () => mutate(base, (c) => void c.writeUInt16BE(0, EIF_HEADER_SIZE)), 'EIF_UNKNOWN_SECTION_TYPE'],
    ['section flags', () => mutate(base, (c) => void c.writeUInt16BE(1, EIF_HEADER_SIZE + 2)), 'EIF_BAD_SECTION_FLAGS'],
    ['two kernels', () => assembleEif([sections()[0]!, ...sections()]), 'EIF_DUPLICATE_SECTION'],
    ['no ramdisk', () => assembleEif(sections().filter((s) => s.type !== 3)), 'EIF_MISSING_SECTION'],
    ['no metadata in v4', () => assembleEif(sections().filter((s) => s.type !== 5)), 'EIF_MISSING_SECTION'],
    ['ramdisk before kernel', () => { const s = sections(); return assembleEif([s[3]!, s[0]!, s[1]!, s[2]!, s[4]!]) }, 'EIF_SECTION_ORDER'],
    ['oversized cmdline', () => { const s = sections(); s[1] = {type: 2, data: Buffer.alloc(70_000, 0x61)}; return assembleEif(s) }, 'EIF_SECTION_TOO_LARGE'],
    ['metadata not JSON', () => { const s = sections(); s[2] = {type: 5, data: Buffer.from('{nope')}; return assembleEif(s) }, 'EIF_BAD_METADATA'],
    ['metadata missing fields', () => { const s = sections(); s[2] = {type: 5, data: Buffer.from('{"ImageName":"x"}')}; return assembleEif(s) }, 'EIF_BAD_METADATA'],
    ['signature not CBOR', () => assembleEif([...sections(), {type: 4, data: Buffer.from([0xff, 0x00])}]), 'EIF_BAD_SIGNATURE_CBOR'],
    ['signature with byte strings instead of integer arrays', () => {
      const data = Buffer.from('81a2737369676e696e675f6365727469666963617465424142697369676e617475726542010c', 'hex')
      return assembleEif([...sections(), {type: 4, data}])
    }, 'EIF_BAD_SIGNATURE_CBOR'],
    ['signature COSE malformed', () => assembleEif([...sections(), {type: 4, data: encodeSignatureSection({certificatePem: Buffer.from(p256.certificatePem), coseSign1: Buffer.from([0x83, 1, 2, 3])})}]), 'EIF_BAD_COSE_SIGN1'],
    ['signing certificate not a certificate', () => {
      const cose = parseSignatureSection(splitEif(signedBase).at(-1)!.data).coseSign1
      return assembleEif([...sections(), {type: 4, data: encodeSignatureSection({certificatePem: Buffer.from('not a cert'), coseSign1: cose})}])
    }, 'EIF_BAD_CERTIFICATE'],
  ]

  it.each(cases)('%s', async (_name, make, code) => {
    expect(await codeOf(inspect(make()))).toBe(code)
  })

  it('the faults the issue names each get a different code', () => {
    const named = ['wrong magic', 'truncated header', 'size mismatch header vs section header', 'offsets overlapping', 'offset past the end', 'more than 32 sections', 'unknown section type 6', 'signature not CBOR']
    const codes = named.map((n) => cases.find(([name]) => name === n)![2])
    expect(new Set([...codes, 'EIF_BAD_CRC']).size).toBe(named.length + 1)
    // Faults of different kinds never share a code (some kinds have several cases, e.g. truncation).
    expect(new Set(cases.map(([, , c]) => c)).size).toBe(21)
  })

  it('a bad CRC is reported by describe and fatal where the image is trusted', async () => {
    const bad = mutate(base, (c) => void (c[EIF_HEADER_SIZE + 12]! ^= 1))
    const info = await inspect(bad)
    expect(info.crc.ok).toBe(false)
    expect((await describeEif(info)).CheckCRC).toBe(false)
    expect(codeOf(() => assertTrusted(info))).toBe('EIF_BAD_CRC')
    const zeroCrc = mutate(base, (c) => void c.writeUInt32BE(0, 544))
    expect(await codeOf(async () => assertTrusted(await inspect(zeroCrc)))).toBe('EIF_BAD_CRC')
  })

  it('a signature over another PCR0 is reported and fatal when trusted', async () => {
    // Change the kernel and fix the CRC: the old signature no longer covers the measured PCR0.
    const s = splitEif(signedBase)
    s[0] = {type: 1, data: Buffer.from('KERNEL2')}
    const info = await inspect(assembleEif(s))
    expect(info.signature?.check).toMatchObject({signatureValid: true, payloadMatchesPcr0: false})
    expect((await describeEif(info)).SignatureCheck).toBe(false)
    expect(codeOf(() => assertTrusted(info))).toBe('EIF_SIGNATURE_PCR_MISMATCH')
  })

  it('a signature that does not verify is fatal when trusted', async () => {
    const s = splitEif(signedBase)
    const sig = parseSignatureSection(s.at(-1)!.data)
    const cose = Buffer.from(sig.coseSign1)
    cose[cose.length - 1]! ^= 0x01
    s[s.length - 1] = {type: 4, data: encodeSignatureSection({certificatePem: sig.certificatePem, coseSign1: cose})}
    const info = await inspect(assembleEif(s))
    expect(info.signature?.check.signatureValid).toBe(false)
    expect(codeOf(() => assertTrusted(info))).toBe('EIF_BAD_SIGNATURE')
  })

  it('an expired or not-yet-valid signing certificate is fatal when trusted', async () => {
    const old = await makeSigner('P-256', {notBefore: new Date('2020-01-01'), notAfter: new Date('2021-01-01')})
    const {bytes} = await buildEif({...SMALL, signing: {certificatePem: old.certificatePem, privateKeyPem: old.privateKeyPem}})
    expect(await codeOf(async () => assertTrusted(await inspect(bytes)))).toBe('EIF_CERT_EXPIRED')
    expect(await codeOf(async () => assertTrusted(await inspect(bytes, new Date('2019-06-01'))))).toBe('EIF_CERT_NOT_YET_VALID')
    expect(await codeOf(async () => assertTrusted(await inspect(bytes, new Date('2020-06-01'))))).toBeUndefined()
  })

  it('an unsigned image fails only when a signature is required', async () => {
    const info = await inspect(base)
    expect(codeOf(() => assertTrusted(info))).toBeUndefined()
    expect(codeOf(() => assertTrusted(info, {requireSignature: true}))).toBe('EIF_NOT_SIGNED')
  })

  it('refuses bad writer input with its own codes', async () => {
    expect(await codeOf(buildEif({...SMALL, ramdisks: []}))).toBe('EIF_BAD_INPUT')
    expect(await codeOf(buildEif({...SMALL, ramdisks: Array.from({length: 30}, () => ({data: Buffer.from('r')}))}))).toBe('EIF_TOO_MANY_RAMDISKS')
    expect(await codeOf(buildEif({...SMALL, cmdline: 'a\0b'}))).toBe('EIF_BAD_INPUT')
    expect(await codeOf(buildEif({...SMALL, kernel: {path: join(tmp.dir, 'missing')}}))).toBe('EIF_INPUT_NOT_FOUND')
    expect(await codeOf(buildEif({...SMALL, signing: {certificatePem: p256.certificatePem, privateKeyPem: p384.privateKeyPem}}))).toBe('EIF_KEY_CERT_MISMATCH')
    expect(await codeOf(buildEif({...SMALL, signing: {certificatePem: p256.certificatePem, privateKeyPem: 'garbage'}}))).toBe('EIF_BAD_KEY')
    expect(await codeOf(buildEif({...SMALL, signing: {certificatePem: 'garbage', privateKeyPem: p256.privateKeyPem}}))).toBe('EIF_BAD_CERTIFICATE')
    expect(await codeOf(writeEif(join(tmp.dir, 'no', 'such', 'dir.eif'), SMALL))).toBe('EIF_WRITE_FAILED')
  })

  it('file errors: missing file and directory', async () => {
    expect(await codeOf(readEif(join(tmp.dir, 'nope.eif')))).toBe('EIF_NOT_FOUND')
    expect(await codeOf(readEif(tmp.dir))).toBe('EIF_UNREADABLE')
    expect(hasCode(await readEif(join(tmp.dir, 'nope.eif')).catch((e: unknown) => e), 'EIF_NOT_FOUND')).toBe(true)
  })

  it('accepts a signature appended after a re-signed layout and v3 images without metadata', async () => {
    const v3 = assembleEif(sections().filter((s) => s.type !== 5), {version: 3})
    const info = await inspect(v3)
    expect(info.metadata).toBeUndefined()
    expect(info.measurements.PCR0).toBe((await inspect(base)).measurements.PCR0)
    // Fixing the CRC after a mutation really is what makes CheckCRC pass.
    expect((await inspect(fixCrc(mutate(base, (c) => void (c[EIF_HEADER_SIZE + 12]! ^= 1))))).crc.ok).toBe(true)
  })
})

describe('a file that changes while it is read', () => {
  it('is reported as EIF_FILE_CHANGED, not measured', async () => {
    const bytes = (await buildEif(SMALL)).bytes
    let calls = 0
    const inner = bufferSource(bytes)
    // Serve the structural reads from the original, then a shorter file to the streaming pass.
    const shrinking = {
      size: bytes.length,
      readInto: async (into: Buffer, position: number, length: number) => (++calls > 6 ? 0 : inner.readInto(into, position, length)),
      close: async () => undefined,
    }
    expect(await codeOf(inspectEif(shrinking))).toBe('EIF_FILE_CHANGED')
    const flipped = Buffer.from(bytes)
    const changing = {
      size: bytes.length,
      readInto: async (into: Buffer, position: number, length: number) => {
        const n = await bufferSource(flipped).readInto(into, position, length)
        if (++calls === 6) flipped.writeUInt16BE(3, EIF_HEADER_SIZE) // the kernel's section header becomes a ramdisk's
        return n
      },
      close: async () => undefined,
    }
    calls = 0
    expect(await codeOf(inspectEif(changing))).toBe('EIF_FILE_CHANGED')
  })
})
