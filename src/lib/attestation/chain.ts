/**
 * The certificate chain of a Nitro attestation document: cabundle = [ROOT, INTERM_1, …, INTERM_N]
 * and `certificate` is the leaf that signed the document. Validation (nsm-api
 * docs/attestation_process.md §3.2.3): cabundle[0] is byte-for-byte the pinned root; each
 * certificate is named and signed by the one before it; CA certificates carry a critical
 * BasicConstraints CA=true and keyCertSign and their path length constraints hold; the leaf is not
 * a CA and may sign; every certificate (the root too) is valid at the verification time. All
 * certificates must be ECDSA P-384 with SHA-384 signatures, as AWS issues them.
 *
 * X.509 is parsed with @peculiar/asn1-x509 (the ASN.1 layer of @peculiar/x509, which itself cannot
 * be loaded in Node without a reflect-metadata polyfill); signatures are checked with node:crypto.
 */
import {type KeyObject, createPublicKey, verify as cryptoVerify} from 'node:crypto'

import {AsnConvert} from '@peculiar/asn1-schema'
import {BasicConstraints, Certificate, KeyUsage, type Name, id_ce_basicConstraints, id_ce_keyUsage} from '@peculiar/asn1-x509'

import {verifyError} from './errors.js'
import {type TrustedRoot, sha256Hex} from './roots.js'

export const OID_ECDSA_WITH_SHA384 = '1.2.840.10045.4.3.3'
export const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1'

export interface ParsedCertificate {
  der: Uint8Array
  sha256: string
  subject: string
  issuer: string
  /** Canonical (re-serialized) DER of the subject and issuer names, hex, for name chaining. */
  subjectKey: string
  issuerKey: string
  notBefore: Date
  notAfter: Date
  /** The tbsCertificate bytes exactly as received, and the DER ECDSA signature over them. */
  tbs: Uint8Array
  signature: Uint8Array
  publicKey: KeyObject
  basicConstraints: {critical: boolean; ca: boolean; pathLen: number | undefined} | undefined
  keyUsage: {critical: boolean; usages: string[]} | undefined
  /** Critical extensions this verifier does not understand (RFC 5280 §4.2: such a certificate must be refused). */
  unknownCritical: string[]
}

export interface ChainCertificate {
  /** 'root' | 'intermediate' | 'leaf' */
  role: 'root' | 'intermediate' | 'leaf'
  subject: string
  issuer: string
  notBefore: string
  notAfter: string
  sha256: string
}

export interface ValidatedChain {
  /** Root first, leaf last. */
  certificates: ChainCertificate[]
  leafKey: KeyObject
}

const NAME_ATTRS: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
}

function formatName(name: Name): string {
  const parts: string[] = []
  for (const rdn of name) {
    for (const atv of rdn) parts.push(`${NAME_ATTRS[atv.type] ?? atv.type}=${atv.value.toString()}`)
  }
  return parts.join(', ')
}

const toHexKey = (buf: ArrayBuffer): string => Buffer.from(buf).toString('hex')

/** Bounded memo caches. Both are pure functions of the exact bytes, so caching cannot change a verdict. */
const MAX_CACHE = 256
const parsedCache = new Map<string, ParsedCertificate>()
const verifiedLinks = new Set<string>()

function remember<K, V>(cache: Map<K, V>, key: K, value: V): void {
  if (cache.size >= MAX_CACHE) {
    const oldest = cache.keys().next()
    if (!oldest.done) cache.delete(oldest.value)
  }
  cache.set(key, value)
}

/** Forget parsed certificates and verified chain links (benchmarks measure the cold path with it). */
export function clearChainCaches(): void {
  parsedCache.clear()
  verifiedLinks.clear()
}

function badCert(what: string, message: string, cause?: unknown): never {
  throw verifyError('ATTEST_CERT_MALFORMED', `${what}: ${message}`, {
    hint: 'A certificate in the document is not an ECDSA P-384 / SHA-384 X.509 certificate as AWS issues them.',
    cause,
  })
}

