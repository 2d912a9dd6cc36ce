/**
 * The policy service in-process: file mode and a live key on the local endpoint (127.0.0.1),
 * reached through the real SDK clients (KMS, IAM, STS) with --endpoint-url semantics.
 */
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CreateKeyCommand, GetKeyPolicyCommand, KMSClient} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {parse as parseYaml} from 'yaml'

import {NsmSimulator} from '../attestation/simulator.js'
import {initProject} from '../init.js'
import {readLockfile, writeBuildLockfile} from '../lockfile.js'
import {tempDir} from '../../test-support/tmp.js'
import {formatCheck} from './check.js'
import {type RunningLocalKms, startLocalKms} from './local/server.js'
import {type LocalIdentity, newState} from './local/state.js'
import {type MeasurementSet, ownedStatement, parsePolicy} from './policy.js'
import {applyPolicy, runPolicyCheck, showPolicy} from './service.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const set = (label: string): MeasurementSet => ({PCR0: digest(`${label} 0`), PCR1: digest(`${label} 1`), PCR2: digest(`${label} 2`)})
const ACCOUNT = '111122223333'
const ROLE = `arn:aws:iam::${ACCOUNT}:role/demo-host`

const tmp = tempDir('nle-policy-svc-')
afterAll(() => tmp.cleanup())
let n = 0

