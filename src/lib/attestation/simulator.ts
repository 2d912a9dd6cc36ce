/**
 * An NSM simulator: answers the real NSM request messages (./nsm-protocol.ts) and issues
 * attestation documents shaped like AWS's — module_id, digest SHA384, timestamp, PCRs (all locked
 * ones: 0..15 from boot, plus any of 16..31 locked later), certificate, cabundle, optional
 * public_key / user_data / nonce — signed by an ephemeral P-384 chain with the Nitro PKI's shape
 * (root → regional → zonal → instance → leaf). The verifier accepts these documents only when
 * given the simulator's root explicitly (`insecureDevRoot`); against the AWS root they fail.
 *
 * Private keys live only in this object's memory; they are never exported or printed.
 */
import {type KeyObject, createHash, generateKeyPairSync, randomBytes, sign as cryptoSign} from 'node:crypto'

import {AsnConvert, OctetString} from '@peculiar/asn1-schema'
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  BasicConstraints,
  Certificate,
  Extension,
  Extensions,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_basicConstraints,
  id_ce_keyUsage,
} from '@peculiar/asn1-x509'

import {readLockfile} from '../lockfile.js'
import {OID_ECDSA_WITH_SHA384} from './chain.js'
import {signCoseSign1} from './cose.js'
import {encodeAttestationPayload} from './document.js'
import {CborNsmClient} from './nsm-client.js'
import {
  NSM_MAX_USER_FIELD,
  NSM_REQUEST_MAX_SIZE,
  type NsmErrorCode,
  NsmProtocolViolation,
  type NsmRequest,
  type NsmResponse,
  decodeNsmRequest,
  encodeNsmResponse,
} from './nsm-protocol.js'
import {type TrustedRoot, derToPem, insecureDevRoot} from './roots.js'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const PCR_BYTES = 48
const MAX_PCRS = 32
/** PCRs 0..15 are locked from boot on a real NSM. */
const BOOT_LOCKED = 16

// ---------------------------------------------------------------------------------------------
// The ephemeral certificate chain.

export interface CertSpec {
  /** [attribute OID, value] pairs, in order. */
  subject: [string, string][]
  ca: boolean
  pathLen?: number
  keyUsage: number
  keyUsageCritical: boolean
  notBefore: number
  notAfter: number
  /** Test hook: further extensions (value = the DER inside extnValue). */
  extraExtensions?: {oid: string; critical: boolean; value: Uint8Array}[]
}

export interface DevChain {
  /** DER certificates root first, as `cabundle` carries them. */
  cabundle: Uint8Array[]
  leaf: Uint8Array
  /** The leaf's private key (signs documents). Never logged. */
  leafKey: KeyObject
  root: TrustedRoot
  rootPem: string
}

export interface DevChainOptions {
  /** Issue time (ms since epoch); validity windows start one minute before it. Default now. */
  now?: number
  region?: string
  /** Test hook: make the leaf a CA (the verifier must refuse such a document). */
  leafIsCa?: boolean
  /** Test hook: change the spec of a certificate (0 = root … 4 = leaf) before issuing it. */
  tweak?: (index: number, spec: CertSpec) => CertSpec
}

const CN = '2.5.4.3'
const C = '2.5.4.6'
const O = '2.5.4.10'
const OU = '2.5.4.11'

function toName(pairs: [string, string][]): Name {
  return new Name(pairs.map(([type, value]) => new RelativeDistinguishedName([new AttributeTypeAndValue({type, value: new AttributeValue({utf8String: value})})])))
}

function ext(extnID: string, critical: boolean, value: unknown): Extension {
  return new Extension({extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value))})
}

