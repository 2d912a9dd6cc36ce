// `nle model seal` as a user runs it, against a local KMS endpoint (the same AWS SDK calls as real
// KMS): the sealed folder opens with that KMS's Decrypt under the model's encryption context, and
// the failures come with their codes.
import {readFile, readdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CreateKeyCommand, DecryptCommand, KMSClient} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {type RunningLocalKms, startLocalKms} from '../src/lib/kms/local/server.js'
import {type LocalIdentity, newIdentity, newState} from '../src/lib/kms/local/state.js'
import {SEALED_MANIFEST_FILE, parseSealedManifest} from '../src/lib/model/seal/format.js'
import {openSealedModel} from '../src/lib/model/seal/open.js'
import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {CANARY, fetchFromDir, writeFakeModel} from '../src/test-support/sealed.js'
import {tempDir} from '../src/test-support/tmp.js'

const tmp = tempDir('nle-seal-cli-')
const project = join(tmp.dir, 'proj')
let kms: RunningLocalKms
let admin: LocalIdentity
let keyArn: string
let deniedKeyArn: string
let env: NodeJS.ProcessEnv

beforeAll(async () => {
  expect((await runCli(['init', project, '--name', 'sealcli'])).exitCode).toBe(0)
  await writeFakeModel(join(project, 'model'), {weightBytes: 200_000})
  const state = newState({region: 'eu-west-1'})
  admin = newIdentity(state.accountId, 'operator')
  state.identities.push(admin)
  kms = await startLocalKms({state, root: new NsmSimulator().root})
  const client = new KMSClient({endpoint: kms.url, region: 'eu-west-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}, maxAttempts: 1})
  const allow = (actions: string[]) => JSON.stringify({Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {AWS: admin.arn}, Action: actions, Resource: '*'}]})
  keyArn = (await client.send(new CreateKeyCommand({Policy: allow(['kms:*'])}))).KeyMetadata!.Arn!
  deniedKeyArn = (await client.send(new CreateKeyCommand({Policy: allow(['kms:DescribeKey', 'kms:PutKeyPolicy'])}))).KeyMetadata!.Arn!
  client.destroy()
  env = {AWS_ACCESS_KEY_ID: admin.accessKeyId, AWS_SECRET_ACCESS_KEY: admin.secretAccessKey, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined}
}, 60_000)

afterAll(async () => {
  await kms?.close()
  tmp.cleanup()
})

const seal = (...extra: string[]) => runCli(['model', 'seal', '--key-id', keyArn, '--region', 'eu-west-1', '--endpoint-url', kms.url, '--chunk-mib', '1', '--json', ...extra], {cwd: project, env})

describe('nle model seal', () => {
  it('seals model.path into model.sealedPath under a fresh data key; KMS Decrypt of its context opens it', async () => {
    const r = await seal()
    expect(r.exitCode, r.stderr).toBe(0)
    const out = jsonResult<{status: string; outDir: string; keyId: string; files: number; chunks: number; modelDigest: string}>(r)
    expect(out).toMatchObject({status: 'ok', outDir: join(project, 'model.sealed'), keyId: keyArn, files: 5})
    for (const name of await readdir(out.outDir)) expect((await readFile(join(out.outDir, name))).includes(CANARY), name).toBe(false)
    const sealed = parseSealedManifest(await readFile(join(out.outDir, SEALED_MANIFEST_FILE)))
    expect(sealed.key.encryptionContext).toEqual({'nle:model-manifest': out.modelDigest})
    const client = new KMSClient({endpoint: kms.url, region: 'eu-west-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}, maxAttempts: 1})
    try {
      const opened = await openSealedModel({
        sealed,
        expectedModelDigest: out.modelDigest,
        unwrap: async (wrapped, context) => (await client.send(new DecryptCommand({CiphertextBlob: wrapped, EncryptionContext: context, KeyId: keyArn}))).Plaintext!,
        fetch: fetchFromDir(out.outDir),
      })
      expect(opened.files.get('onnx/model.onnx_data')!.equals(await readFile(join(project, 'model', 'onnx', 'model.onnx_data')))).toBe(true)
    } finally {
      client.destroy()
    }
  })

  it('refuses to overwrite without --force (SEAL_OUTPUT_EXISTS, exit 6), replaces with it', async () => {
    const again = await seal()
    expect(again.exitCode).toBe(6)
    expect(jsonFailure(again).code).toBe('SEAL_OUTPUT_EXISTS')
    expect((await seal('--force')).exitCode).toBe(0)
  })

  it('a key that will not generate for the caller: SEAL_KEY_GENERATE_FAILED; no key at all: SEAL_NO_KEY', async () => {
    const denied = await runCli(['model', 'seal', '--key-id', deniedKeyArn, '--region', 'eu-west-1', '--endpoint-url', kms.url, '--out', join(tmp.dir, 'denied'), '--json'], {cwd: project, env})
    expect(jsonFailure(denied)).toMatchObject({code: 'SEAL_KEY_GENERATE_FAILED', details: {awsError: 'AccessDeniedException'}})
    await expect(readdir(join(tmp.dir, 'denied'))).rejects.toThrow()
    const none = await runCli(['model', 'seal', '--json'], {cwd: project, env})
    expect(none.exitCode).toBe(3)
    expect(jsonFailure(none).code).toBe('SEAL_NO_KEY')
  })

  it('a model changed since it was saved: SEAL_SOURCE_INVALID, nothing written', async () => {
    const config = join(project, 'model', 'config.json')
    const before = await readFile(config)
    await writeFile(config, '{"model_type":"gpt2","changed":true}')
    try {
      const r = await seal('--out', join(tmp.dir, 'changed'))
      expect(jsonFailure(r).code).toBe('SEAL_SOURCE_INVALID')
      await expect(readdir(join(tmp.dir, 'changed'))).rejects.toThrow()
    } finally {
      await writeFile(config, before)
    }
  })
})
