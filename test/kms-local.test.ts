/**
 * The local KMS endpoint driven by the real @aws-sdk/client-kms, on 127.0.0.1 only. Attestation
 * documents come from the NSM simulator (ephemeral dev root, the same verifier as production).
 */
import {createHash} from 'node:crypto'
import {readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateRandomCommand,
  GetKeyPolicyCommand,
  KMSClient,
  ListAliasesCommand,
  PutKeyPolicyCommand,
} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {hasCode} from '../src/lib/errors.js'
import {type MeasurementSet, parsePolicy, starterPolicy} from '../src/lib/kms/policy.js'
import {decryptEnvelope, generateRecipientKeyPair} from '../src/lib/kms/recipient.js'
import {type RunningLocalKms, startLocalKms} from '../src/lib/kms/local/server.js'
import {type LocalIdentity, type LocalState, loadState, newState} from '../src/lib/kms/local/state.js'
import {tempDir} from '../src/test-support/tmp.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const CURRENT: MeasurementSet = {PCR0: digest('image'), PCR1: digest('kernel'), PCR2: digest('app')}
const OTHER: MeasurementSet = {PCR0: digest('other image'), PCR1: digest('kernel'), PCR2: digest('app')}

const {publicKeyDer: spki, privateKey} = generateRecipientKeyPair()
const rsa = {privateKey}

let server: RunningLocalKms
let state: LocalState
let admin: LocalIdentity
let host: LocalIdentity
let sim: NsmSimulator
let keyId: string
const tmp = tempDir('nle-kms-')
const statePath = join(tmp.dir, 'kms-state.json')

function client(identity: LocalIdentity, secret?: string): KMSClient {
  return new KMSClient({endpoint: server.url, region: 'us-east-1', credentials: {accessKeyId: identity.accessKeyId, secretAccessKey: secret ?? identity.secretAccessKey}, maxAttempts: 1})
}

async function failure(p: Promise<unknown>): Promise<{name: string; status: number | undefined}> {
  try {
    await p
  } catch (error) {
    const e = error as {name: string; $metadata?: {httpStatusCode?: number}}
    return {name: e.name, status: e.$metadata?.httpStatusCode}
  }
  throw new Error('expected the call to fail')
}

beforeAll(async () => {
  sim = new NsmSimulator({measurements: CURRENT})
  state = newState()
  ;[admin, host] = state.identities as [LocalIdentity, LocalIdentity]
  server = await startLocalKms({state, statePath, root: sim.root})
  const policy = starterPolicy(state.accountId, {project: 'demo', roleArn: host.arn, measurements: CURRENT, keepPrevious: 1, operations: ['Decrypt', 'GenerateDataKey']})
  const out = await client(admin).send(new CreateKeyCommand({Policy: JSON.stringify(policy), Description: 'test key'}))
  keyId = out.KeyMetadata!.KeyId!
})

afterAll(async () => {
  await server?.close()
  tmp.cleanup()
})

async function encrypt(plaintext: string, context?: Record<string, string>): Promise<Uint8Array> {
  const out = await client(host).send(new EncryptCommand({KeyId: keyId, Plaintext: Buffer.from(plaintext), EncryptionContext: context}))
  return out.CiphertextBlob!
}

