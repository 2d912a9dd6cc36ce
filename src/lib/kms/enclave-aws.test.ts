/**
 * The enclave's KMS client: credentials from the parent proxy's endpoint over a Unix socket, and
 * KMS traffic through a Unix socket (`via`), against the local KMS endpoint on 127.0.0.1.
 */
import {once} from 'node:events'
import {type IncomingMessage, type ServerResponse, createServer as createHttpServer} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {type Server, type Socket, connect, createServer as createNetServer} from 'node:net'
import {join} from 'node:path'
import {type TLSSocket, createServer as createTlsServer} from 'node:tls'

import {CreateKeyCommand, KMSClient} from '@aws-sdk/client-kms'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {hasCode} from '../errors.js'
import {type CredentialsServer, startCredentialsServer} from '../proxy/credentials.js'
import {selfSignedCertificate} from '../proxy/tls.js'
import {tempDir} from '../../test-support/tmp.js'
import {type EnclaveKmsClient, KmsServiceError, credentialsFromSocket, enclaveKmsClient, kmsEndpoint, viaAgents} from './enclave-aws.js'
import {type RunningLocalKms, startLocalKms} from './local/server.js'
import {type LocalIdentity, newState} from './local/state.js'

const tmp = tempDir('nle-enclave-aws-')
afterAll(() => tmp.cleanup())
let n = 0
const sock = (name: string): string => join(tmp.dir, `${name}-${n++}.sock`)

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function listen(server: Server, path: string): Promise<void> {
  server.listen(path)
  await once(server, 'listening')
  cleanups.push(() => {
    ;(server as {closeAllConnections?: () => void}).closeAllConnections?.()
    return new Promise<void>((r) => server.close(() => r()))
  })
}

/** A credentials endpoint that answers whatever the test says. */
async function fakeEndpoint(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const path = sock('fake-creds')
  await listen(createHttpServer(answer), path)
  return path
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (error) {
    return error
  }
  throw new Error('expected a failure')
}

describe('credentialsFromSocket', () => {
  it('reads the ECS shape into SDK credentials', async () => {
    const path = await fakeEndpoint((_req, res) => res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({AccessKeyId: 'ASIAX', SecretAccessKey: 's3cr3t', Token: 'tok', Expiration: '2030-01-01T00:00:00Z'})))
    expect(await credentialsFromSocket(path)()).toEqual({accessKeyId: 'ASIAX', secretAccessKey: 's3cr3t', sessionToken: 'tok', expiration: new Date('2030-01-01T00:00:00Z')})
    const bare = await fakeEndpoint((_req, res) => res.end(JSON.stringify({AccessKeyId: 'AKIAX', SecretAccessKey: 's3cr3t'})))
    expect(await credentialsFromSocket(bare)()).toEqual({accessKeyId: 'AKIAX', secretAccessKey: 's3cr3t'})
  })

  it('KMS_CREDENTIALS_UNAVAILABLE when the socket is absent or refuses, or the endpoint answers 503', async () => {
    const absent = await failure(credentialsFromSocket(join(tmp.dir, 'nothing-here.sock'))())
    expect(hasCode(absent, 'KMS_CREDENTIALS_UNAVAILABLE')).toBe(true)
    expect((absent as Error).message).toMatch(/does not exist/)
    expect((absent as {hint?: string}).hint).toMatch(/credentials bridge/)

    const path = await fakeEndpoint((_req, res) => res.writeHead(503, {'content-type': 'application/json'}).end(JSON.stringify({error: {code: 'PROXY_CREDENTIALS_UNAVAILABLE', message: 'No AWS credentials'}})))
    const down = await failure(credentialsFromSocket(path)())
    expect(down).toMatchObject({code: 'KMS_CREDENTIALS_UNAVAILABLE', details: {status: 503, code: 'PROXY_CREDENTIALS_UNAVAILABLE'}})
  })

  it('KMS_CREDENTIALS_INVALID for an answer that is not credentials', async () => {
    for (const body of ['not json', '[]', JSON.stringify({AccessKeyId: 'A'}), JSON.stringify({AccessKeyId: 'A', SecretAccessKey: 'S', Expiration: 'soon'}), JSON.stringify({AccessKeyId: 'A', SecretAccessKey: 'S', Token: 7})]) {
      const path = await fakeEndpoint((_req, res) => res.end(body))
      const e = await failure(credentialsFromSocket(path)())
      expect(hasCode(e, 'KMS_CREDENTIALS_INVALID'), body).toBe(true)
    }
  })
})

