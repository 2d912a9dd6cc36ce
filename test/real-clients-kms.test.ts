/**
 * Real KMS clients against `nle kms serve` (a child process on 127.0.0.1): AWS's own CLI and boto3
 * (test/real-clients/kms_boto3.py), with fake local credentials, for every operation the endpoint
 * serves, the CLI's and boto3's paginators, a request signed for another region, and Decrypt with
 * a Recipient whose CiphertextForRecipient `openssl cms -decrypt` opens without nle. A missing
 * client skips its test with a printed reason; .ci/run installs them all.
 */
import {createHash} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CreateKeyCommand, EncryptCommand, KMSClient} from '@aws-sdk/client-kms'
import {type ResultPromise, execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {type MeasurementSet, starterPolicy} from '../src/lib/kms/policy.js'
import {generateRecipientKeyPair} from '../src/lib/kms/recipient.js'
import {type LocalIdentity, type LocalState} from '../src/lib/kms/local/state.js'
import {BIN, REPO_ROOT} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {executables, pythonsWith, skipNote} from './real-clients/support.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const CURRENT: MeasurementSet = {PCR0: digest('image'), PCR1: digest('kernel'), PCR2: digest('app')}

const tmp = tempDir('nle-real-kms-')
let child: ResultPromise<{reject: false}>
let stderr = ''
let url: string
let admin: LocalIdentity
let host: LocalIdentity
const sim = new NsmSimulator({measurements: CURRENT})

const AWS = executables('aws')[0]
const OPENSSL = executables('openssl')[0]

beforeAll(async () => {
  const rootFile = join(tmp.dir, 'sim-root.pem')
  writeFileSync(rootFile, sim.rootPem)
  const statePath = join(tmp.dir, 'kms.json')
  child = execa(process.execPath, [BIN, 'kms', 'serve', '--port', '0', '--state', statePath, '--dev-root', rootFile], {reject: false, env: {NO_COLOR: '1'}})
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m) resolve(m[1]!)
    })
    void child.then((r) => reject(new Error(`kms serve exited ${r.exitCode}: ${String(r.stderr)}`)))
  })
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as LocalState
  ;[admin, host] = state.identities as [LocalIdentity, LocalIdentity]
}, 60_000)

/** Resolves once the endpoint's log has `count` lines matching `pattern` (the log is read as it arrives). */
function logged(pattern: RegExp, count: number): Promise<void> {
  const seen = (): number => (stderr.match(new RegExp(pattern.source, 'g')) ?? []).length
  return new Promise((resolve) => {
    if (seen() >= count) return resolve()
    const onData = (): void => {
      if (seen() < count) return
      child.stderr!.off('data', onData)
      resolve()
    }
    child.stderr!.on('data', onData)
  })
}

afterAll(async () => {
  child?.kill('SIGTERM')
  await child
  tmp.cleanup()
})

