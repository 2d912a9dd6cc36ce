// The local KMS endpoint's edges: the credential scope's region, and bodies read outside the
// serialised queue (a slow client cannot stall the others), bounded in size and time.
import {connect} from 'node:net'

import {DescribeKeyCommand, KMSClient} from '@aws-sdk/client-kms'
import {afterEach, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../../attestation/simulator.js'
import {MAX_BODY_BYTES, type RunningLocalKms, startLocalKms} from './server.js'
import {newIdentity, newKey, newState} from './state.js'

const servers: RunningLocalKms[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

async function endpoint(bodyTimeoutMs?: number) {
  const state = newState({region: 'eu-west-1'})
  const admin = newIdentity(state.accountId, 'admin')
  state.identities.push(admin)
  const key = newKey(state, JSON.stringify({Version: '2012-10-17', Statement: [{Sid: 'all', Effect: 'Allow', Principal: {AWS: admin.arn}, Action: 'kms:*', Resource: '*'}]}), 'test', Date.now())
  state.keys[key.keyId] = key
  const server = await startLocalKms({state, root: new NsmSimulator().root, ...(bodyTimeoutMs ? {bodyTimeoutMs} : {})})
  servers.push(server)
  const client = (region: string): KMSClient => new KMSClient({endpoint: server.url, region, credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}, maxAttempts: 1})
  return {server, key, client}
}

/** A raw request that sends its head and part of its body; resolves with the status line it got. */
function partial(url: string, head: string): Promise<string> {
  const {port} = new URL(url)
  return new Promise((resolve) => {
    const s = connect(Number(port), '127.0.0.1', () => s.write(head))
    let got = ''
    s.on('data', (d: Buffer) => (got += d.toString('latin1')))
    s.on('error', () => undefined)
    s.on('close', () => resolve(got.split('\r\n')[0] ?? ''))
  })
}

describe('local KMS endpoint edges', () => {
  it('refuses a request signed for another region, as AWS does', async () => {
    const {key, client} = await endpoint()
    const ok = await client('eu-west-1').send(new DescribeKeyCommand({KeyId: key.keyId}))
    expect(ok.KeyMetadata?.Arn).toBe(key.arn)
    const other = client('us-west-2')
    await expect(other.send(new DescribeKeyCommand({KeyId: key.keyId}))).rejects.toMatchObject({name: 'InvalidSignatureException', $metadata: {httpStatusCode: 400}})
    other.destroy()
  })

  it('a client that never finishes its body neither stalls the others nor is held: 408', async () => {
    const {server, key, client} = await endpoint(500)
    const stalled = partial(server.url, 'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.DescribeKey\r\nContent-Length: 100\r\n\r\n{"KeyId"')
    // Served while the stalled body is still outstanding (before, the queue waited on it).
    const meanwhile = await client('eu-west-1').send(new DescribeKeyCommand({KeyId: key.keyId}))
    expect(meanwhile.KeyMetadata?.KeyId).toBe(key.keyId)
    expect(await stalled).toMatch(/^HTTP\/1\.1 408/)
  })

  it('refuses a body over MAX_BODY_BYTES with 413 without reading it', async () => {
    const {server} = await endpoint()
    const status = await partial(server.url, `POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\nConnection: close\r\nContent-Length: ${MAX_BODY_BYTES + 1}\r\n\r\n{`)
    expect(status).toMatch(/^HTTP\/1\.1 413/)
  })
})