function issue(spec: CertSpec, publicKey: KeyObject, issuer: {name: [string, string][]; key: KeyObject}): Uint8Array {
  const serial = randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) | 0x01 // positive, no leading zero
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serial.buffer.slice(serial.byteOffset, serial.byteOffset + serial.length),
    signature: new AlgorithmIdentifier({algorithm: OID_ECDSA_WITH_SHA384}),
    issuer: toName(issuer.name),
    validity: new Validity({notBefore: new Date(spec.notBefore), notAfter: new Date(spec.notAfter)}),
    subject: toName(spec.subject),
    subjectPublicKeyInfo: AsnConvert.parse(publicKey.export({type: 'spki', format: 'der'}), SubjectPublicKeyInfo),
    extensions: new Extensions([
      ext(id_ce_basicConstraints, true, new BasicConstraints(spec.ca ? {cA: true, pathLenConstraint: spec.pathLen} : {cA: false})),
      ext(id_ce_keyUsage, spec.keyUsageCritical, new KeyUsage(spec.keyUsage)),
      ...(spec.extraExtensions ?? []).map((e) => new Extension({extnID: e.oid, critical: e.critical, extnValue: new OctetString(e.value)})),
    ]),
  })
  const tbsDer = new Uint8Array(AsnConvert.serialize(tbs))
  const signature = cryptoSign('sha384', tbsDer, {key: issuer.key, dsaEncoding: 'der'})
  const cert = new Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm: new AlgorithmIdentifier({algorithm: OID_ECDSA_WITH_SHA384}),
    signatureValue: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.length),
  })
  return new Uint8Array(AsnConvert.serialize(cert))
}

const hex = (n: number): string => randomBytes(n).toString('hex')

/** Issue a fresh P-384 chain with the Nitro PKI's shape and lifetimes. */
export function createDevChain(options: DevChainOptions = {}): DevChain {
  const now = options.now ?? Date.now()
  const region = options.region ?? 'us-east-1'
  const start = now - 60_000
  const ku = KeyUsageFlags
  const instance = `i-${hex(9).slice(0, 17)}`
  const specs: CertSpec[] = [
    {subject: [[C, 'US'], [O, 'nle'], [OU, 'NSM simulator'], [CN, 'dev.nitro-enclaves']], ca: true, keyUsage: ku.digitalSignature | ku.keyCertSign | ku.cRLSign, keyUsageCritical: true, notBefore: start - DAY, notAfter: start + 30 * 365 * DAY},
    {subject: [[C, 'US'], [O, 'nle'], [OU, 'NSM simulator'], [CN, `${hex(8)}.${region}.dev.nitro-enclaves`]], ca: true, pathLen: 2, keyUsage: ku.digitalSignature | ku.keyCertSign | ku.cRLSign, keyUsageCritical: true, notBefore: start, notAfter: start + 20 * DAY},
    {subject: [[CN, `${hex(8)}.zonal.${region}.dev.nitro-enclaves`], [C, 'US'], [O, 'nle'], [OU, 'NSM simulator']], ca: true, pathLen: 1, keyUsage: ku.digitalSignature | ku.keyCertSign | ku.cRLSign, keyUsageCritical: true, notBefore: start, notAfter: start + 5 * DAY},
    {subject: [[C, 'US'], [O, 'nle'], [OU, 'NSM simulator'], [CN, `${instance}.${region}.dev.nitro-enclaves`]], ca: true, pathLen: 0, keyUsage: ku.keyCertSign, keyUsageCritical: true, notBefore: start, notAfter: start + DAY},
    {subject: [[C, 'US'], [O, 'nle'], [OU, 'NSM simulator'], [CN, `${instance}-enc${hex(8)}.${region}.dev`]], ca: false, keyUsage: ku.digitalSignature | ku.nonRepudiation, keyUsageCritical: false, notBefore: start, notAfter: start + 3 * HOUR},
  ]
  if (options.leafIsCa) specs[4] = {...specs[4]!, ca: true, keyUsage: ku.digitalSignature | ku.keyCertSign, keyUsageCritical: true}
  const final = specs.map((s, i) => (options.tweak ? options.tweak(i, s) : s))
  const keys = final.map(() => generateKeyPairSync('ec', {namedCurve: 'secp384r1'}))
  const ders: Uint8Array[] = []
  final.forEach((spec, i) => {
    const issuerIndex = Math.max(0, i - 1)
    ders.push(issue(spec, keys[i]!.publicKey, {name: final[issuerIndex]!.subject, key: keys[issuerIndex]!.privateKey}))
  })
  const rootPem = derToPem(ders[0]!)
  return {cabundle: ders.slice(0, 4), leaf: ders[4]!, leafKey: keys[4]!.privateKey, root: insecureDevRoot(ders[0]!), rootPem}
}

