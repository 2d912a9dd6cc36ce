/**
 * A sealed model's key (docs/kms.md "A sealed model's key"): the enclave unseals the weights with
 * kms:Decrypt of their data key, which nle's statements admit only with the attestation of the
 * pinned image. On the project key the existing statements cover it (Decrypt is added to them
 * when kms.operations lacks it); a separate model key (kms.modelKeyId) gets its own statements,
 * Decrypt only, and `policy show|apply|check` read, patch, write and judge both documents, in
 * files and on live keys (the local endpoint, reached through the real SDK clients).
 */
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CreateAliasCommand, CreateKeyCommand, GetKeyPolicyCommand, KMSClient, PutKeyPolicyCommand} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {writeBuildLockfile} from '../lockfile.js'
import {expectCode} from '../../test-support/rejection.js'
import {tempDir} from '../../test-support/tmp.js'
import {formatCheck} from './check.js'
import {type RunningLocalKms, startLocalKms} from './local/server.js'
import {type LocalIdentity, newState} from './local/state.js'
import {type KeyPolicy, type MeasurementSet, type PolicyStatement, admits, ownedStatement, parsePolicy, validatePolicy} from './policy.js'
import {applyPolicy, projectOperations, runPolicyCheck, showPolicy} from './service.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const set = (label: string): MeasurementSet => ({PCR0: digest(`${label} 0`), PCR1: digest(`${label} 1`), PCR2: digest(`${label} 2`)})
const ACCOUNT = '111122223333'
const ROLE = `arn:aws:iam::${ACCOUNT}:role/demo-host`
const P = 'kms:RecipientAttestation:'

const tmp = tempDir('nle-model-key-')
afterAll(() => tmp.cleanup())
let n = 0

