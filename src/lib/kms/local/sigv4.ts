/**
 * SigV4 verification for the local KMS endpoint: parse the Authorization header, look up the
 * access key among the configured identities, re-sign the request as received with
 * @smithy/signature-v4 (the SDK's own signer) and compare in constant time.
 */
import {createHash, createHmac, timingSafeEqual} from 'node:crypto'

import {SignatureV4} from '@smithy/signature-v4'

import type {LocalIdentity} from './state.js'

/** How far a request's X-Amz-Date may be from the server's clock (AWS allows 15 minutes). */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000

export interface IncomingSignedRequest {
  method: string
  /** Path without the query string. */
  path: string
  query: Record<string, string | string[]>
  /** Lowercase header names (as node:http gives them). */
  headers: Record<string, string | string[] | undefined>
  body: Uint8Array
}

export type SigV4Failure = {ok: false; type: 'MissingAuthenticationTokenException' | 'IncompleteSignatureException' | 'UnrecognizedClientException' | 'InvalidSignatureException'; message: string}
export type SigV4Result = {ok: true; identity: LocalIdentity; region: string; service: string} | SigV4Failure

/** The hash constructor @smithy/signature-v4 needs, on node:crypto. */
export class NodeSha256 {
  private readonly hash
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array))
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(typeof data === 'string' ? data : Buffer.from(data as Uint8Array))
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest())
  }
  reset(): void {}
}

/** Headers that, when the request has them, its signature must cover. */
export const REQUIRED_WHEN_PRESENT = ['x-amz-target', 'content-type', 'x-amz-content-sha256', 'x-amz-security-token'] as const

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$/

function header(headers: IncomingSignedRequest['headers'], name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(',') : v
}

function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value)
  if (!m) return undefined
  return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])))
}

export async function verifySigV4(request: IncomingSignedRequest, identities: readonly LocalIdentity[], now: number): Promise<SigV4Result> {
  const authorization = header(request.headers, 'authorization')
  if (!authorization) return {ok: false, type: 'MissingAuthenticationTokenException', message: 'Request is missing Authentication Token'}
  const m = AUTH.exec(authorization.trim())
  if (!m) return {ok: false, type: 'IncompleteSignatureException', message: 'Authorization header is not a well-formed AWS4-HMAC-SHA256 signature.'}
  const [, accessKeyId, scopeDate, region, service, signedHeaderList, signature] = m as unknown as [string, string, string, string, string, string, string]
  const identity = identities.find((i) => i.accessKeyId === accessKeyId)
  if (!identity) return {ok: false, type: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.'}
  const amzDate = header(request.headers, 'x-amz-date')
  const date = amzDate ? parseAmzDate(amzDate) : undefined
  if (!date || !amzDate!.startsWith(scopeDate)) return {ok: false, type: 'IncompleteSignatureException', message: 'X-Amz-Date is missing or does not match the credential scope.'}
  if (Math.abs(now - date.getTime()) > MAX_CLOCK_SKEW_MS) return {ok: false, type: 'InvalidSignatureException', message: 'Signature expired: X-Amz-Date is more than 15 minutes from the server time.'}
  const signed = signedHeaderList.split(';')
  if (!signed.includes('host') || !signed.includes('x-amz-date')) return {ok: false, type: 'IncompleteSignatureException', message: 'SignedHeaders must include host and x-amz-date.'}
  // What the request means must be signed too: the operation (X-Amz-Target: a Decrypt signed as a
  // DescribeKey would otherwise pass) and how the body is read (Content-Type). The AWS SDKs sign both.
  for (const name of REQUIRED_WHEN_PRESENT) {
    if (header(request.headers, name) !== undefined && !signed.includes(name)) {
      return {ok: false, type: 'IncompleteSignatureException', message: `SignedHeaders must include ${name}.`}
    }
  }
  if (request.method === 'POST' && header(request.headers, 'content-type') === undefined) {
    return {ok: false, type: 'IncompleteSignatureException', message: 'A POST must carry a signed Content-Type.'}
  }
  const headers: Record<string, string> = {}
  for (const name of signed) {
    const value = header(request.headers, name)
    if (value === undefined) return {ok: false, type: 'IncompleteSignatureException', message: `Signed header ${name} is missing from the request.`}
    headers[name] = value
  }
  // The signer trusts x-amz-content-sha256 as the payload hash: make sure it is the body's.
  const contentSha = header(request.headers, 'x-amz-content-sha256')
  if (contentSha !== undefined && contentSha !== createHash('sha256').update(request.body).digest('hex')) {
    return {ok: false, type: 'InvalidSignatureException', message: 'x-amz-content-sha256 does not match the request body.'}
  }
  const sessionToken = header(request.headers, 'x-amz-security-token')
  const signer = new SignatureV4({
    service,
    region,
    credentials: {accessKeyId: identity.accessKeyId, secretAccessKey: identity.secretAccessKey, ...(sessionToken && signed.includes('x-amz-security-token') ? {sessionToken} : {})},
    sha256: NodeSha256,
    uriEscapePath: true,
    applyChecksum: false,
  })
  const host = headers.host!
  const resigned = await signer.sign(
    {method: request.method, protocol: 'http:', hostname: host.replace(/:\d+$/, ''), path: request.path, query: request.query, headers, body: request.body},
    {signingDate: date, signableHeaders: new Set(signed)},
  )
  const expected = /Signature=([0-9a-f]{64})/.exec(String(resigned.headers.authorization ?? resigned.headers.Authorization ?? ''))?.[1]
  const expectedHeaders = /SignedHeaders=([^,]+)/.exec(String(resigned.headers.authorization ?? resigned.headers.Authorization ?? ''))?.[1]
  if (!expected || expectedHeaders !== signedHeaderList || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
    return {ok: false, type: 'InvalidSignatureException', message: 'The request signature we calculated does not match the signature you provided.'}
  }
  return {ok: true, identity, region, service}
}
