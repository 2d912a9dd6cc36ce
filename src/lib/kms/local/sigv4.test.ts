import {createHash} from 'node:crypto'

import {SignatureV4} from '@smithy/signature-v4'
import {describe, expect, it} from 'vitest'

import {NodeSha256, verifySigV4} from './sigv4.js'
import {newIdentity} from './state.js'

const identity = newIdentity('000000000000', 'host')
const now = Date.UTC(2026, 0, 2, 3, 4, 5)

async function signed(body: string, extraHeaders: Record<string, string> = {}, unsignable: string[] = []): Promise<{headers: Record<string, string>; body: Uint8Array}> {
  const signer = new SignatureV4({service: 'kms', region: 'us-east-1', credentials: {accessKeyId: identity.accessKeyId, secretAccessKey: identity.secretAccessKey}, sha256: NodeSha256})
  const request = await signer.sign(
    {method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port: 4599, path: '/', query: {}, headers: {host: '127.0.0.1:4599', 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.DescribeKey', ...extraHeaders}, body},
    {signingDate: new Date(now), unsignableHeaders: new Set(unsignable)},
  )
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = String(v)
  return {headers, body: Buffer.from(body)}
}

const verify = (r: {headers: Record<string, string>; body: Uint8Array}, at = now): ReturnType<typeof verifySigV4> => verifySigV4({method: 'POST', path: '/', query: {}, headers: r.headers, body: r.body}, [identity], at)

describe('verifySigV4', () => {
  it('accepts a request signed with the identity\'s key', async () => {
    expect(await verify(await signed('{"KeyId":"k"}'))).toMatchObject({ok: true, region: 'us-east-1', service: 'kms', identity: {arn: identity.arn}})
  })

  it('refuses a changed body, a changed signed header, another key, an old date, a lying content hash', async () => {
    const good = await signed('{"KeyId":"k"}')
    expect(await verify({...good, body: Buffer.from('{"KeyId":"x"}')})).toMatchObject({ok: false, type: 'InvalidSignatureException'})
    expect(await verify({...good, headers: {...good.headers, 'x-amz-target': 'TrentService.Decrypt'}})).toMatchObject({ok: false, type: 'InvalidSignatureException'})
    expect(await verify(good, now + 16 * 60 * 1000)).toMatchObject({ok: false, type: 'InvalidSignatureException'})
    const other = {...good, headers: {...good.headers, authorization: good.headers.authorization!.replace(identity.accessKeyId, 'AKIAOTHER00000000000')}}
    expect(await verify(other)).toMatchObject({ok: false, type: 'UnrecognizedClientException'})
    const lying = await signed('{"KeyId":"k"}', {'x-amz-content-sha256': createHash('sha256').update('something else').digest('hex')})
    expect(await verify(lying)).toMatchObject({ok: false, type: 'InvalidSignatureException'})
    const {authorization: _a, ...unsigned} = good.headers
    expect(await verify({...good, headers: unsigned})).toMatchObject({ok: false, type: 'MissingAuthenticationTokenException'})
  })

  it('refuses a request whose signature leaves out X-Amz-Target or Content-Type (the operation and how its body is read)', async () => {
    for (const left of ['x-amz-target', 'content-type']) {
      const r = await signed('{"KeyId":"k"}', {}, [left])
      expect(r.headers.authorization).not.toContain(left)
      expect(r.headers[left]).toBeDefined() // sent, but not signed
      expect(await verify(r)).toMatchObject({ok: false, type: 'IncompleteSignatureException', message: expect.stringContaining(left)})
    }
    const {'content-type': _ct, ...noType} = (await signed('{"KeyId":"k"}', {}, ['content-type'])).headers
    expect(await verify({headers: noType, body: Buffer.from('{"KeyId":"k"}')})).toMatchObject({ok: false, type: 'IncompleteSignatureException'})
  })
})