/** Parse one DER certificate (memoized by its SHA-256). Throws ATTEST_CERT_MALFORMED. */
export function parseCertificate(der: Uint8Array, what = 'certificate'): ParsedCertificate {
  const sha256 = sha256Hex(der)
  const hit = parsedCache.get(sha256)
  if (hit) return hit
  let cert: Certificate
  try {
    cert = AsnConvert.parse(der, Certificate)
  } catch (error) {
    badCert(what, `not a DER X.509 certificate (${(error as Error).message}).`, error)
  }
  let parsed: ParsedCertificate
  try {
    const tbs = cert.tbsCertificate
    if (cert.signatureAlgorithm.algorithm !== OID_ECDSA_WITH_SHA384 || tbs.signature.algorithm !== OID_ECDSA_WITH_SHA384) {
      badCert(what, `signature algorithm ${cert.signatureAlgorithm.algorithm} is not ecdsa-with-SHA384.`)
    }
    if (cert.signatureAlgorithm.parameters || tbs.signature.parameters) badCert(what, 'ecdsa-with-SHA384 must not carry parameters.')
    if (!cert.tbsCertificateRaw) badCert(what, 'tbsCertificate bytes missing.')
    if (tbs.subjectPublicKeyInfo.algorithm.algorithm !== OID_EC_PUBLIC_KEY) badCert(what, 'the public key is not an EC key.')
    const publicKey = createPublicKey({key: Buffer.from(AsnConvert.serialize(tbs.subjectPublicKeyInfo)), format: 'der', type: 'spki'})
    if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'secp384r1') badCert(what, 'the public key is not on P-384.')

    let basicConstraints: ParsedCertificate['basicConstraints']
    let keyUsage: ParsedCertificate['keyUsage']
    const seen = new Set<string>()
    const unknownCritical: string[] = []
    for (const ext of tbs.extensions ?? []) {
      if (seen.has(ext.extnID)) badCert(what, `extension ${ext.extnID} appears twice.`)
      seen.add(ext.extnID)
      if (ext.critical && ext.extnID !== id_ce_basicConstraints && ext.extnID !== id_ce_keyUsage) unknownCritical.push(ext.extnID)
      if (ext.extnID === id_ce_basicConstraints) {
        const bc = AsnConvert.parse(ext.extnValue, BasicConstraints)
        const pathLen = bc.pathLenConstraint
        if (pathLen !== undefined && (!Number.isInteger(pathLen) || pathLen < 0)) badCert(what, 'negative path length constraint.')
        basicConstraints = {critical: ext.critical, ca: bc.cA, pathLen}
      } else if (ext.extnID === id_ce_keyUsage) {
        const ku = AsnConvert.parse(ext.extnValue, KeyUsage)
        keyUsage = {critical: ext.critical, usages: ku.toJSON()}
      }
    }
    parsed = {
      der: new Uint8Array(der),
      sha256,
      subject: formatName(tbs.subject),
      issuer: formatName(tbs.issuer),
      subjectKey: toHexKey(AsnConvert.serialize(tbs.subject)),
      issuerKey: toHexKey(AsnConvert.serialize(tbs.issuer)),
      notBefore: tbs.validity.notBefore.getTime(),
      notAfter: tbs.validity.notAfter.getTime(),
      tbs: new Uint8Array(cert.tbsCertificateRaw),
      signature: new Uint8Array(cert.signatureValue),
      publicKey,
      basicConstraints,
      keyUsage,
      unknownCritical,
    }
  } catch (error) {
    if ((error as {code?: string}).code === 'ATTEST_CERT_MALFORMED') throw error
    badCert(what, `unreadable (${(error as Error).message}).`, error)
  }
  remember(parsedCache, sha256, parsed)
  return parsed
}

