/**
 * Deterministic ECDSA (RFC 6979) over P-256/SHA-256 and P-384/SHA-384, so that signing the same
 * EIF with the same key gives the same bytes every time. node:crypto only offers randomised ECDSA
 * (OpenSSL 3.0 has no deterministic nonces); @noble/curves (audited, maintained) does RFC 6979.
 * Every signature is verified with node:crypto before it is returned.
 */
import {createPublicKey, verify, type KeyObject} from 'node:crypto'

import {p256, p384} from '@noble/curves/nist.js'

import {eifError} from './errors.js'

interface Curve {
  name: 'P-256' | 'P-384'
  hash: 'sha256' | 'sha384'
  bytes: number
  impl: typeof p256
}

export const CURVES: Record<'P-256' | 'P-384', Curve> = {
  'P-256': {name: 'P-256', hash: 'sha256', bytes: 32, impl: p256},
  'P-384': {name: 'P-384', hash: 'sha384', bytes: 48, impl: p384 as unknown as typeof p256},
}

function toBytes(n: bigint, length: number): Uint8Array {
  return Uint8Array.from(Buffer.from(n.toString(16).padStart(length * 2, '0'), 'hex'))
}

/** RFC 6979 signature of `message` (hashed with the curve's hash), raw r‖s. */
export function signDeterministic(curve: Curve, d: bigint, message: Buffer): Buffer {
  const sig = curve.impl.sign(Uint8Array.from(message), toBytes(d, curve.bytes), {prehash: true, lowS: false, format: 'compact'})
  return Buffer.from(sig)
}

export interface EcSigningKey {
  curve: Curve
  d: bigint
  publicKey: KeyObject
}

/** Accept a node private KeyObject on P-256 or P-384. */
export function ecSigningKey(key: KeyObject): EcSigningKey {
  const jwk = key.type === 'private' && key.asymmetricKeyType === 'ec' ? key.export({format: 'jwk'}) : undefined
  const curve = jwk?.crv === 'P-256' || jwk?.crv === 'P-384' ? CURVES[jwk.crv] : undefined
  if (!jwk || !curve || typeof jwk.d !== 'string') {
    throw eifError('EIF_BAD_KEY', 'The signing key must be an EC private key on P-256 or P-384.', {
      hint: 'Create one with `openssl ecparam -name secp384r1 -genkey -noout -out key.pem`.',
    })
  }
  return {curve, d: BigInt(`0x${Buffer.from(jwk.d, 'base64url').toString('hex')}`), publicKey: createPublicKey(key)}
}

/** Sign deterministically and check the result with node:crypto before returning it. */
export function signChecked(key: EcSigningKey, message: Buffer): Buffer {
  const sig = signDeterministic(key.curve, key.d, message)
  if (!verify(key.curve.hash, message, {key: key.publicKey, dsaEncoding: 'ieee-p1363'}, sig)) {
    throw eifError('EIF_INTERNAL', 'A deterministic ECDSA signature failed its self-check; nothing was written. This is a bug in nle.')
  }
  return sig
}
