/** A self-signed development certificate for the proxy (the dev stack's HTTPS), made in-process. */
import {webcrypto} from 'node:crypto'

import 'reflect-metadata'

export interface DevCertificate {
  certPem: string
  keyPem: string
}

/** A P-256 certificate for `hosts` (DNS names or IPs), valid for `days` (default 30). */
export async function selfSignedCertificate(hosts: readonly string[] = ['localhost', '127.0.0.1', '::1'], days = 30): Promise<DevCertificate> {
  const x509 = await import('@peculiar/x509')
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
  const alg = {name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256'}
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const isIp = (h: string): boolean => /^[\d.]+$/.test(h) || h.includes(':')
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: webcrypto.getRandomValues(new Uint8Array(8)).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '7'),
    name: `CN=${hosts[0] ?? 'localhost'}, O=nle dev proxy`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + days * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({type: isIp(h) ? ('ip' as const) : ('dns' as const), value: h}))),
    ],
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`
  return {certPem: cert.toString('pem') + '\n', keyPem}
}