/** `aws kms …` with the given identity's fake credentials, nothing read from ~/.aws, no pager. */
async function aws(args: string[], who: LocalIdentity = admin, region = 'us-east-1'): Promise<{exitCode: number; stdout: string; stderr: string; json: () => Record<string, unknown>}> {
  const r = await execa(AWS!, ['kms', ...args, '--endpoint-url', url, '--output', 'json'], {
    reject: false,
    extendEnv: false,
    timeout: 60_000,
    env: {
      PATH: process.env.PATH,
      HOME: tmp.dir,
      AWS_ACCESS_KEY_ID: who.accessKeyId,
      AWS_SECRET_ACCESS_KEY: who.secretAccessKey,
      AWS_DEFAULT_REGION: region,
      AWS_REGION: region,
      // Newer CLIs read the endpoint from here; older ones (Debian 12's 2.9) need --endpoint-url.
      AWS_ENDPOINT_URL: url,
      AWS_CONFIG_FILE: join(tmp.dir, 'no-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(tmp.dir, 'no-credentials'),
      AWS_PAGER: '',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_MAX_ATTEMPTS: '1',
    },
  })
  const stdout = String(r.stdout)
  return {exitCode: r.exitCode ?? -1, stdout, stderr: String(r.stderr), json: () => JSON.parse(stdout) as Record<string, unknown>}
}

describe('AWS CLI against nle kms serve', () => {
  it('every operation, the list-keys paginator, an asymmetric key and another region refused', async (ctx) => {
    if (!AWS) return ctx.skip(skipNote('aws CLI', 'no `aws` on PATH (Debian package awscli)'))
    const version = await execa(AWS, ['--version'], {reject: false})
    process.stderr.write(`[real clients] ${String(version.stdout || version.stderr).trim()}\n`)
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const r = await aws(['create-key', '--description', `cli ${i}`, '--tags', `TagKey=n,TagValue=${i}`])
      expect(r.exitCode, r.stderr).toBe(0)
      ids.push((r.json().KeyMetadata as {KeyId: string}).KeyId)
    }
    // The CLI's paginator: one key a page, it follows NextMarker to the end.
    const before = (stderr.match(/kms:ListKeys by/g) ?? []).length
    const listed = await aws(['list-keys', '--page-size', '1'])
    expect(listed.exitCode, listed.stderr).toBe(0)
    const keys = (listed.json().Keys as {KeyId: string}[]).map((k) => k.KeyId)
    expect(keys).toEqual(expect.arrayContaining(ids))
    expect(new Set(keys).size).toBe(keys.length)
    // One ListKeys a page: at least one per key (the test's vitest timeout fails it otherwise).
    await logged(/kms:ListKeys by/, before + ids.length)
    // --max-items stops early and hands back a token that resumes where it stopped.
    const firstTwo = await aws(['list-keys', '--page-size', '1', '--max-items', '2'])
    const token = firstTwo.json().NextToken as string
    expect(token).toEqual(expect.any(String))
    const rest = await aws(['list-keys', '--page-size', '1', '--starting-token', token])
    expect([...(firstTwo.json().Keys as {KeyId: string}[]), ...(rest.json().Keys as {KeyId: string}[])].map((k) => k.KeyId)).toEqual(keys)

    const [a, b, c] = ids as [string, string, string]
    const blobFile = join(tmp.dir, 'cli-blob')
    const gen = await aws(['generate-data-key-without-plaintext', '--key-id', a, '--key-spec', 'AES_256'])
    expect(gen.exitCode, gen.stderr).toBe(0)
    expect(gen.json().Plaintext).toBeUndefined()
    writeFileSync(blobFile, Buffer.from(gen.json().CiphertextBlob as string, 'base64'))
    const moved = await aws(['re-encrypt', '--ciphertext-blob', `fileb://${blobFile}`, '--destination-key-id', b])
    expect(moved.exitCode, moved.stderr).toBe(0)
    expect(moved.json().SourceKeyId).toContain(a)
    expect(moved.json().KeyId).toContain(b)

    expect((await aws(['tag-resource', '--key-id', c, '--tags', 'TagKey=team,TagValue=ml', 'TagKey=env,TagValue=dev'])).exitCode).toBe(0)
    expect((await aws(['untag-resource', '--key-id', c, '--tag-keys', 'env'])).exitCode).toBe(0)
    expect((await aws(['list-resource-tags', '--key-id', c])).json().Tags).toEqual([
      {TagKey: 'n', TagValue: '2'},
      {TagKey: 'team', TagValue: 'ml'},
    ])

    expect((await aws(['disable-key', '--key-id', c])).exitCode).toBe(0)
    const disabled = await aws(['encrypt', '--key-id', c, '--plaintext', 'eA=='])
    expect(disabled.exitCode).not.toBe(0)
    expect(disabled.stderr).toContain('DisabledException')
    expect((await aws(['enable-key', '--key-id', c])).exitCode).toBe(0)
    const scheduled = await aws(['schedule-key-deletion', '--key-id', c, '--pending-window-in-days', '7'])
    expect(scheduled.json().KeyState).toBe('PendingDeletion')
    expect((await aws(['describe-key', '--key-id', c])).json().KeyMetadata).toMatchObject({KeyState: 'PendingDeletion', Enabled: false})
    const pending = await aws(['encrypt', '--key-id', c, '--plaintext', 'eA=='])
    expect(pending.stderr).toContain('KMSInvalidStateException')
    expect((await aws(['cancel-key-deletion', '--key-id', c])).exitCode).toBe(0)
    expect((await aws(['describe-key', '--key-id', c])).json().KeyMetadata).toMatchObject({KeyState: 'Disabled'})

    expect((await aws(['create-alias', '--alias-name', 'alias/cli', '--target-key-id', a])).exitCode).toBe(0)
    expect((await aws(['update-alias', '--alias-name', 'alias/cli', '--target-key-id', b])).exitCode).toBe(0)
    expect((await aws(['describe-key', '--key-id', 'alias/cli'])).json().KeyMetadata).toMatchObject({KeyId: b})
    expect((await aws(['list-aliases', '--key-id', b])).json().Aliases).toEqual([expect.objectContaining({AliasName: 'alias/cli', TargetKeyId: b})])
    expect((await aws(['delete-alias', '--alias-name', 'alias/cli'])).exitCode).toBe(0)
    expect((await aws(['describe-key', '--key-id', 'alias/cli'])).stderr).toContain('NotFoundException')
    expect((await aws(['list-key-policies', '--key-id', a])).json().PolicyNames).toEqual(['default'])

    const asymmetric = await aws(['create-key', '--key-spec', 'RSA_2048', '--key-usage', 'ENCRYPT_DECRYPT'])
    expect(asymmetric.exitCode).not.toBe(0)
    expect(asymmetric.stderr).toContain('UnsupportedOperationException')
    expect(asymmetric.stderr).toContain('symmetric')
    const otherRegion = await aws(['list-keys'], admin, 'eu-west-1')
    expect(otherRegion.exitCode).not.toBe(0)
    expect(otherRegion.stderr).toContain('InvalidSignatureException')
    process.stderr.write(`[real clients] aws CLI, another region: ${otherRegion.stderr.trim()}\n[real clients] aws CLI, asymmetric key: ${asymmetric.stderr.trim()}\n`)
  }, 180_000)
})