describe('local KMS endpoint with the real SDK', () => {
  it('listens on loopback only', async () => {
    expect(server.host).toBe('127.0.0.1')
    await expect(startLocalKms({state: newState(), root: sim.root, host: '0.0.0.0'})).rejects.toSatisfy((e) => hasCode(e, 'KMS_NOT_LOOPBACK'))
  })

  it('Decrypt with a Recipient whose PCRs match: the plaintext is only inside CiphertextForRecipient', async () => {
    const blob = await encrypt('the patient question')
    const document = await sim.attestation({publicKey: spki})
    const out = await client(host).send(new DecryptCommand({CiphertextBlob: blob, KeyId: keyId, Recipient: {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: document}}))
    expect(out.Plaintext).toBeUndefined()
    expect(out.CiphertextForRecipient).toBeInstanceOf(Uint8Array)
    expect(Buffer.from(out.CiphertextForRecipient!).includes(Buffer.from('the patient question'))).toBe(false)
    expect(decryptEnvelope(out.CiphertextForRecipient!, rsa.privateKey).toString()).toBe('the patient question')
  })

  it('Decrypt with a Recipient whose PCRs differ → AccessDeniedException', async () => {
    const blob = await encrypt('x')
    const other = new NsmSimulator({measurements: OTHER, chain: sim.chain})
    const document = await other.attestation({publicKey: spki})
    expect(await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob, Recipient: {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: document}})))).toEqual({name: 'AccessDeniedException', status: 400})
  })

  it('Decrypt without a Recipient → denied when the only grant is conditioned', async () => {
    const blob = await encrypt('x')
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob})))).name).toBe('AccessDeniedException')
    // the administrator is not granted Decrypt either (NotAction in the starter policy)
    expect((await failure(client(admin).send(new DecryptCommand({CiphertextBlob: blob})))).name).toBe('AccessDeniedException')
  })

  it('refuses a document that does not chain to the configured root, or has no RSA public key', async () => {
    const blob = await encrypt('x')
    const stranger = new NsmSimulator({measurements: CURRENT})
    const foreign = await stranger.attestation({publicKey: spki})
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob, Recipient: {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: foreign}})))).name).toBe('ValidationException')
    const noKey = await sim.attestation({})
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob, Recipient: {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: noKey}})))).name).toBe('ValidationException')
  })

  it('GenerateDataKey and GenerateRandom with a Recipient return the secret only for the enclave', async () => {
    const document = await sim.attestation({publicKey: spki})
    const recipient = {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' as const, AttestationDocument: document}
    const gen = await client(host).send(new GenerateDataKeyCommand({KeyId: keyId, KeySpec: 'AES_256', Recipient: recipient}))
    expect(gen.Plaintext).toBeUndefined()
    const dataKey = decryptEnvelope(gen.CiphertextForRecipient!, rsa.privateKey)
    expect(dataKey).toHaveLength(32)
    const again = await client(host).send(new DecryptCommand({CiphertextBlob: gen.CiphertextBlob, Recipient: recipient}))
    expect(decryptEnvelope(again.CiphertextForRecipient!, rsa.privateKey).equals(dataKey)).toBe(true)
    const random = await client(host).send(new GenerateRandomCommand({NumberOfBytes: 48, Recipient: recipient}))
    expect(random.Plaintext).toBeUndefined()
    expect(decryptEnvelope(random.CiphertextForRecipient!, rsa.privateKey)).toHaveLength(48)
  })

  it('binds ciphertext to its key and encryption context', async () => {
    const blob = await encrypt('bound', {purpose: 'chat'})
    const recipient = {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' as const, AttestationDocument: await sim.attestation({publicKey: spki})}
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob, EncryptionContext: {purpose: 'other'}, Recipient: recipient})))).name).toBe('InvalidCiphertextException')
    const tampered = Buffer.from(blob)
    tampered[tampered.length - 1]! ^= 1
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: tampered, EncryptionContext: {purpose: 'chat'}, Recipient: recipient})))).name).toBe('InvalidCiphertextException')
    const second = await client(admin).send(new CreateKeyCommand({Policy: JSON.stringify(starterPolicy(state.accountId, {project: 'demo', roleArn: host.arn, measurements: CURRENT, keepPrevious: 1, operations: ['Decrypt']}))}))
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob, KeyId: second.KeyMetadata!.KeyId, EncryptionContext: {purpose: 'chat'}, Recipient: recipient})))).name).toBe('IncorrectKeyException')
    const ok = await client(host).send(new DecryptCommand({CiphertextBlob: blob, EncryptionContext: {purpose: 'chat'}, Recipient: recipient}))
    expect(decryptEnvelope(ok.CiphertextForRecipient!, rsa.privateKey).toString()).toBe('bound')
  })

  it('a bad SigV4 signature or an unknown access key → 4xx', async () => {
    const bad = await failure(client(host, 'not-the-secret-at-all-0000').send(new DescribeKeyCommand({KeyId: keyId})))
    expect(bad.name).toBe('InvalidSignatureException')
    expect(bad.status).toBeGreaterThanOrEqual(400)
    expect(bad.status).toBeLessThan(500)
    const unknown = await failure(new KMSClient({endpoint: server.url, region: 'us-east-1', credentials: {accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: 'x'.repeat(40)}, maxAttempts: 1}).send(new DescribeKeyCommand({KeyId: keyId})))
    expect(unknown).toEqual({name: 'UnrecognizedClientException', status: 400})
    const unsigned = await fetch(server.url, {method: 'POST', headers: {'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.DescribeKey'}, body: JSON.stringify({KeyId: keyId})})
    expect(unsigned.status).toBe(403)
    expect(((await unsigned.json()) as {__type: string}).__type).toBe('MissingAuthenticationTokenException')
  })

  it('explicit Deny wins over the attested Allow', async () => {
    const kms = client(admin)
    const created = await kms.send(new CreateKeyCommand({Policy: JSON.stringify(starterPolicy(state.accountId, {project: 'demo', roleArn: host.arn, measurements: CURRENT, keepPrevious: 1, operations: ['Decrypt']}))}))
    const id = created.KeyMetadata!.KeyId!
    const policy = parsePolicy((await kms.send(new GetKeyPolicyCommand({KeyId: id}))).Policy!)
    policy.Statement.push({Sid: 'deny-host', Effect: 'Deny', Principal: {AWS: host.arn}, Action: 'kms:Decrypt', Resource: '*'})
    await kms.send(new PutKeyPolicyCommand({KeyId: id, Policy: JSON.stringify(policy)}))
    const blob = (await client(host).send(new EncryptCommand({KeyId: id, Plaintext: Buffer.from('x')}))).CiphertextBlob!
    const recipient = {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' as const, AttestationDocument: await sim.attestation({publicKey: spki})}
    expect((await failure(client(host).send(new DecryptCommand({CiphertextBlob: blob, Recipient: recipient})))).name).toBe('AccessDeniedException')
  })

  it('aliases, DescribeKey, the lockout check on PutKeyPolicy, and atomic persisted state', async () => {
    const kms = client(admin)
    await kms.send(new CreateAliasCommand({AliasName: 'alias/demo', TargetKeyId: keyId}))
    expect((await failure(kms.send(new CreateAliasCommand({AliasName: 'alias/demo', TargetKeyId: keyId})))).name).toBe('AlreadyExistsException')
    const described = await kms.send(new DescribeKeyCommand({KeyId: 'alias/demo'}))
    expect(described.KeyMetadata!.KeyId).toBe(keyId)
    const aliases = await kms.send(new ListAliasesCommand({}))
    expect(aliases.Aliases!.map((a) => a.AliasName)).toContain('alias/demo')
    expect((await failure(kms.send(new DescribeKeyCommand({KeyId: 'alias/none'})))).name).toBe('NotFoundException')
    const lockout = {Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {AWS: host.arn}, Action: 'kms:Decrypt', Resource: '*'}]}
    expect((await failure(kms.send(new PutKeyPolicyCommand({KeyId: keyId, Policy: JSON.stringify(lockout)})))).name).toBe('MalformedPolicyDocumentException')
    expect((await failure(kms.send(new PutKeyPolicyCommand({KeyId: keyId, Policy: '{not json'})))).name).toBe('MalformedPolicyDocumentException')
    // persisted, private, and a restarted endpoint still decrypts old blobs
    expect(statSync(statePath).mode & 0o777).toBe(0o600)
    const saved = await loadState(statePath)
    expect(saved.state.keys[keyId]).toBeDefined()
    expect(saved.state.aliases['alias/demo']).toBe(keyId)
    const blob = await encrypt('survives a restart')
    const again = await startLocalKms({state: saved.state, root: sim.root})
    try {
      const out = await new KMSClient({endpoint: again.url, region: 'us-east-1', credentials: {accessKeyId: host.accessKeyId, secretAccessKey: host.secretAccessKey}, maxAttempts: 1}).send(
        new DecryptCommand({CiphertextBlob: blob, Recipient: {KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', AttestationDocument: await sim.attestation({publicKey: spki})}}),
      )
      expect(decryptEnvelope(out.CiphertextForRecipient!, rsa.privateKey).toString()).toBe('survives a restart')
    } finally {
      await again.close()
    }
    expect(readFileSync(statePath, 'utf8')).not.toContain('survives a restart')
  })
})