describe('enclaveKmsClient against the local KMS endpoint', () => {
  let kms: RunningLocalKms
  let host: LocalIdentity
  let keyId: string
  let credentials: CredentialsServer
  const saved = {...process.env}
  beforeAll(async () => {
    const state = newState()
    const [admin, h] = state.identities as [LocalIdentity, LocalIdentity]
    host = h
    kms = await startLocalKms({state, root: new NsmSimulator().root})
    const adminClient = new KMSClient({endpoint: kms.url, region: state.region, credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}, maxAttempts: 1})
    const policy = {
      Version: '2012-10-17',
      Statement: [
        {Sid: 'admins', Effect: 'Allow', Principal: {AWS: admin.arn}, Action: 'kms:*', Resource: '*'},
        {Sid: 'host', Effect: 'Allow', Principal: {AWS: host.arn}, Action: ['kms:Encrypt', 'kms:Decrypt'], Resource: '*'},
      ],
    }
    keyId = (await adminClient.send(new CreateKeyCommand({Policy: JSON.stringify(policy)}))).KeyMetadata!.KeyId!
    // The parent proxy's credentials endpoint, env source with the host identity's keys.
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: host.accessKeyId, AWS_SECRET_ACCESS_KEY: host.secretAccessKey})
    delete process.env.AWS_SESSION_TOKEN
    credentials = await startCredentialsServer({socketPath: join(tmp.dir, 'credentials.sock'), source: 'env', logger: {log() {}}})
  })
  afterAll(async () => {
    process.env = saved
    await credentials?.close()
    await kms?.close()
  })

  async function roundTrip(client: EnclaveKmsClient): Promise<void> {
    const context = {'nle:purpose': 'chat-request', 'nle:request-id': 'ab12'}
    const plaintext = Buffer.from('a 32-byte data key, more or less')
    const enc = await client.encrypt({KeyId: keyId, Plaintext: plaintext, EncryptionContext: context})
    const dec = await client.decrypt({CiphertextBlob: enc.CiphertextBlob, EncryptionContext: context})
    expect(Buffer.from(dec.Plaintext!)).toEqual(plaintext)
    expect(dec.KeyId).toContain(keyId)
    // A context that differs is refused by KMS: the error carries KMS's exception name.
    const refused = await failure(client.decrypt({CiphertextBlob: enc.CiphertextBlob, EncryptionContext: {...context, 'nle:request-id': 'other'}}))
    expect(refused).toBeInstanceOf(KmsServiceError)
    expect((refused as KmsServiceError).name).toBe('InvalidCiphertextException')
  }

  it('Encrypt/Decrypt round trip, signed with the credentials from the socket (direct connection)', async () => {
    const client = enclaveKmsClient({region: 'us-east-1', endpoint: kms.url, credentialsSocket: credentials.socketPath})
    cleanups.push(() => client.destroy())
    expect(client.maxAttempts).toBe(2)
    await roundTrip(client)
  })

  it('the same through `via`: every byte to KMS passes a Unix-socket forwarder', async () => {
    const via = sock('kms-via')
    let connections = 0
    let bytes = 0
    const open = new Set<Socket>()
    const forwarder = createNetServer((inbound) => {
      connections++
      const outbound = connect(kms.port, '127.0.0.1')
      open.add(inbound).add(outbound)
      inbound.on('data', (d: Buffer) => (bytes += d.length))
      inbound.pipe(outbound).pipe(inbound)
      const end = (): void => {
        inbound.destroy()
        outbound.destroy()
      }
      inbound.on('error', end).on('close', end)
      outbound.on('error', end).on('close', end)
    })
    await listen(forwarder, via)
    cleanups.push(() => open.forEach((s) => s.destroy()))
    // An endpoint host that does not resolve: only the forwarder can reach it.
    const client = enclaveKmsClient({region: 'us-east-1', endpoint: `http://kms.invalid:${kms.port}`, via, credentialsSocket: credentials.socketPath})
    cleanups.push(() => client.destroy())
    await roundTrip(client)
    expect(connections).toBeGreaterThanOrEqual(1)
    expect(bytes).toBeGreaterThan(0)
  })

  it('https through `via`: TLS to the endpoint host over the Unix socket, as enclaveKmsClient sets it up', async () => {
    // A TLS-terminating stand-in for vsock-proxy + KMS: the socket speaks TLS as "localhost".
    const cert = await selfSignedCertificate(['localhost'])
    const via = sock('kms-tls-via')
    const open = new Set<Socket>()
    const terminator = createTlsServer({cert: cert.certPem, key: cert.keyPem}, (inbound) => {
      const outbound = connect(kms.port, '127.0.0.1')
      open.add(inbound).add(outbound)
      inbound.pipe(outbound).pipe(inbound)
      inbound.on('error', () => outbound.destroy())
      outbound.on('error', () => inbound.destroy())
    })
    await listen(terminator, via)
    cleanups.push(() => open.forEach((s) => s.destroy()))
    // enclaveKmsClient's agents, with the test certificate trusted (the enclave uses Node's CA store).
    const client = enclaveKmsClient({region: 'us-east-1', endpoint: 'https://localhost', via, credentialsSocket: credentials.socketPath}, {ca: cert.certPem})
    cleanups.push(() => client.destroy())
    await roundTrip(client)
  })

  it('fails with KMS_CREDENTIALS_UNAVAILABLE when the credentials socket is missing', async () => {
    const client = enclaveKmsClient({region: 'us-east-1', endpoint: kms.url, credentialsSocket: join(tmp.dir, 'absent.sock')})
    cleanups.push(() => client.destroy())
    const e = await failure(client.encrypt({KeyId: keyId, Plaintext: Buffer.from('x')}))
    expect(hasCode(e, 'KMS_CREDENTIALS_UNAVAILABLE')).toBe(true)
  })
})