describe('boto3 against nle kms serve', () => {
  it('every operation, the paginators, another region, and Decrypt with a Recipient that openssl opens', async (ctx) => {
    const pythons = await pythonsWith(['boto3', 'botocore'])
    if (pythons.length === 0) return ctx.skip(skipNote('boto3', 'no python3 that imports boto3 (Debian package python3-boto3)'))
    if (!OPENSSL) return ctx.skip(skipNote('boto3', 'no `openssl` to open CiphertextForRecipient independently'))
    const {publicKeyDer, privateKey} = generateRecipientKeyPair()
    const keyFile = join(tmp.dir, 'recipient-key.pem')
    writeFileSync(keyFile, privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
    const sdk = (who: LocalIdentity): KMSClient => new KMSClient({endpoint: url, region: 'us-east-1', credentials: {accessKeyId: who.accessKeyId, secretAccessKey: who.secretAccessKey}, maxAttempts: 1})
    const policy = starterPolicy('000000000000', {project: 'real-clients', roleArn: host.arn, measurements: CURRENT, keepPrevious: 1, operations: ['Decrypt']})
    const keyId = (await sdk(admin).send(new CreateKeyCommand({Policy: JSON.stringify(policy)}))).KeyMetadata!.KeyId!
    const secret = `secret for the enclave ${Date.now()}`
    const ciphertext = (await sdk(host).send(new EncryptCommand({KeyId: keyId, Plaintext: Buffer.from(secret)}))).CiphertextBlob!
    const foreign = new NsmSimulator({measurements: CURRENT}) // a root kms serve does not trust

    for (const {python, versions} of pythons) {
      const job = {
        endpoint: url,
        region: 'us-east-1',
        admin: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey},
        host: {accessKeyId: host.accessKeyId, secretAccessKey: host.secretAccessKey},
        recipient: {
          keyId,
          ciphertext: Buffer.from(ciphertext).toString('base64'),
          document: Buffer.from(await sim.attestation({publicKey: publicKeyDer})).toString('base64'),
          foreignDocument: Buffer.from(await foreign.attestation({publicKey: publicKeyDer})).toString('base64'),
        },
      }
      const r = await execa(python, [join(REPO_ROOT, 'test/real-clients/kms_boto3.py')], {input: JSON.stringify(job), reject: false, timeout: 120_000, env: {AWS_CONFIG_FILE: join(tmp.dir, 'no-config'), AWS_SHARED_CREDENTIALS_FILE: join(tmp.dir, 'no-credentials'), AWS_EC2_METADATA_DISABLED: 'true'}})
      expect(r.exitCode, String(r.stderr)).toBe(0)
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the script's JSON, checked field by field below
      const out = JSON.parse(String(r.stdout)) as Record<string, any>
      process.stderr.write(`[real clients] ${python} boto3 ${versions.boto3} botocore ${versions.botocore}: Recipient via ${out.recipient.via}; another region → ${JSON.stringify(out.otherRegion)}; refused Recipient → ${JSON.stringify(out.refusedRecipient)}\n`)

      expect(out.listKeys.pages).toBeGreaterThanOrEqual(2)
      expect(out.listKeys.keyIds).toEqual(expect.arrayContaining(out.listKeys.created))
      expect(out.withoutPlaintext.hasPlaintext).toBe(false)
      expect(out.reEncrypt).toMatchObject({same: true, bytes: 32})
      expect(out.reEncrypt.decryptedBy).toBe(out.reEncrypt.keyId)
      expect(out.tags).toEqual([{TagKey: 'n', TagValue: 'two'}])
      expect(out.states).toMatchObject({disabled: {code: 'DisabledException'}, scheduled: 'PendingDeletion', pending: {code: 'KMSInvalidStateException'}, described: 'PendingDeletion', hasDeletionDate: true, afterCancel: 'Disabled'})
      expect(out.aliases['after update']).toBe(out.listKeys.created[1])
      expect(out.aliases['after delete']).toMatchObject({code: 'NotFoundException'})
      expect(out.keyPolicies).toEqual(['default'])
      expect(out.asymmetric).toMatchObject({code: 'UnsupportedOperationException', status: 400})
      expect(out.otherRegion).toMatchObject({code: 'InvalidSignatureException', status: 400})

      // The Recipient path: no plaintext in the answer; openssl opens the CMS envelope with the key alone.
      expect(out.recipient).toMatchObject({status: 200, hasPlaintext: false})
      const envelope = join(tmp.dir, `envelope-${versions.botocore}.der`)
      writeFileSync(envelope, Buffer.from(out.recipient.ciphertextForRecipient as string, 'base64'))
      const opened = await execa(OPENSSL, ['cms', '-decrypt', '-inform', 'DER', '-in', envelope, '-inkey', keyFile], {reject: false, encoding: 'buffer'})
      expect(opened.exitCode, Buffer.from(opened.stderr).toString()).toBe(0)
      expect(Buffer.from(opened.stdout).toString()).toBe(secret)

      // A refused Recipient speaks KMS's language: no nle error code in the message.
      expect(out.refusedRecipient).toMatchObject({status: 400, type: 'ValidationException'})
      expect(out.refusedRecipient.message).toMatch(/attestation document/i)
      expect(out.refusedRecipient.message).not.toMatch(/\b(ATTEST|CMS|KMS|NLE)_[A-Z_]+/)
      // ReEncrypt carries no attestation: the attested-only key policy refuses it.
      expect(out.reEncryptAttestedKey).toEqual({status: 400, type: 'AccessDeniedException'})
    }
  }, 300_000)
})
