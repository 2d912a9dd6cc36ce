import {createPrivateKey, generateKeyPairSync, verify} from 'node:crypto'

import {describe, expect, it} from 'vitest'

import {CURVES, ecSigningKey, signChecked, signDeterministic} from './ecdsa.js'

describe('RFC 6979 deterministic ECDSA', () => {
  // RFC 6979 appendix A.2.5 (P-256) and A.2.6 (P-384), message "sample".
  it('matches the RFC 6979 P-256/SHA-256 vector', () => {
    const d = 0xc9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721n
    const sig = signDeterministic(CURVES['P-256'], d, Buffer.from('sample'))
    expect(sig.toString('hex')).toBe(
      'efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716' +
        'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8',
    )
  })

  it('matches the RFC 6979 P-384/SHA-384 vector', () => {
    const d = 0x6b9d3dad2e1b8c1c05b19875b6659f4de23c3b667bf297ba9aa47740787137d896d5724e4c70a825f872c9ea60d2edf5n
    const sig = signDeterministic(CURVES['P-384'], d, Buffer.from('sample'))
    expect(sig.toString('hex')).toBe(
      '94edbb92a5ecb8aad4736e56c691916b3f88140666ce9fa73d64c4ea95ad133c81a648152e44acf96e36dd1e80fabe46' +
        '99ef4aeb15f178cea1fe40db2603138f130e740a19624526203b6351d0a3a94fa329c145786e679e7b82c71a38628ac8',
    )
  })

  it.each(['P-256', 'P-384'] as const)('produces signatures node:crypto verifies, identical on every call (%s)', (crv) => {
    const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: crv})
    const key = ecSigningKey(privateKey)
    for (let i = 0; i < 5; i++) {
      const msg = Buffer.from(`message ${i}`)
      const a = signChecked(key, msg)
      expect(signChecked(key, msg)).toEqual(a)
      expect(verify(key.curve.hash, msg, {key: publicKey, dsaEncoding: 'ieee-p1363'}, a)).toBe(true)
    }
  })

  it('rejects keys that are not P-256/P-384 EC private keys', () => {
    const rsa = generateKeyPairSync('rsa', {modulusLength: 1024}).privateKey
    expect(() => ecSigningKey(rsa)).toThrow(expect.objectContaining({code: 'EIF_BAD_KEY'}))
    const p521 = createPrivateKey(generateKeyPairSync('ec', {namedCurve: 'P-521'}).privateKey.export({format: 'pem', type: 'pkcs8'}))
    expect(() => ecSigningKey(p521)).toThrow(expect.objectContaining({code: 'EIF_BAD_KEY'}))
  })
})