const adminOnly = (role: string): KeyPolicy => ({
  Version: '2012-10-17',
  Statement: [{Sid: 'admins', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, NotAction: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': role}}}],
})

interface Project {
  dir: string
  config: string
  policyFile: string
  modelPolicyFile: string
}

/** A project folder: nle.yaml (kms and model lines as given), a lockfile, the two policy files. */
async function project(options: {measurements: MeasurementSet; kms?: string; model?: string}): Promise<Project> {
  const dir = join(tmp.dir, `p${n++}`)
  mkdirSync(dir)
  writeFileSync(join(dir, 'nle.yaml'), `version: 1\nname: demo\n${options.model ? `model:\n${options.model}` : ''}kms:\n  hostRoleArn: ${ROLE}\n  keepPrevious: 1\n${options.kms ?? ''}`)
  await lock(dir, options.measurements)
  const policyFile = join(dir, 'key-policy.json')
  const modelPolicyFile = join(dir, 'model-key-policy.json')
  writeFileSync(policyFile, JSON.stringify(adminOnly(ROLE), null, 2))
  writeFileSync(modelPolicyFile, JSON.stringify(adminOnly(ROLE), null, 2))
  return {dir, config: join(dir, 'nle.yaml'), policyFile, modelPolicyFile}
}

async function lock(dir: string, measurements: MeasurementSet): Promise<void> {
  // As a build writes it: the set it replaces moves into `previous`.
  await writeBuildLockfile(join(dir, 'nle.lock.json'), {version: 1, measurements, eif: {sha384: digest(`eif ${measurements.PCR0}`), size: 1, version: 4, signed: false}, builder: {name: 'test', version: '1'}, inputs: {}})
}

const files = (p: Project, model = true) => ({kind: 'file' as const, path: p.policyFile, ...(model ? {modelPath: p.modelPolicyFile} : {})})
const apply = (p: Project, extra: Partial<Parameters<typeof applyPolicy>[0]> = {}) => applyPolicy({configFile: p.config, source: files(p), apply: true, allowDebug: false, force: false, ...extra})
const check = (p: Project, model = true) => runPolicyCheck({configFile: p.config, source: files(p, model), strict: false, allowDebug: false})
const readPolicy = (path: string): KeyPolicy => parsePolicy(readFileSync(path, 'utf8'))
const addStatement = (path: string, statement: PolicyStatement): void => {
  const policy = readPolicy(path)
  policy.Statement.push(statement)
  writeFileSync(path, JSON.stringify(policy, null, 2))
}

describe('the model data key on the project key', () => {
  it("nle's statement admits the enclave's Decrypt of the model data key (with its encryption context) only with the pinned PCRs", () => {
    const current = set('v1')
    const policy = validatePolicy({Statement: [...adminOnly(ROLE).Statement, ownedStatement({sid: 'nle-demo-enclave-current', set: current, roleArn: ROLE, operations: ['Decrypt']})]})
    // What the unsealing Decrypt carries besides the Recipient: the encryption context naming the manifest.
    const context = {'kms:EncryptionContext:nle:model-manifest': `sha256:${'ab'.repeat(32)}`}
    expect(admits(policy, {roleArn: ROLE, set: current, operation: 'Decrypt', extraKeys: context})).toBe(true)
    expect(admits(policy, {roleArn: ROLE, set: set('other image'), operation: 'Decrypt', extraKeys: context})).toBe(false)
    expect(admits(policy, {roleArn: ROLE, set: {...current, PCR2: digest('another model')}, operation: 'Decrypt', extraKeys: context})).toBe(false)
    expect(admits(policy, {roleArn: ROLE, set: {PCR0: '0'.repeat(96), PCR1: '0'.repeat(96), PCR2: '0'.repeat(96)}, operation: 'Decrypt', extraKeys: context})).toBe(false)
  })

  it('a sealed model adds Decrypt to what the project key admits; a separate model key does not', () => {
    expect(projectOperations({operations: ['GenerateDataKey'], sealed: true, modelKeyId: undefined})).toEqual(['GenerateDataKey', 'Decrypt'])
    expect(projectOperations({operations: ['Decrypt'], sealed: true, modelKeyId: undefined})).toEqual(['Decrypt'])
    expect(projectOperations({operations: ['GenerateDataKey'], sealed: false, modelKeyId: undefined})).toEqual(['GenerateDataKey'])
    expect(projectOperations({operations: ['GenerateDataKey'], sealed: true, modelKeyId: 'alias/model'})).toEqual(['GenerateDataKey'])
    // A model key that resolves to the project key: the project key's statements unseal.
    expect(projectOperations({operations: ['GenerateDataKey'], sealed: true, modelKeyId: 'alias/model'}, true)).toEqual(['GenerateDataKey', 'Decrypt'])
  })

  it('default kms.operations: sealing changes nothing in the policy, and check stays ok', async () => {
    const p = await project({measurements: set('v1')})
    await apply(p, {source: files(p, false)})
    const before = readFileSync(p.policyFile, 'utf8')
    writeFileSync(p.config, readFileSync(p.config, 'utf8').replace('kms:\n', 'model:\n  sealed: true\nkms:\n'))
    expect(await check(p, false)).toMatchObject({verdict: 'ok', exitCode: 0, keys: [{purpose: 'project', source: p.policyFile}]})
    expect(await apply(p, {source: files(p, false)})).toMatchObject({changed: false, model: null})
    expect(readFileSync(p.policyFile, 'utf8')).toBe(before)
  })

  it('kms.operations without Decrypt: a sealed model is drift until apply admits Decrypt', async () => {
    const p = await project({measurements: set('v1'), kms: '  operations: [GenerateDataKey]\n'})
    await apply(p, {source: files(p, false)})
    expect((await check(p, false)).exitCode).toBe(0)
    writeFileSync(p.config, readFileSync(p.config, 'utf8').replace('kms:\n', 'model:\n  sealed: true\nkms:\n'))
    const drift = await check(p, false)
    expect(drift).toMatchObject({verdict: 'drift', exitCode: 1})
    expect(drift.operations.map((o) => [o.operation, o.admitted])).toEqual([
      ['GenerateDataKey', true],
      ['Decrypt', false],
    ])
    const applied = await apply(p, {source: files(p, false)})
    expect(applied.changed).toBe(true)
    expect(readPolicy(p.policyFile).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!.Action).toEqual(['kms:GenerateDataKey', 'kms:Decrypt'])
    expect((await check(p, false)).exitCode).toBe(0)
  })
})

describe('a separate model key, policy files', () => {
  const sealed = {model: '  sealed: true\n', kms: '  modelKeyId: alias/demo-model\n'}

  it('apply writes both documents (Decrypt only on the model key); check passes both; show lists both', async () => {
    const p = await project({measurements: set('v1'), ...sealed})
    const dry = await apply(p, {apply: false})
    expect(dry).toMatchObject({key: 'project', changed: true, written: null, model: {key: 'model', source: p.modelPolicyFile, changed: true, written: null}})
    expect(dry.model!.diff).toContain('"kms:RecipientAttestation:PCR0"')
    const applied = await apply(p)
    expect([applied.written, applied.model?.written]).toEqual([p.policyFile, p.modelPolicyFile])
    const owned = readPolicy(p.modelPolicyFile).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!
    expect(owned).toMatchObject({Principal: {AWS: ROLE}, Action: ['kms:Decrypt'], Condition: {StringEqualsIgnoreCase: {[`${P}PCR0`]: set('v1').PCR0, [`${P}PCR1`]: set('v1').PCR1, [`${P}PCR2`]: set('v1').PCR2}}})
    const ok = await check(p)
    expect(ok).toMatchObject({verdict: 'ok', exitCode: 0, keys: [{purpose: 'project', source: p.policyFile}, {purpose: 'model', source: p.modelPolicyFile}]})
    expect(ok.headline).toContain('on the project key and the model key')
    expect(ok.operations.map((o) => [o.key?.purpose, o.operation, o.admitted])).toEqual([
      ['project', 'Decrypt', true],
      ['model', 'Decrypt', true],
    ])
    const shown = await showPolicy(files(p), {configFile: p.config})
    expect(shown.model?.statements.map((s) => [s.sid, s.owned, s.status])).toEqual([
      ['admins', false, null],
      ['nle-demo-enclave-current', true, 'current'],
    ])
    expect(Object.keys(shown.model!).sort()).toEqual(Object.keys(shown).filter((k) => k !== 'model').sort())
    // Idempotent on both.
    expect(await apply(p)).toMatchObject({changed: false, written: null, model: {changed: false, written: null}})
  })

  it('check fails when the model key admits the host role without attestation, naming the model key', async () => {
    const p = await project({measurements: set('v1'), ...sealed})
    await apply(p)
    addStatement(p.modelPolicyFile, {Sid: 'legacy host access', Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*'})
    const unsafe = await check(p)
    expect(unsafe).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(unsafe.findings).toEqual([expect.objectContaining({severity: 'error', kind: 'unconditioned-access', sid: 'legacy host access', key: {purpose: 'model', source: p.modelPolicyFile}})])
    expect(unsafe.findings[0]!.message.startsWith(`Model key ${p.modelPolicyFile}: `)).toBe(true)
    expect(unsafe.headline).toContain(p.modelPolicyFile)
    const github = formatCheck(unsafe, 'github', {file: 'infra/key.json', modelFile: 'infra/model-key.json'})
    expect(github).toMatch(/^::error title=nle policy check%3A unconditioned-access,file=infra\/model-key\.json::Model key /m)
    // apply keeps the foreign statement (nle never edits it), so the check keeps failing.
    await apply(p)
    expect((await check(p)).exitCode).toBe(1)
  })

  it("a forged previous statement on the model key (nle's Sid, an image no build recorded) fails check against the model key, and apply drops it there", async () => {
    const p = await project({measurements: set('v1'), ...sealed})
    await apply(p)
    await lock(p.dir, set('v2'))
    await apply(p)
    expect(await check(p)).toMatchObject({verdict: 'ok', exitCode: 0})
    const evil = set('attacker')
    addStatement(p.modelPolicyFile, ownedStatement({sid: 'nle-demo-enclave-previous-2', set: evil, roleArn: ROLE, operations: ['Decrypt']}))
    const caught = await check(p)
    expect(caught).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(caught.findings).toEqual([expect.objectContaining({severity: 'error', kind: 'unrecorded-measurements', sid: 'nle-demo-enclave-previous-2', key: {purpose: 'model', source: p.modelPolicyFile}})])
    expect(caught.findings[0]!.message.startsWith(`Model key ${p.modelPolicyFile}: `)).toBe(true)
    expect(caught.findings[0]!.message).toContain(`PCR0 ${evil.PCR0.slice(0, 12)}…`)
    const applied = await apply(p)
    expect(applied.dropped).toEqual([])
    expect(applied.model!.dropped).toEqual([expect.objectContaining({sid: 'nle-demo-enclave-previous-2', set: evil, reason: 'unrecorded'})])
    expect(readFileSync(p.modelPolicyFile, 'utf8')).not.toContain(evil.PCR0)
    expect(await check(p)).toMatchObject({verdict: 'ok', exitCode: 0})
  })

  it('a model key that does not admit the current measurements is drift of the model key', async () => {
    const p = await project({measurements: set('v1'), ...sealed})
    await apply(p)
    await lock(p.dir, set('v2'))
    // Only the project key's file is patched for v2 (the model key's is left behind).
    await applyPolicy({configFile: p.config, source: files(p), apply: false, out: p.policyFile, allowDebug: false, force: false})
    const drift = await check(p)
    expect(drift).toMatchObject({verdict: 'drift', exitCode: 1, headline: `drift: the current measurements are not admitted by the model key ${p.modelPolicyFile}.`})
    expect(drift.findings.filter((f) => f.kind === 'not-admitted').map((f) => f.key?.purpose)).toEqual(['model'])
    await apply(p)
    const ok = await check(p)
    expect(ok.exitCode).toBe(0)
    expect(ok.sets.map((s) => [s.key?.purpose, s.status])).toEqual([
      ['project', 'current'],
      ['project', 'previous'],
      ['model', 'current'],
      ['model', 'previous'],
    ])
  })

  it('--json keeps one shape: the same fields with one key and with two, every item naming its key', async () => {
    const one = await project({measurements: set('v1')})
    await apply(one, {source: files(one, false)})
    const two = await project({measurements: set('v1'), ...sealed})
    await apply(two)
    addStatement(two.modelPolicyFile, {Sid: 'open', Effect: 'Allow', Principal: '*', Action: 'kms:*', Resource: '*'})
    const a = JSON.parse(formatCheck(await check(one, false), 'json')) as Record<string, unknown>
    const b = JSON.parse(formatCheck(await check(two), 'json')) as Record<string, unknown>
    expect(Object.keys(b)).toEqual(Object.keys(a))
    for (const field of ['operations', 'sets', 'findings', 'exposures'] as const) {
      for (const item of b[field] as {key?: {purpose: string}}[]) expect(['project', 'model']).toContain(item.key?.purpose)
    }
    expect((b.findings as unknown[]).length).toBeGreaterThan(0)
  })

  it('the model key must be given: no --model-policy-file, or one without kms.modelKeyId, is an input error', async () => {
    const p = await project({measurements: set('v1'), ...sealed})
    await expectCode(check(p, false), 'POLICY_CONFIG_MISSING')
    await expectCode(apply(p, {source: files(p, false)}), 'POLICY_CONFIG_MISSING')
    const q = await project({measurements: set('v1'), model: '  sealed: true\n'})
    await expectCode(check(q), 'POLICY_CONFIG_MISSING')
  })

  it('a lockout on the model key refuses the whole apply: neither file is written', async () => {
    const p = await project({measurements: set('v1'), ...sealed})
    const admin = `arn:aws:iam::${ACCOUNT}:role/admin`
    // The admin's only kms:PutKeyPolicy on the model key is in a statement nle owns (and would replace).
    writeFileSync(p.modelPolicyFile, JSON.stringify({Statement: [{Sid: 'nle-demo-enclave-current', Effect: 'Allow', Principal: {AWS: admin}, Action: 'kms:PutKeyPolicy', Resource: '*'}]}))
    const before = [readFileSync(p.policyFile, 'utf8'), readFileSync(p.modelPolicyFile, 'utf8')]
    await expectCode(apply(p, {caller: admin}), 'POLICY_LOCKOUT')
    expect([readFileSync(p.policyFile, 'utf8'), readFileSync(p.modelPolicyFile, 'utf8')]).toEqual(before)
  })

  it('the same file for both keys is the project key (Decrypt added to its statements)', async () => {
    const p = await project({measurements: set('v1'), model: sealed.model, kms: `${sealed.kms}  operations: [GenerateDataKey]\n`})
    const r = await apply(p, {source: {kind: 'file', path: p.policyFile, modelPath: p.policyFile}})
    expect(r.model).toBeNull()
    expect(readPolicy(p.policyFile).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!.Action).toEqual(['kms:GenerateDataKey', 'kms:Decrypt'])
  })
})

describe('a separate model key, live keys on the local endpoint', () => {
  let server: RunningLocalKms
  let admin: LocalIdentity
  let host: LocalIdentity
  let kms: KMSClient
  let account: string
  const saved = {...process.env}
  const live = {kind: 'aws' as const, aws: {endpointUrl: ''}}
  beforeAll(async () => {
    const state = newState()
    ;[admin, host] = state.identities as [LocalIdentity, LocalIdentity]
    account = state.accountId
    server = await startLocalKms({state, root: new NsmSimulator().root})
    live.aws.endpointUrl = server.url
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: admin.accessKeyId, AWS_SECRET_ACCESS_KEY: admin.secretAccessKey, AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true'})
    delete process.env.AWS_SESSION_TOKEN
    delete process.env.AWS_PROFILE
    kms = new KMSClient({endpoint: server.url, region: 'us-east-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}})
  })
  afterAll(async () => {
    process.env = saved
    await server?.close()
  })

  const newKey = async (): Promise<string> => {
    const policy = {Version: '2012-10-17', Statement: [{Sid: 'admins', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${account}:root`}, NotAction: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': host.arn}}}]}
    return (await kms.send(new CreateKeyCommand({Policy: JSON.stringify(policy)}))).KeyMetadata!.Arn!
  }
  const liveProject = async (keyId: string, modelKeyId: string): Promise<Project> => {
    const dir = join(tmp.dir, `live${n++}`)
    mkdirSync(dir)
    writeFileSync(join(dir, 'nle.yaml'), `version: 1\nname: demo\nmodel:\n  sealed: true\nkms:\n  hostRoleArn: ${host.arn}\n  keyId: ${keyId}\n  modelKeyId: ${modelKeyId}\n  region: us-east-1\n  operations: [GenerateDataKey]\n`)
    await lock(dir, set('live'))
    return {dir, config: join(dir, 'nle.yaml'), policyFile: '', modelPolicyFile: ''}
  }
  const policyOf = async (keyId: string): Promise<KeyPolicy> => parsePolicy((await kms.send(new GetKeyPolicyCommand({KeyId: keyId}))).Policy!)

  it('apply --apply puts both policies; check reads both (and their grants); a host statement on the model key fails it', async () => {
    const [projectKey, modelKey] = [await newKey(), await newKey()]
    await kms.send(new CreateAliasCommand({AliasName: 'alias/demo-model', TargetKeyId: modelKey}))
    const p = await liveProject(projectKey, 'alias/demo-model')
    const applied = await applyPolicy({configFile: p.config, source: live, apply: true, allowDebug: false, force: false})
    expect([applied.written, applied.model?.written]).toEqual([projectKey, modelKey])
    expect((await policyOf(projectKey)).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!.Action).toEqual(['kms:GenerateDataKey'])
    expect((await policyOf(modelKey)).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!.Action).toEqual(['kms:Decrypt'])
    expect(await runPolicyCheck({configFile: p.config, source: live, strict: false, allowDebug: false})).toMatchObject({exitCode: 0, keys: [{purpose: 'project', source: projectKey}, {purpose: 'model', source: modelKey}]})

    const policy = await policyOf(modelKey)
    policy.Statement.push({Sid: 'host decrypts', Effect: 'Allow', Principal: {AWS: host.arn}, Action: 'kms:Decrypt', Resource: '*', Condition: {StringEqualsIgnoreCaseIfExists: {[`${P}PCR0`]: set('live').PCR0}}})
    await kms.send(new PutKeyPolicyCommand({KeyId: modelKey, Policy: JSON.stringify(policy)}))
    const unsafe = await runPolicyCheck({configFile: p.config, source: live, strict: false, allowDebug: false})
    expect(unsafe).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(unsafe.findings).toEqual([expect.objectContaining({kind: 'unconditioned-access', sid: 'host decrypts', key: {purpose: 'model', source: modelKey}})])
  })

  it('a model key id that resolves to the project key is the project key: one document, Decrypt added', async () => {
    const projectKey = await newKey()
    const p = await liveProject(projectKey, projectKey.split('/').at(-1)!)
    const applied = await applyPolicy({configFile: p.config, source: live, apply: true, allowDebug: false, force: false})
    expect(applied.model).toBeNull()
    expect((await policyOf(projectKey)).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!.Action).toEqual(['kms:GenerateDataKey', 'kms:Decrypt'])
    expect(await runPolicyCheck({configFile: p.config, source: live, strict: false, allowDebug: false})).toMatchObject({exitCode: 0, keys: [{purpose: 'project'}]})
  })
})
