/**
 * Trust anchors. The AWS Nitro Enclaves root (G1) is embedded: every genuine attestation document
 * carries it as cabundle[0], and the verifier pins it by its exact DER bytes. Source: the root
 * AWS publishes (AWS_NitroEnclaves_Root-G1.zip), identical to ../shared/testdata/attestation/aws_nitro_root_g1.pem.
 */
import {createHash} from 'node:crypto'

import {verifyError} from './errors.js'

/** CN=aws.nitro-enclaves, C=US, O=Amazon, OU=AWS; valid 2019-10-28 → 2049-10-28; P-384. */
export const AWS_NITRO_ROOT_G1_PEM = `-----BEGIN CERTIFICATE-----
MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD
VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4
MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL
DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG
BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb
48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE
h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF
R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC
MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW
rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N
IwLz3/Y=
-----END CERTIFICATE-----
`

/**
 * SHA-256 of the root's DER. (The 8cf60e2b… value AWS publishes is the hash of the zip the
 * certificate ships in, not of the certificate.)
 */
export const AWS_NITRO_ROOT_G1_SHA256 = '641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b'

export interface TrustedRoot {
  /** `aws-nitro-enclaves-root-g1` for the embedded root; `insecure-dev-root` for anything passed in. */
  name: 'aws-nitro-enclaves-root-g1' | 'insecure-dev-root'
  der: Uint8Array
  /** Lowercase hex SHA-256 of `der`. */
  sha256: string
}

const PEM_RE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/

/** The DER bytes of the first certificate in a PEM text. */
export function pemToDer(pem: string): Uint8Array {
  const match = PEM_RE.exec(pem)
  if (!match?.[1]) {
    throw verifyError('ATTEST_CERT_MALFORMED', 'The trusted root is not a PEM certificate (no BEGIN/END CERTIFICATE block).', {
      hint: 'Pass a PEM file containing one X.509 certificate.',
    })
  }
  return new Uint8Array(Buffer.from(match[1].replace(/\s+/g, ''), 'base64'))
}

export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64')
  const lines = b64.match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

const awsRootDer = pemToDer(AWS_NITRO_ROOT_G1_PEM)

/** The embedded AWS root. Checked against its pinned fingerprint once at load (fails loudly if edited). */
export const AWS_NITRO_ROOT_G1: TrustedRoot = Object.freeze({
  name: 'aws-nitro-enclaves-root-g1' as const,
  der: awsRootDer,
  sha256: sha256Hex(awsRootDer),
})
if (AWS_NITRO_ROOT_G1.sha256 !== AWS_NITRO_ROOT_G1_SHA256) {
  throw new Error('nle: the embedded AWS Nitro Enclaves root does not match its pinned SHA-256; the build is corrupt.')
}

/**
 * A root other than AWS's — the NSM simulator's, or a test CA. Deliberately named: documents it
 * accepts were not signed by AWS.
 */
export function insecureDevRoot(pemOrDer: string | Uint8Array): TrustedRoot {
  const der = typeof pemOrDer === 'string' ? pemToDer(pemOrDer) : new Uint8Array(pemOrDer)
  return {name: 'insecure-dev-root', der, sha256: sha256Hex(der)}
}