// ---------------------------------------------------------------------------------------------
// The simulated module.

/** Measurements in the lockfile's shape (lowercase hex SHA-384). */
export interface SimulatorMeasurements {
  PCR0: string
  PCR1: string
  PCR2: string
  PCR8?: string
}

export interface NsmSimulatorOptions {
  /** PCR0/1/2 (and PCR8) as the image would measure; default: fixed values derived from a label. */
  measurements?: SimulatorMeasurements
  /** Other boot PCRs (e.g. 3 = parent role, 4 = parent instance), index → hex. */
  extraPcrs?: Record<number, string>
  /** Debug mode: PCR0, PCR1, PCR2 and PCR8 read as zero, as on a real enclave run with --debug-mode. */
  debug?: boolean
  moduleId?: string
  /** Clock (ms since epoch) for document timestamps and certificate lifetimes. */
  now?: () => number
  /** Use this chain instead of issuing a fresh one (e.g. a deliberately malformed one in tests). */
  chain?: DevChain
}

const HEX_96 = /^[0-9a-f]{96}$/

function pcrBytes(value: string, what: string): Uint8Array {
  if (!HEX_96.test(value)) throw new TypeError(`${what} must be 96 lowercase hex characters.`)
  return new Uint8Array(Buffer.from(value, 'hex'))
}

const labelDigest = (label: string): string => createHash('sha384').update(label).digest('hex')

class NsmFailure extends Error {
  constructor(readonly nsmError: NsmErrorCode) {
    super(nsmError)
  }
}

export class NsmSimulator extends CborNsmClient {
  readonly moduleId: string
  readonly chain: DevChain
  readonly debug: boolean
  private readonly now: () => number
  private readonly pcrs: Uint8Array[] = []
  private readonly locked = new Set<number>()

  constructor(options: NsmSimulatorOptions = {}) {
    super()
    this.now = options.now ?? Date.now
    this.chain = options.chain ?? createDevChain({now: this.now()})
    this.debug = options.debug === true
    this.moduleId = options.moduleId ?? `i-${hex(9).slice(0, 17)}-enc${hex(8)}`
    const m = options.measurements ?? {PCR0: labelDigest('nle simulator PCR0'), PCR1: labelDigest('nle simulator PCR1'), PCR2: labelDigest('nle simulator PCR2')}
    for (let i = 0; i < MAX_PCRS; i++) this.pcrs.push(new Uint8Array(PCR_BYTES))
    this.pcrs[0] = pcrBytes(m.PCR0, 'PCR0')
    this.pcrs[1] = pcrBytes(m.PCR1, 'PCR1')
    this.pcrs[2] = pcrBytes(m.PCR2, 'PCR2')
    if (m.PCR8 !== undefined) this.pcrs[8] = pcrBytes(m.PCR8, 'PCR8')
    for (const [key, value] of Object.entries(options.extraPcrs ?? {})) {
      const index = Number(key)
      if (!Number.isInteger(index) || index < 3 || index >= BOOT_LOCKED || index === 8) throw new TypeError(`extraPcrs may set boot PCRs 3..15 except 8, not ${key}.`)
      this.pcrs[index] = pcrBytes(value, `PCR${index}`)
    }
    if (this.debug) for (const i of [0, 1, 2, 8]) this.pcrs[i] = new Uint8Array(PCR_BYTES)
    for (let i = 0; i < BOOT_LOCKED; i++) this.locked.add(i)
  }

  /** A simulator whose PCR0/1/2/8 are the lockfile's measurements. */
  static async fromLockfile(path: string, options: Omit<NsmSimulatorOptions, 'measurements'> = {}): Promise<NsmSimulator> {
    const lockfile = await readLockfile(path)
    return new NsmSimulator({...options, measurements: lockfile.measurements})
  }

  /** A simulator whose PCR0/1/2 (and PCR8 when signed) are those nle's reader measures in the EIF file (which must be whole and trusted). */
  static async fromEif(path: string, options: Omit<NsmSimulatorOptions, 'measurements'> = {}): Promise<NsmSimulator> {
    const {assertTrusted, readEif} = await import('../eif/reader.js')
    const info = await readEif(path)
    assertTrusted(info) // a corrupt image (bad CRC, bad signature) is not measured into documents
    const {PCR0, PCR1, PCR2, PCR8} = info.measurements
    return new NsmSimulator({...options, measurements: {PCR0, PCR1, PCR2, ...(PCR8 ? {PCR8} : {})}})
  }

