import {readFileSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {AWS_ROOT_PEM_FILE, HAVE_VECTORS, VECTORS, codeOf} from '../../test-support/attestation.js'
import {cborDecode} from './cbor.js'
import {AWS_NITRO_ROOT_G1, AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256, derToPem, insecureDevRoot, pemToDer, sha256Hex} from './roots.js'

describe('embedded AWS Nitro Enclaves root G1', () => {
  it('has the pinned SHA-256 fingerprint of its DER', () => {
    expect(AWS_NITRO_ROOT_G1_SHA256).toBe('641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b')
    expect(sha256Hex(AWS_NITRO_ROOT_G1.der)).toBe(AWS_NITRO_ROOT_G1_SHA256)
    expect(AWS_NITRO_ROOT_G1.name).toBe('aws-nitro-enclaves-root-g1')
  })

  it.skipIf(!HAVE_VECTORS)('is byte-identical to the shipped PEM and to cabundle[0] of every real document', () => {
    expect(Buffer.from(pemToDer(readFileSync(AWS_ROOT_PEM_FILE!, 'utf8')))).toEqual(Buffer.from(AWS_NITRO_ROOT_G1.der))
    for (const v of VECTORS) {
      const payload = cborDecode((cborDecode(v.bytes) as Uint8Array[])[2]!) as Map<string, unknown>
      const bundle = payload.get('cabundle') as Uint8Array[]
      expect(sha256Hex(bundle[0]!), v.file).toBe(AWS_NITRO_ROOT_G1_SHA256)
    }
  })

  it('PEM round-trips and a non-PEM root is refused with an NleError', async () => {
    expect(pemToDer(derToPem(AWS_NITRO_ROOT_G1.der))).toEqual(AWS_NITRO_ROOT_G1.der)
    expect(derToPem(AWS_NITRO_ROOT_G1.der).replace(/\s/g, '')).toBe(AWS_NITRO_ROOT_G1_PEM.replace(/\s/g, ''))
    expect(codeOf(() => pemToDer('not a certificate'))).toBe('ATTEST_CERT_MALFORMED')
    expect(insecureDevRoot(AWS_NITRO_ROOT_G1_PEM).name).toBe('insecure-dev-root')
  })
})