async function project(options: {measurements: MeasurementSet; role?: string; keyId?: string; policy?: unknown}): Promise<{dir: string; config: string; policyFile: string}> {
  const dir = join(tmp.dir, `p${n++}`)
  mkdirSync(dir)
  writeFileSync(join(dir, 'nle.yaml'), `version: 1\nname: demo\nkms:\n  hostRoleArn: ${options.role ?? ROLE}\n  keepPrevious: 1\n${options.keyId ? `  keyId: ${options.keyId}\n  region: us-east-1\n` : ''}`)
  await lock(dir, options.measurements)
  const policyFile = join(dir, 'key-policy.json')
  writeFileSync(policyFile, JSON.stringify(options.policy ?? {Statement: [{Sid: 'admins', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, NotAction: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': options.role ?? ROLE}}}]}, null, 2))
  return {dir, config: join(dir, 'nle.yaml'), policyFile}
}

async function lock(dir: string, measurements: MeasurementSet): Promise<void> {
  // As a build writes it: the set it replaces moves into `previous`.
  await writeBuildLockfile(join(dir, 'nle.lock.json'), {version: 1, measurements, eif: {sha384: digest(`eif ${measurements.PCR0}`), size: 1, version: 4, signed: false}, builder: {name: 'test', version: '1'}, inputs: {}})
}

const fileApply = (p: {config: string; policyFile: string}, extra: Partial<Parameters<typeof applyPolicy>[0]> = {}): ReturnType<typeof applyPolicy> =>
  applyPolicy({configFile: p.config, source: {kind: 'file', path: p.policyFile}, apply: true, allowDebug: false, force: false, ...extra})
const fileCheck = (p: {config: string; policyFile: string}, strict = false): ReturnType<typeof runPolicyCheck> =>
  runPolicyCheck({configFile: p.config, source: {kind: 'file', path: p.policyFile}, strict, allowDebug: false})

describe('policy service, file mode', () => {
  it('rollout: drift → apply → ok; the previous set is kept, not stale', async () => {
    const p = await project({measurements: set('v1')})
    expect((await fileCheck(p)).exitCode).toBe(1)
    await fileApply(p)
    expect((await fileCheck(p)).exitCode).toBe(0)
    await lock(p.dir, set('v2'))
    const drift = await fileCheck(p)
    expect(drift).toMatchObject({verdict: 'drift', exitCode: 1})
    await fileApply(p)
    const ok = await fileCheck(p)
    expect(ok.exitCode).toBe(0)
    expect(ok.sets.map((s) => s.status)).toEqual(['current', 'previous'])
    const shown = await showPolicy({kind: 'file', path: p.policyFile}, {configFile: p.config})
    expect(shown.statements.map((s) => [s.sid, s.owned, s.status])).toEqual([
      ['admins', false, null],
      ['nle-demo-enclave-current', true, 'current'],
      ['nle-demo-enclave-previous-1', true, 'other'],
    ])
    expect(shown.exposures).toEqual([])
  })

  it('the rollout keeps what the lockfile records: build A, apply, build B, apply → A is previous (recorded by the build), check ok', async () => {
    const p = await project({measurements: set('A')})
    await fileApply(p)
    await lock(p.dir, set('B'))
    const lockfile = await readLockfile(join(p.dir, 'nle.lock.json'))
    expect(lockfile.previous).toEqual([{...set('A'), eifSha384: digest(`eif ${set('A').PCR0}`)}])
    const applied = await fileApply(p)
    expect(applied.sets.map((s) => [s.sid, s.set])).toEqual([
      ['nle-demo-enclave-current', set('B')],
      ['nle-demo-enclave-previous-1', set('A')],
    ])
    expect(applied.dropped).toEqual([])
    const ok = await fileCheck(p)
    expect(ok).toMatchObject({verdict: 'ok', exitCode: 0})
    expect(ok.sets.map((s) => [s.sid, s.status])).toEqual([
      ['nle-demo-enclave-current', 'current'],
      ['nle-demo-enclave-previous-1', 'previous'],
    ])
  })

  it('a forged "previous" statement (nle\'s Sid, an image no build recorded): check exits 1 (unrecorded-measurements), apply drops it and says why', async () => {
    const p = await project({measurements: set('A')})
    await fileApply(p)
    await lock(p.dir, set('B'))
    await fileApply(p)
    const evil = set('attacker')
    const forge = (sid: string, replace: boolean): void => {
      const policy = parsePolicy(readFileSync(p.policyFile, 'utf8'))
      const forged = {...ownedStatement({sid, set: evil, roleArn: ROLE, operations: ['Decrypt']})}
      policy.Statement = replace ? policy.Statement.map((s) => (s.Sid === sid ? forged : s)) : [...policy.Statement, forged]
      writeFileSync(p.policyFile, JSON.stringify(policy, null, 2))
    }
    for (const [sid, replace] of [['nle-demo-enclave-previous-2', false], ['nle-demo-enclave-previous-1', true]] as const) {
      forge(sid, replace)
      const caught = await fileCheck(p)
      expect(caught).toMatchObject({verdict: 'unsafe', exitCode: 1})
      const finding = caught.findings.find((f) => f.kind === 'unrecorded-measurements')!
      expect(finding).toMatchObject({severity: 'error', sid})
      expect(finding.message).toContain(JSON.stringify(sid))
      expect(finding.message).toContain(`PCR0 ${evil.PCR0.slice(0, 12)}…`)
      expect(caught.sets.find((s) => s.sid === sid)!.status).toBe('unrecorded')
      expect(formatCheck(caught, 'github', {file: p.policyFile})).toMatch(/^::error title=nle policy check%3A unrecorded-measurements,file=/m)
      // Without --apply: the diff shows the statement going, and the reason.
      const dry = await fileApply(p, {apply: false})
      expect(dry.diff).toContain(`-      "Sid": "${sid}"`)
      expect(dry.dropped).toEqual([expect.objectContaining({sid, set: evil, reason: 'unrecorded'})])
      expect(dry.removed).toEqual([evil])
      await fileApply(p)
      const after = parsePolicy(readFileSync(p.policyFile, 'utf8'))
      expect(JSON.stringify(after)).not.toContain(evil.PCR0)
      expect(await fileCheck(p)).toMatchObject({verdict: 'ok', exitCode: 0})
    }
    // Replacing the real previous statement took A out; apply does not bring it back from the lockfile (it only keeps what is admitted and recorded).
    expect(parsePolicy(readFileSync(p.policyFile, 'utf8')).Statement.filter((s) => s.Sid?.startsWith('nle-')).map((s) => s.Sid)).toEqual(['nle-demo-enclave-current'])
  })

  it('a lockfile without `previous` (written before it existed) keeps loading and records no earlier build: a previous statement is unrecorded until apply drops it', async () => {
    const p = await project({measurements: set('A')})
    await fileApply(p)
    await lock(p.dir, set('B'))
    await fileApply(p)
    // An older nle (or a hand-made lockfile) writes B without the field.
    const legacy = JSON.parse(readFileSync(join(p.dir, 'nle.lock.json'), 'utf8')) as Record<string, unknown>
    delete legacy.previous
    writeFileSync(join(p.dir, 'nle.lock.json'), JSON.stringify(legacy, null, 2))
    expect((await readLockfile(join(p.dir, 'nle.lock.json'))).previous).toBeUndefined()
    const caught = await fileCheck(p)
    expect(caught).toMatchObject({verdict: 'unsafe', exitCode: 1, findings: [expect.objectContaining({kind: 'unrecorded-measurements', sid: 'nle-demo-enclave-previous-1'})]})
    const applied = await fileApply(p)
    expect(applied.dropped).toEqual([expect.objectContaining({sid: 'nle-demo-enclave-previous-1', set: set('A'), reason: 'unrecorded'})])
    expect(await fileCheck(p)).toMatchObject({verdict: 'ok', exitCode: 0})
    // The next build starts the history again from B.
    await lock(p.dir, set('C'))
    expect((await readLockfile(join(p.dir, 'nle.lock.json'))).previous!.map((x) => x.PCR0)).toEqual([set('B').PCR0])
  })

  it('a foreign statement admitting an old set is stale (exit 2; 1 with strict)', async () => {
    const p = await project({measurements: set('v2')})
    await fileApply(p)
    const policy = parsePolicy(readFileSync(p.policyFile, 'utf8'))
    const old = set('v0')
    policy.Statement.push({Sid: 'hand-made', Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*', Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:ImageSha384': old.PCR0, 'kms:RecipientAttestation:PCR1': old.PCR1, 'kms:RecipientAttestation:PCR2': old.PCR2}}})
    writeFileSync(p.policyFile, JSON.stringify(policy))
    const stale = await fileCheck(p)
    expect(stale).toMatchObject({verdict: 'stale', exitCode: 2})
    expect(stale.findings).toEqual([expect.objectContaining({kind: 'stale-set', sid: 'hand-made', severity: 'warning'})])
    expect((await fileCheck(p, true)).exitCode).toBe(1)
    // apply leaves foreign statements alone, so it stays stale
    await fileApply(p)
    expect((await fileCheck(p)).exitCode).toBe(2)
  })

  it('outdated nle statements (e.g. operations changed in nle.yaml) are a warning', async () => {
    const p = await project({measurements: set('v1')})
    await fileApply(p)
    writeFileSync(p.config, readFileSync(p.config, 'utf8') + '  operations: [Decrypt, GenerateDataKey]\n')
    const r = await fileCheck(p)
    expect(r.exitCode).toBe(1) // GenerateDataKey is not admitted yet: drift
    expect(r.operations.map(({operation, admitted}) => ({operation, admitted}))).toEqual([
      {operation: 'Decrypt', admitted: true},
      {operation: 'GenerateDataKey', admitted: false},
    ])
  })

  it('--out writes even without changes; in-place apply writes only changes', async () => {
    const p = await project({measurements: set('v1')})
    const first = await fileApply(p)
    expect(first.written).toBe(p.policyFile)
    const second = await fileApply(p)
    expect(second).toMatchObject({changed: false, written: null, diff: ''})
    const out = join(p.dir, 'out.json')
    expect((await fileApply(p, {out})).written).toBe(out)
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(p.policyFile, 'utf8'))
  })

  it('missing role / unreadable policy file are coded errors', async () => {
    const p = await project({measurements: set('v1')})
    writeFileSync(p.config, 'version: 1\nname: demo\n')
    await expect(fileApply(p)).rejects.toMatchObject({code: 'POLICY_CONFIG_MISSING', exitCode: 3})
    await expect(fileCheck({config: p.config, policyFile: join(p.dir, 'missing.json')})).rejects.toMatchObject({code: 'POLICY_CONFIG_MISSING'})
    const q = await project({measurements: set('v1')})
    await expect(fileCheck({config: q.config, policyFile: join(q.dir, 'missing.json')})).rejects.toMatchObject({code: 'POLICY_FILE_IO', exitCode: 6})
  })

  it('formats GitHub annotations with escaped properties and messages', async () => {
    const p = await project({measurements: set('v1')})
    const report = await fileCheck(p)
    const text = formatCheck(report, 'github', {file: 'infra/key,policy.json'})
    expect(text).toMatch(/^::error title=nle policy check%3A not-admitted,file=infra\/key%2Cpolicy\.json::Drift: /m)
    expect(text.trim().split('\n').at(-1)).toBe('drift: the current measurements are not admitted.')
    expect(JSON.parse(formatCheck(report, 'json'))).toMatchObject({verdict: 'drift', exitCode: 1})
  })

  it('nle init writes a GitHub Actions workflow that runs the drift check on every change', async () => {
    const dir = join(tmp.dir, 'init')
    const result = await initProject({dir, name: 'demo'})
    expect(result.files.map((f) => f.path)).toContain('.github/workflows/nle-policy-check.yml')
    const workflow = parseYaml(readFileSync(join(dir, '.github/workflows/nle-policy-check.yml'), 'utf8')) as {on: Record<string, unknown>; jobs: Record<string, {steps: {run?: string}[]}>}
    expect(Object.keys(workflow.on)).toEqual(expect.arrayContaining(['push', 'pull_request']))
    expect(workflow.jobs['policy-check']!.steps.some((s) => s.run === 'npx nle policy check --format github')).toBe(true)
  })
})

describe('policy service, live key on the local endpoint', () => {
  let server: RunningLocalKms
  let admin: LocalIdentity
  let host: LocalIdentity
  let keyId: string
  const saved = {...process.env}
  beforeAll(async () => {
    const state = newState()
    ;[admin, host] = state.identities as [LocalIdentity, LocalIdentity]
    server = await startLocalKms({state, root: new NsmSimulator().root})
    Object.assign(process.env, {AWS_ACCESS_KEY_ID: admin.accessKeyId, AWS_SECRET_ACCESS_KEY: admin.secretAccessKey, AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true'})
    delete process.env.AWS_SESSION_TOKEN
    delete process.env.AWS_PROFILE
    const kms = new KMSClient({endpoint: server.url, region: 'us-east-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}})
    keyId = (await kms.send(new CreateKeyCommand({Policy: JSON.stringify({Version: '2012-10-17', Statement: [{Sid: 'admins', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${state.accountId}:root`}, NotAction: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': host.arn}}}]})}))).KeyMetadata!.KeyId!
  })
  afterAll(async () => {
    process.env = saved
    await server?.close()
  })

  it('apply resolves the role (IAM) and caller (STS), writes, and a second apply changes nothing', async () => {
    const p = await project({measurements: set('live'), role: host.arn, keyId})
    const aws = {kind: 'aws' as const, aws: {endpointUrl: server.url}}
    const dry = await applyPolicy({configFile: p.config, source: aws, apply: false, allowDebug: false, force: false})
    expect(dry).toMatchObject({changed: true, written: null, lockout: {caller: admin.arn, before: true, after: true, lost: false}})
    expect(dry.diff).toContain('+      "Sid": "nle-demo-enclave-current",')
    const applied = await applyPolicy({configFile: p.config, source: aws, apply: true, allowDebug: false, force: false})
    expect(applied.written).toMatch(/^arn:aws:kms:us-east-1:000000000000:key\//)
    const kms = new KMSClient({endpoint: server.url, region: 'us-east-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}})
    expect(parsePolicy((await kms.send(new GetKeyPolicyCommand({KeyId: keyId}))).Policy!).Statement.map((s) => s.Sid)).toEqual(['admins', 'nle-demo-enclave-current'])
    expect((await runPolicyCheck({configFile: p.config, source: aws, strict: false, allowDebug: false})).exitCode).toBe(0)
    expect((await applyPolicy({configFile: p.config, source: aws, apply: true, allowDebug: false, force: false})).changed).toBe(false)
  })

  it('apply --apply refuses when the policy changed between reading and writing', async () => {
    const p = await project({measurements: set('race'), role: host.arn, keyId})
    const state = server.state
    let reads = 0
    // Another writer edits the policy right after nle's first GetKeyPolicy.
    const before = state.keys[keyId]!.policy
    const race = await startLocalKms({
      state,
      root: new NsmSimulator().root,
      log: (line) => {
        if (line.startsWith('kms:GetKeyPolicy') && ++reads === 1) state.keys[keyId]!.policy = before.replace('"Statement"', '"Id": "edited", "Statement"')
      },
    })
    try {
      await expect(applyPolicy({configFile: p.config, source: {kind: 'aws', aws: {endpointUrl: race.url}}, apply: true, allowDebug: false, force: false})).rejects.toMatchObject({code: 'POLICY_CHANGED_MEANWHILE'})
      expect(reads).toBe(2)
      expect(state.keys[keyId]!.policy).toContain('"Id": "edited"')
      expect(state.keys[keyId]!.policy).not.toContain(set('race').PCR0)
    } finally {
      await race.close()
    }
  })

  it('an unknown role or key is refused with a code, before anything is written', async () => {
    const aws = {kind: 'aws' as const, aws: {endpointUrl: server.url}}
    const p = await project({measurements: set('live'), role: 'arn:aws:iam::000000000000:role/nobody', keyId})
    await expect(applyPolicy({configFile: p.config, source: aws, apply: true, allowDebug: false, force: false})).rejects.toMatchObject({code: 'KMS_ROLE_NOT_FOUND'})
    const q = await project({measurements: set('live'), role: host.arn, keyId: 'alias/none'})
    await expect(runPolicyCheck({configFile: q.config, source: aws, strict: false, allowDebug: false})).rejects.toMatchObject({code: 'KMS_KEY_NOT_FOUND'})
  })
})