function verifyLink(child: ParsedCertificate, parent: ParsedCertificate): Promise<boolean> {
  const key = `${parent.sha256}>${child.sha256}`
  if (verifiedLinks.has(key)) return Promise.resolve(true)
  return new Promise((resolve) => {
    try {
      cryptoVerify('sha384', child.tbs, {key: parent.publicKey, dsaEncoding: 'der'}, child.signature, (error, ok) => {
        const good = !error && ok
        if (good) {
          if (verifiedLinks.size >= MAX_CACHE) verifiedLinks.clear()
          verifiedLinks.add(key)
        }
        resolve(good)
      })
    } catch {
      resolve(false)
    }
  })
}

export interface ChainInput {
  certificate: Uint8Array
  cabundle: readonly Uint8Array[]
  root: TrustedRoot
  /** Verification time. */
  at: Date
}

/**
 * Validate the chain. Throws ATTEST_ROOT_MISMATCH, ATTEST_CERT_MALFORMED, ATTEST_CHAIN_BROKEN,
 * ATTEST_CERT_CONSTRAINTS, ATTEST_LEAF_IS_CA, ATTEST_CERT_EXPIRED or ATTEST_CERT_NOT_YET_VALID.
 */
export async function validateChain(input: ChainInput): Promise<ValidatedChain> {
  const {cabundle, root, at} = input
  const first = cabundle[0]
  if (!first || !Buffer.from(first).equals(Buffer.from(root.der))) {
    throw verifyError('ATTEST_ROOT_MISMATCH', `The document's root certificate is not the trusted root (${root.name}).`, {
      hint:
        root.name === 'aws-nitro-enclaves-root-g1'
          ? 'The document was not issued under the AWS Nitro Enclaves PKI (a simulator document needs --root with the simulator root).'
          : 'The document was not issued under the root given with --root.',
      details: {trustedRootSha256: root.sha256, documentRootSha256: first ? sha256Hex(first) : null},
    })
  }
  // Parse, and start each link's signature check on the thread pool as soon as both ends are
  // parsed, so the ECDSA work overlaps the parsing. The results are only read after every other
  // check has passed; a link checked against the wrong parent simply comes back false.
  const chain = [parseCertificate(root.der, 'root certificate')]
  const links: Promise<boolean>[] = []
  const rest = [...cabundle.slice(1).map((der, i) => [der, `cabundle[${i + 1}]`] as const), [input.certificate, 'leaf certificate'] as const]
  for (const [der, what] of rest) {
    const cert = parseCertificate(der, what)
    links.push(verifyLink(cert, chain[chain.length - 1]!))
    chain.push(cert)
  }
  const last = chain.length - 1

  // Names: each certificate names the previous one as its issuer.
  for (let i = 1; i <= last; i++) {
    const child = chain[i]!
    const parent = chain[i - 1]!
    if (child.issuerKey !== parent.subjectKey) {
      throw verifyError('ATTEST_CHAIN_BROKEN', `Certificate chain broken at position ${i}: "${child.subject}" is issued by "${child.issuer}", not by "${parent.subject}".`, {
        hint: 'The CA bundle is incomplete or out of order (it must be root first, each intermediate issued by the one before).',
        details: {position: i, subject: child.subject, issuer: child.issuer, expectedIssuer: parent.subject},
      })
    }
  }

  // Constraints: no critical extension we do not understand; CAs (root and intermediates); the leaf.
  for (const [i, cert] of chain.entries()) {
    if (cert.unknownCritical.length > 0) {
      throw verifyError('ATTEST_CERT_CONSTRAINTS', `"${cert.subject}" has critical extensions this verifier does not process: ${cert.unknownCritical.join(', ')}.`, {
        details: {position: i, subject: cert.subject, extensions: cert.unknownCritical},
      })
    }
  }
  for (let i = 0; i < last; i++) {
    const ca = chain[i]!
    const bc = ca.basicConstraints
    if (!bc || !bc.critical || !bc.ca) {
      throw verifyError('ATTEST_CERT_CONSTRAINTS', `"${ca.subject}" issues certificates but is not a CA (critical BasicConstraints CA=true missing).`, {
        hint: 'The chain does not have the shape of the Nitro PKI.',
        details: {position: i, subject: ca.subject},
      })
    }
    if (!ca.keyUsage?.usages.includes('keyCertSign')) {
      throw verifyError('ATTEST_CERT_CONSTRAINTS', `CA "${ca.subject}" may not sign certificates (keyCertSign missing).`, {details: {position: i, subject: ca.subject}})
    }
    const casBelow = last - 1 - i
    if (bc.pathLen !== undefined && casBelow > bc.pathLen) {
      throw verifyError('ATTEST_CERT_CONSTRAINTS', `CA "${ca.subject}" allows ${bc.pathLen} CA(s) below it; the chain has ${casBelow}.`, {
        details: {position: i, subject: ca.subject, pathLen: bc.pathLen, casBelow},
      })
    }
  }
  const leaf = chain[last]!
  if (leaf.basicConstraints?.ca) {
    throw verifyError('ATTEST_LEAF_IS_CA', `The document's signing certificate "${leaf.subject}" is a CA certificate.`, {
      hint: 'A Nitro document is signed by an end-entity certificate; a CA in that place means the chain was built by someone else.',
      details: {subject: leaf.subject},
    })
  }
  if (!leaf.keyUsage?.usages.includes('digitalSignature')) {
    throw verifyError('ATTEST_CERT_CONSTRAINTS', `The signing certificate "${leaf.subject}" may not make digital signatures.`, {details: {subject: leaf.subject}})
  }
  if (leaf.keyUsage?.usages.includes('keyCertSign')) {
    throw verifyError('ATTEST_LEAF_IS_CA', `The signing certificate "${leaf.subject}" may sign certificates (keyCertSign).`, {details: {subject: leaf.subject}})
  }

  // Validity at the verification time, for every certificate including the root.
  const t = at.getTime()
  for (const cert of chain) {
    if (t > cert.notAfter.getTime()) {
      throw verifyError('ATTEST_CERT_EXPIRED', `Certificate "${cert.subject}" expired at ${cert.notAfter.toISOString()} (verification time ${at.toISOString()}).`, {
        hint: 'Nitro signing certificates live about 3 hours: fetch a fresh document, or pass --at with the time the document was checked.',
        details: {subject: cert.subject, notAfter: cert.notAfter.toISOString(), at: at.toISOString()},
      })
    }
    if (t < cert.notBefore.getTime()) {
      throw verifyError('ATTEST_CERT_NOT_YET_VALID', `Certificate "${cert.subject}" is not valid before ${cert.notBefore.toISOString()} (verification time ${at.toISOString()}).`, {
        hint: 'Check the clock, or the --at time.',
        details: {subject: cert.subject, notBefore: cert.notBefore.toISOString(), at: at.toISOString()},
      })
    }
  }

  // Signatures. The root is pinned by its bytes, so its self-signature adds nothing.
  const bad = (await Promise.all(links)).indexOf(false)
  if (bad !== -1) {
    const child = chain[bad + 1]!
    throw verifyError('ATTEST_CHAIN_BROKEN', `The signature on "${child.subject}" does not verify with the key of "${chain[bad]!.subject}".`, {
      hint: 'A certificate in the chain was altered or not issued by its named issuer.',
      details: {position: bad + 1, subject: child.subject},
    })
  }

  return {
    certificates: chain.map((c, i) => ({
      role: i === 0 ? 'root' : i === last ? 'leaf' : 'intermediate',
      subject: c.subject,
      issuer: c.issuer,
      notBefore: c.notBefore.toISOString(),
      notAfter: c.notAfter.toISOString(),
      sha256: c.sha256,
    })),
    leafKey: leaf.publicKey,
  }
}
