// @peculiar/x509 needs the Reflect metadata API (tsyringe).
import 'reflect-metadata'

/**
 * The EIF signing certificate: PEM → DER (for PCR8), the public key and validity (for the
 * signature check, node:crypto), and the display fields nitro-cli's describe-eif prints
 * (@peculiar/x509, loaded lazily).
 */
import {type KeyObject, X509Certificate} from 'node:crypto'

import {eifError} from './errors.js'
import {pcrOf} from './pcr.js'

export interface SigningCertificate {
  /** The certificate as stored (PEM bytes). */
  pem: Buffer
  /** DER encoding: what PCR8 measures. */
  der: Buffer
  x509: X509Certificate
  publicKey: KeyObject
  notBefore: Date
  notAfter: Date
}

const PEM_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/

/** Parse the first PEM certificate in `pem` (what OpenSSL's X509::from_pem reads). */
export function parseSigningCertificate(pem: Buffer | string): SigningCertificate {
  const text = Buffer.isBuffer(pem) ? pem.toString('latin1') : pem
  const block = PEM_RE.exec(text)?.[0]
  let x509: X509Certificate
  let publicKey: KeyObject
  try {
    if (!block) throw new Error('no PEM CERTIFICATE block')
    x509 = new X509Certificate(block)
    publicKey = x509.publicKey
  } catch (error) {
    throw eifError('EIF_BAD_CERTIFICATE', `The signing certificate is not a valid PEM X.509 certificate: ${(error as Error).message}`, {
      hint: 'Pass the certificate in PEM form (-----BEGIN CERTIFICATE-----).',
      cause: error,
    })
  }
  const notBefore = new Date(x509.validFrom)
  const notAfter = new Date(x509.validTo)
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw eifError('EIF_BAD_CERTIFICATE', 'The signing certificate has unreadable validity dates.')
  }
  return {pem: Buffer.from(Buffer.isBuffer(pem) ? pem : Buffer.from(pem)), der: Buffer.from(x509.raw), x509, publicKey, notBefore, notAfter}
}

/** `nitro-cli pcr --signing-certificate`: PCR8 = PCR of the DER certificate. */
export function pcr8Of(cert: SigningCertificate): string {
  return pcrOf(cert.der)
}

/** describe-eif's SigningCertificate object, keys and value formats as nitro-cli prints them. */
export interface SigningCertificateInfo {
  IssuerName: Record<string, string>
  Algorithm: string
  NotBefore: string
  NotAfter: string
  Signature: string
}

const LONG_NAMES: Record<string, string> = {
  C: 'countryName',
  O: 'organizationName',
  OU: 'organizationalUnitName',
  CN: 'commonName',
  L: 'localityName',
  ST: 'stateOrProvinceName',
  E: 'emailAddress',
  emailAddress: 'emailAddress',
  DC: 'domainComponent',
  SERIALNUMBER: 'serialNumber',
  serialNumber: 'serialNumber',
  street: 'streetAddress',
  title: 'title',
  GN: 'givenName',
  SN: 'surname',
}

function algorithmName(alg: {name?: string; hash?: unknown}): string {
  const hash = typeof alg.hash === 'object' && alg.hash !== null ? (alg.hash as {name?: string}).name : typeof alg.hash === 'string' ? alg.hash : undefined
  const bits = hash?.replace(/^SHA-/, '') ?? ''
  if (alg.name === 'ECDSA') return `ecdsa-with-SHA${bits}`
  if (alg.name === 'RSASSA-PKCS1-v1_5') return `sha${bits}WithRSAEncryption`
  if (alg.name === 'RSA-PSS') return 'rsassaPss'
  if (alg.name === 'Ed25519') return 'ED25519'
  return alg.name ?? 'unknown'
}

export async function certificateInfo(cert: SigningCertificate): Promise<SigningCertificateInfo> {
  const {X509Certificate: PeculiarCert} = await import('@peculiar/x509')
  const issuer: Record<string, string> = {}
  let c: InstanceType<typeof PeculiarCert>
  try {
    c = new PeculiarCert(cert.der)
    for (const rdn of c.issuerName.toJSON()) {
      for (const [type, values] of Object.entries(rdn)) {
        const name = LONG_NAMES[type] ?? type
        for (const v of values) issuer[name] = v
      }
    }
  } catch (error) {
    throw eifError('EIF_BAD_CERTIFICATE', `The signing certificate cannot be described: ${(error as Error).message}`, {cause: error})
  }
  const sorted: Record<string, string> = {}
  for (const k of Object.keys(issuer).sort()) sorted[k] = issuer[k]!
  const sigHex = Buffer.from(c.signature).toString('hex').toUpperCase()
  return {
    IssuerName: sorted,
    Algorithm: algorithmName(c.signatureAlgorithm as {name?: string; hash?: unknown}),
    NotBefore: cert.x509.validFrom,
    NotAfter: cert.x509.validTo,
    Signature: sigHex.match(/../g)?.join(':') ?? '',
  }
}