describe('enclaveKmsClient against a KMS that misbehaves (through `via`)', () => {
  async function fakeKms(answer: (res: ServerResponse) => void): Promise<{client: EnclaveKmsClient; calls: () => {target?: string; signed: boolean}[]}> {
    const calls: {target?: string; signed: boolean}[] = []
    const via = sock('fake-kms')
    await listen(
      createHttpServer((req, res) => {
        req.resume()
        req.on('end', () => {
          calls.push({target: req.headers['x-amz-target'] as string | undefined, signed: /^AWS4-HMAC-SHA256 Credential=AKIAX\/\d{8}\/us-east-1\/kms\/aws4_request/.test(String(req.headers.authorization))})
          answer(res)
        })
      }),
      via,
    )
    const creds = await fakeEndpoint((_req, res) => res.end(JSON.stringify({AccessKeyId: 'AKIAX', SecretAccessKey: 's3cr3t'})))
    const client = enclaveKmsClient({region: 'us-east-1', endpoint: 'http://kms.invalid', via, credentialsSocket: creds})
    cleanups.push(() => client.destroy())
    return {client, calls: () => calls}
  }
  const input = {CiphertextBlob: new Uint8Array([1, 2, 3])}

  it('an AWS error body becomes a KmsServiceError named after the exception, not retried', async () => {
    const {client, calls} = await fakeKms((res) => {
      res.writeHead(400, {'content-type': 'application/x-amz-json-1.1'})
      res.end(JSON.stringify({__type: 'com.amazonaws.kms#AccessDeniedException', message: 'no'}))
    })
    const e = await failure(client.decrypt(input))
    expect(e).toBeInstanceOf(KmsServiceError)
    expect((e as KmsServiceError).name).toBe('AccessDeniedException')
    expect(calls()).toEqual([{target: 'TrentService.Decrypt', signed: true}])
  })

  it('a 5xx is retried once, then fails', async () => {
    const {client, calls} = await fakeKms((res) => {
      res.writeHead(503, {'x-amzn-errortype': 'ServiceUnavailableException:http://internal'})
      res.end()
    })
    const e = await failure(client.decrypt(input))
    expect((e as KmsServiceError).name).toBe('ServiceUnavailableException')
    expect(calls()).toHaveLength(2)
  })

  it('refuses an answer larger than 256 KiB', async () => {
    const {client} = await fakeKms((res) => {
      res.writeHead(200, {'content-type': 'application/x-amz-json-1.1'})
      res.end(JSON.stringify({CiphertextForRecipient: 'A'.repeat(300 * 1024)}))
    })
    const e = await failure(client.decrypt(input))
    expect((e as KmsServiceError).name).toBe('InvalidResponse')
  })
})

describe('viaAgents (https)', () => {
  it('runs TLS over the Unix socket with SNI and the certificate checked for the endpoint host', async () => {
    const cert = await selfSignedCertificate(['localhost'])
    const {createServer: createTlsServer} = await import('node:https')
    const via = sock('tls-via')
    const seen: (string | false | null | undefined)[] = []
    const server = createTlsServer({cert: cert.certPem, key: cert.keyPem}, (req, res) => {
      seen.push((req.socket as TLSSocket).servername)
      res.end(`hello ${req.headers.host}`)
    })
    await listen(server as unknown as Server, via)
    const get = (servername: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const {httpsAgent} = viaAgents(via, servername, {ca: cert.certPem})
        cleanups.push(() => httpsAgent.destroy())
        const req = httpsRequest({host: servername, port: 443, path: '/', agent: httpsAgent}, (res) => {
          const parts: Buffer[] = []
          res.on('data', (d: Buffer) => parts.push(d))
          res.on('end', () => resolve(Buffer.concat(parts).toString()))
        })
        req.on('error', reject)
        req.end()
      })
    expect(await get('localhost')).toBe('hello localhost')
    expect(seen).toEqual(['localhost'])
    // The relay cannot pass for another host: the certificate must name the endpoint's host.
    await expect(get('kms.us-east-1.amazonaws.com')).rejects.toMatchObject({code: 'ERR_TLS_CERT_ALTNAME_INVALID'})
  })

  it('defaults to the public regional endpoint', () => {
    expect(kmsEndpoint('eu-west-1')).toBe('https://kms.eu-west-1.amazonaws.com')
    const client = enclaveKmsClient({region: 'eu-west-1', credentialsSocket: '/run/nle/credentials.sock', via: '/run/nle/kms.sock'})
    cleanups.push(() => client.destroy())
    expect(client.endpoint.href).toBe('https://kms.eu-west-1.amazonaws.com/')
  })
})
