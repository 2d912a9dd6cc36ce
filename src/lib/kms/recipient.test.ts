import {createHash, createPrivateKey, createPublicKey, generateKeyPairSync} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {sharedTestdata} from '../../test-support/testdata.js'
import {hasCode} from '../errors.js'
import {codeOf} from '../../test-support/rejection.js'
import {OID_AES256_CBC, OID_RSAES_OAEP, OID_SHA256, buildEnvelope, decryptEnvelope, parseEnvelope, subjectKeyIdentifier} from './recipient.js'

/** The real KMS envelopes and the synthetic vector (../shared/testdata/kms), or undefined in a clone without it. */
const KMS_DATA = sharedTestdata('kms/')
const read = (name: string): Uint8Array => new Uint8Array(readFileSync(join(KMS_DATA!, name)))

describe('CiphertextForRecipient (CMS EnvelopedData)', () => {
  it.skipIf(KMS_DATA === undefined)('parses both real KMS envelopes (BER, indefinite lengths; constructed and primitive content)', () => {
    const indef = parseEnvelope(read('kms_cms_enveloped_indef.ber'))
    const prim = parseEnvelope(read('kms_cms_enveloped_ctxprim.ber'))
    for (const env of [indef, prim]) {
      expect(env.version).toBe(2)
      expect(env.recipients).toHaveLength(1)
      expect(env.recipients[0]).toMatchObject({version: 2, keyEncryptionAlgorithm: OID_RSAES_OAEP, oaepHash: OID_SHA256, mgf1Hash: OID_SHA256, hasLabel: false})
      expect(env.recipients[0]!.subjectKeyIdentifier).toMatch(/^[0-9a-f]{64}$/)
      expect(env.recipients[0]!.encryptedKey).toHaveLength(256)
      expect(env.contentEncryptionAlgorithm).toBe(OID_AES256_CBC)
      expect(env.iv).toHaveLength(16)
    }
    expect(indef.encryptedContent).toHaveLength(48)
    expect(prim.encryptedContent).toHaveLength(16)
  })

  it.skipIf(KMS_DATA === undefined)('decrypts the synthetic vector with its key to the recorded plaintext', () => {
    const key = createPrivateKey(readFileSync(join(KMS_DATA!, 'synthetic_kms_cms_rsa2048.key.pem')))
    const expected = Buffer.from(readFileSync(join(KMS_DATA!, 'synthetic_kms_cms_rsa2048.plaintext.hex'), 'utf8').trim(), 'hex')
    const plaintext = decryptEnvelope(read('synthetic_kms_cms_rsa2048.ber'), key)
    expect(plaintext.equals(expected)).toBe(true)
    // the synthetic vector's SKI is SHA-256 of the DER SPKI, which is what buildEnvelope writes
    const spki = createPublicKey(key).export({type: 'spki', format: 'der'})
    expect(parseEnvelope(read('synthetic_kms_cms_rsa2048.ber')).recipients[0]!.subjectKeyIdentifier).toBe(Buffer.from(subjectKeyIdentifier(spki)).toString('hex'))
  })

  it('round-trips what the local endpoint builds, in the real byte layout', () => {
    const {publicKey, privateKey} = generateKeyPairSync('rsa', {modulusLength: 2048})
    const spki = publicKey.export({type: 'spki', format: 'der'})
    const plaintext = createHash('sha256').update('a secret').digest()
    const env = buildEnvelope(plaintext, spki)
    // ContentInfo, [0] and EnvelopedData open with indefinite lengths, like the real bytes
    expect(Buffer.from(env.subarray(0, 2)).toString('hex')).toBe('3080')
    expect(Buffer.from(env).includes(Buffer.from('a0803080020102', 'hex'))).toBe(true)
    expect(Buffer.from(env.subarray(-4)).toString('hex')).toBe('00000000')
    expect(decryptEnvelope(env, privateKey).equals(plaintext)).toBe(true)
    const other = generateKeyPairSync('rsa', {modulusLength: 2048}).privateKey
    expect(codeOf(() => decryptEnvelope(env, other))).toBe('CMS_DECRYPT_FAILED')
  })

  it.skipIf(KMS_DATA === undefined)('refuses garbage, truncation and weak keys with CMS_* codes', () => {
    const env = read('synthetic_kms_cms_rsa2048.ber')
    expect(codeOf(() => parseEnvelope(new Uint8Array([1, 2, 3])))).toBe('CMS_MALFORMED')
    expect(codeOf(() => parseEnvelope(env.subarray(0, 200)))).toBe('CMS_MALFORMED')
    expect(codeOf(() => parseEnvelope(new Uint8Array(0)))).toBe('CMS_MALFORMED')
    const ec = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    expect(codeOf(() => buildEnvelope(new Uint8Array(4), ec.publicKey.export({type: 'spki', format: 'der'})))).toBe('CMS_BAD_KEY')
    const small = generateKeyPairSync('rsa', {modulusLength: 1024})
    expect(codeOf(() => buildEnvelope(new Uint8Array(4), small.publicKey.export({type: 'spki', format: 'der'})))).toBe('CMS_BAD_KEY')
    try {
      decryptEnvelope(env, ec.privateKey)
    } catch (error) {
      expect(hasCode(error, 'CMS_BAD_KEY')).toBe(true)
    }
  })
})