  /** The root to pass to the verifier as `insecureDevRoot`. */
  get root(): TrustedRoot {
    return this.chain.root
  }

  get rootPem(): string {
    return this.chain.rootPem
  }

  /** Answer one encoded request with one encoded response, as the device would. */
  handle(request: Uint8Array): Uint8Array {
    return encodeNsmResponse(this.respond(request))
  }

  protected async exchange(request: Uint8Array): Promise<Uint8Array> {
    return this.handle(request)
  }

  async close(): Promise<void> {}

  private respond(bytes: Uint8Array): NsmResponse {
    if (bytes.length > NSM_REQUEST_MAX_SIZE) return {type: 'Error', error: 'InputTooLarge'}
    let request: NsmRequest
    try {
      request = decodeNsmRequest(bytes)
    } catch (error) {
      if (error instanceof NsmProtocolViolation) return {type: 'Error', error: /Unknown NSM request/.test(error.message) ? 'InvalidOperation' : 'InvalidArgument'}
      return {type: 'Error', error: 'InternalError'}
    }
    try {
      return this.process(request)
    } catch (error) {
      if (error instanceof NsmFailure) return {type: 'Error', error: error.nsmError}
      return {type: 'Error', error: 'InternalError'}
    }
  }

  private checkIndex(index: number): void {
    if (index >= MAX_PCRS) throw new NsmFailure('InvalidIndex')
  }

  private process(request: NsmRequest): NsmResponse {
    switch (request.type) {
      case 'DescribeNSM':
        return {type: 'DescribeNSM', versionMajor: 1, versionMinor: 0, versionPatch: 0, moduleId: this.moduleId, maxPcrs: MAX_PCRS, lockedPcrs: [...this.locked].sort((a, b) => a - b), digest: 'SHA384'}
      case 'DescribePCR':
        this.checkIndex(request.index)
        return {type: 'DescribePCR', lock: this.locked.has(request.index), data: new Uint8Array(this.pcrs[request.index]!)}
      case 'ExtendPCR': {
        this.checkIndex(request.index)
        if (this.locked.has(request.index)) throw new NsmFailure('ReadOnlyIndex')
        const next = new Uint8Array(createHash('sha384').update(this.pcrs[request.index]!).update(request.data).digest())
        this.pcrs[request.index] = next
        return {type: 'ExtendPCR', data: new Uint8Array(next)}
      }
      case 'LockPCR':
        this.checkIndex(request.index)
        if (request.index < BOOT_LOCKED) throw new NsmFailure('ReadOnlyIndex')
        this.locked.add(request.index)
        return {type: 'LockPCR'}
      case 'LockPCRs':
        if (request.range > MAX_PCRS) throw new NsmFailure('InvalidIndex')
        for (let i = 0; i < request.range; i++) this.locked.add(i)
        return {type: 'LockPCRs'}
      case 'GetRandom':
        return {type: 'GetRandom', random: new Uint8Array(randomBytes(256))}
      case 'Attestation': {
        for (const v of [request.userData, request.nonce, request.publicKey]) if (v !== null && v.length > NSM_MAX_USER_FIELD) throw new NsmFailure('InputTooLarge')
        return {type: 'Attestation', document: this.document(request)}
      }
    }
  }

  private document(request: Extract<NsmRequest, {type: 'Attestation'}>): Uint8Array {
    const pcrs = new Map<number, Uint8Array>()
    for (const index of [...this.locked].sort((a, b) => a - b)) pcrs.set(index, new Uint8Array(this.pcrs[index]!))
    const payload = encodeAttestationPayload({
      moduleId: this.moduleId,
      digest: 'SHA384',
      timestamp: this.now(),
      pcrs,
      certificate: this.chain.leaf,
      cabundle: this.chain.cabundle,
      publicKey: request.publicKey,
      userData: request.userData,
      nonce: request.nonce,
    })
    return signCoseSign1(payload, this.chain.leafKey)
  }
}
