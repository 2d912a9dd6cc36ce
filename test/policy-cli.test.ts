/**
 * `nle policy show|apply|check` as a user runs them (the compiled CLI): file mode, each drift exit
 * code and the GitHub annotation format, and live mode against `nle kms serve`'s endpoint
 * (in-process here, on 127.0.0.1) through --endpoint-url with the SDK's standard credential chain.
 */
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CreateKeyCommand, GetKeyPolicyCommand, KMSClient} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {writeBuildLockfile} from '../src/lib/lockfile.js'
import {type RunningLocalKms, startLocalKms} from '../src/lib/kms/local/server.js'
import {type LocalIdentity, newState} from '../src/lib/kms/local/state.js'
import {type MeasurementSet, parsePolicy} from '../src/lib/kms/policy.js'
import {applyPolicy} from '../src/lib/kms/service.js'
import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const set = (label: string): MeasurementSet => ({PCR0: digest(`${label} 0`), PCR1: digest(`${label} 1`), PCR2: digest(`${label} 2`)})
const ACCOUNT = '111122223333'
const ROLE = `arn:aws:iam::${ACCOUNT}:role/demo-host`

const tmp = tempDir('nle-policy-')
afterAll(() => tmp.cleanup())

let n = 0
async function project(options: {measurements: MeasurementSet; role?: string; keyId?: string; policy?: unknown}): Promise<{dir: string; policyFile: string}> {
  const dir = join(tmp.dir, `p${n++}`)
  mkdirSync(dir)
  writeFileSync(
    join(dir, 'nle.yaml'),
    `version: 1\nname: demo\nkms:\n  hostRoleArn: ${options.role ?? ROLE}\n  keepPrevious: 1\n${options.keyId ? `  keyId: ${options.keyId}\n  region: us-east-1\n` : ''}`,
  )
  await lock(dir, options.measurements)
  const policyFile = join(dir, 'key-policy.json')
  writeFileSync(policyFile, JSON.stringify(options.policy ?? basePolicy(options.role), null, 2))
  return {dir, policyFile}
}

async function lock(dir: string, measurements: MeasurementSet): Promise<void> {
  // As a build writes it: the set it replaces moves into `previous`.
  await writeBuildLockfile(join(dir, 'nle.lock.json'), {version: 1, measurements, eif: {sha384: digest(`eif ${measurements.PCR0}`), size: 1, version: 4, signed: false}, builder: {name: 'test', version: '1'}, inputs: {}})
}

function basePolicy(role = ROLE): unknown {
  return {
    Version: '2012-10-17',
    Id: 'team-policy',
    Statement: [
      // The host role is kept out of the account's delegation (NotAction ["kms:Decrypt"] alone left ReEncrypt, CreateGrant, PutKeyPolicy to IAM).
      {Sid: 'Key administrators', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, NotAction: ['kms:Decrypt'], Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': role}}},
      {Sid: 'Audit', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:role/auditor`}, Action: 'kms:Describe*', Resource: '*', 'X-Team': {ticket: 42}},
    ],
  }
}

describe('nle policy (file mode)', () => {
  it('apply prints a diff and changes nothing; check exits 0 with a ::notice', async () => {
    const m = set('a')
    const {dir, policyFile} = await project({measurements: m})
    const before = readFileSync(policyFile, 'utf8')
    const dry = await runCli(['policy', 'apply', '--policy-file', policyFile], {cwd: dir})
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(dry.stdout).toContain('+      "Sid": "nle-demo-enclave-current"')
    expect(dry.stdout).toContain(`"kms:RecipientAttestation:PCR0": "${m.PCR0}"`)
    expect(dry.stdout).toContain('Nothing written')
    expect(readFileSync(policyFile, 'utf8')).toBe(before)
    await patchFile(dir, policyFile)
    const gh = await runCli(['policy', 'check', '--policy-file', policyFile, '--format', 'github'], {cwd: dir})
    expect(gh.exitCode, gh.stdout + gh.stderr).toBe(0)
    expect(gh.stdout).toMatch(/^::notice title=nle policy check::ok: /m)
  }, 60_000)

  it('check exits 1 on drift, with GitHub ::error annotations', async () => {
    const {dir, policyFile} = await project({measurements: set('old')})
    await patchFile(dir, policyFile)
    await lock(dir, set('new'))
    const gh = await runCli(['policy', 'check', '--policy-file', policyFile, '--format', 'github'], {cwd: dir})
    expect(gh.exitCode, gh.stdout + gh.stderr).toBe(1)
    expect(gh.stdout).toMatch(new RegExp(`^::error title=nle policy check%3A not-admitted,file=${policyFile.replace(/[/.]/g, '\\$&')}::Drift: `, 'm'))
  }, 60_000)

  it('check exits 2 on stale sets (::warning), and 1 with --strict', async () => {
    const {dir, policyFile} = await project({measurements: set('v1')})
    for (const v of ['v1', 'v2', 'v3']) {
      await lock(dir, set(v))
      await patchFile(dir, policyFile)
    }
    // Someone adds an old set by hand under nle's Sid scheme: an earlier build the lockfile records (v1), beyond kms.keepPrevious — stale, a warning.
    const policy = parsePolicy(readFileSync(policyFile, 'utf8'))
    const current = policy.Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!
    const v1 = set('v1')
    policy.Statement.push({...structuredClone(current), Sid: 'nle-demo-enclave-previous-2', Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': v1.PCR0, 'kms:RecipientAttestation:PCR1': v1.PCR1, 'kms:RecipientAttestation:PCR2': v1.PCR2}}})
    writeFileSync(policyFile, JSON.stringify(policy))
    const stale = await runCli(['policy', 'check', '--policy-file', policyFile, '--format', 'github'], {cwd: dir})
    expect(stale.exitCode, stale.stdout + stale.stderr).toBe(2)
    expect(stale.stdout).toMatch(/^::warning title=nle policy check%3A stale-set,file=.*::Statement "nle-demo-enclave-previous-2" still admits/m)
    const strict = await runCli(['policy', 'check', '--policy-file', policyFile, '--strict', '--json'], {cwd: dir})
    expect(strict.exitCode).toBe(1)
    expect(jsonResult<{verdict: string; exitCode: number}>(strict)).toMatchObject({verdict: 'stale', exitCode: 1})
  }, 60_000)

  it('a forged previous statement (nle\'s Sid, an image no build recorded): check exits 1 with unrecorded-measurements; apply shows it removed with the reason and drops it', async () => {
    const {dir, policyFile} = await project({measurements: set('A')})
    await patchFile(dir, policyFile)
    await lock(dir, set('B'))
    const rollout = await runCli(['policy', 'apply', '--policy-file', policyFile, '--apply'], {cwd: dir})
    expect(rollout.exitCode, rollout.stderr).toBe(0)
    expect(rollout.stdout).toContain('+      "Sid": "nle-demo-enclave-previous-1"')
    expect((await runCli(['policy', 'check', '--policy-file', policyFile], {cwd: dir})).exitCode).toBe(0)
    const evil = set('attacker')
    const policy = parsePolicy(readFileSync(policyFile, 'utf8'))
    const current = policy.Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!
    policy.Statement.push({...structuredClone(current), Sid: 'nle-demo-enclave-previous-2', Condition: {StringEqualsIgnoreCase: {'kms:RecipientAttestation:PCR0': evil.PCR0, 'kms:RecipientAttestation:PCR1': evil.PCR1, 'kms:RecipientAttestation:PCR2': evil.PCR2}}})
    writeFileSync(policyFile, JSON.stringify(policy, null, 2))
    const caught = await runCli(['policy', 'check', '--policy-file', policyFile, '--json'], {cwd: dir})
    expect(caught.exitCode, caught.stdout + caught.stderr).toBe(1)
    const report = jsonResult<{verdict: string; findings: {kind: string; sid: string; severity: string; message: string}[]}>(caught)
    expect(report.verdict).toBe('unsafe')
    expect(report.findings.map((f) => [f.kind, f.sid, f.severity])).toEqual([['unrecorded-measurements', 'nle-demo-enclave-previous-2', 'error']])
    expect(report.findings[0]!.message).toContain(`PCR0 ${evil.PCR0.slice(0, 12)}…`)
    const dry = await runCli(['policy', 'apply', '--policy-file', policyFile], {cwd: dir})
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(dry.stdout).toContain('-      "Sid": "nle-demo-enclave-previous-2"')
    expect(dry.stdout).toMatch(new RegExp(`^no longer admitted: PCR0 ${evil.PCR0.slice(0, 12)}… \\(nle-demo-enclave-previous-2: not the current build nor an earlier build the lockfile records`, 'm'))
    const applied = await runCli(['policy', 'apply', '--policy-file', policyFile, '--apply'], {cwd: dir})
    expect(applied.exitCode, applied.stderr).toBe(0)
    expect(readFileSync(policyFile, 'utf8')).not.toContain(evil.PCR0)
    expect(readFileSync(policyFile, 'utf8')).toContain(set('A').PCR0)
    expect((await runCli(['policy', 'check', '--policy-file', policyFile], {cwd: dir})).exitCode).toBe(0)
  }, 60_000)

  it('apply refuses all-zero PCRs without --allow-debug (exit 5, POLICY_DEBUG_PCRS)', async () => {
    const zero = {PCR0: '0'.repeat(96), PCR1: '0'.repeat(96), PCR2: '0'.repeat(96)}
    const {dir, policyFile} = await project({measurements: zero})
    const refused = await runCli(['policy', 'apply', '--policy-file', policyFile, '--json'], {cwd: dir})
    expect(refused.exitCode).toBe(5)
    expect(jsonFailure(refused).code).toBe('POLICY_DEBUG_PCRS')
  }, 60_000)
})

describe('nle policy with a sealed model on a separate key (kms.modelKeyId)', () => {
  it('apply --apply writes both files; check passes, then fails (exit 1) on a model-key statement that admits the host without attestation', async () => {
    const {dir, policyFile} = await project({measurements: set('sealed')})
    writeFileSync(join(dir, 'nle.yaml'), readFileSync(join(dir, 'nle.yaml'), 'utf8').replace('kms:\n', 'model:\n  sealed: true\nkms:\n  modelKeyId: alias/demo-model\n'))
    const modelFile = join(dir, 'model-key-policy.json')
    writeFileSync(modelFile, JSON.stringify(basePolicy(), null, 2))
    const missing = await runCli(['policy', 'check', '--policy-file', policyFile, '--json'], {cwd: dir})
    expect(missing.exitCode).toBe(3)
    expect(jsonFailure(missing).code).toBe('POLICY_CONFIG_MISSING')
    const applied = await runCli(['policy', 'apply', '--policy-file', policyFile, '--model-policy-file', modelFile, '--apply'], {cwd: dir})
    expect(applied.exitCode, applied.stderr).toBe(0)
    expect(applied.stdout).toContain(`Wrote ${policyFile}.`)
    expect(applied.stdout).toContain(`Wrote ${modelFile}.`)
    expect(parsePolicy(readFileSync(modelFile, 'utf8')).Statement.find((s) => s.Sid === 'nle-demo-enclave-current')!.Action).toEqual(['kms:Decrypt'])
    const ok = await runCli(['policy', 'check', '--policy-file', policyFile, '--model-policy-file', modelFile], {cwd: dir})
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0)
    expect(ok.stdout).toContain(`model key ${modelFile}:`)
    const shown = await runCli(['policy', 'show', '--policy-file', policyFile, '--model-policy-file', modelFile], {cwd: dir})
    expect(shown.stdout).toContain(`Model key policy of ${modelFile}`)

    const policy = parsePolicy(readFileSync(modelFile, 'utf8'))
    policy.Statement.push({Sid: 'host decrypts', Effect: 'Allow', Principal: {AWS: ROLE}, Action: 'kms:Decrypt', Resource: '*'})
    writeFileSync(modelFile, JSON.stringify(policy))
    const unsafe = await runCli(['policy', 'check', '--policy-file', policyFile, '--model-policy-file', modelFile, '--json'], {cwd: dir})
    expect(unsafe.exitCode).toBe(1)
    const report = jsonResult<{verdict: string; findings: {kind: string; sid: string; key: {purpose: string; source: string}}[]}>(unsafe)
    expect(report.verdict).toBe('unsafe')
    expect(report.findings).toEqual([expect.objectContaining({kind: 'unconditioned-access', sid: 'host decrypts', key: {purpose: 'model', source: modelFile}})])
  }, 60_000)
})

describe('nle policy check: what it must not call ok', () => {
  it('a malformed policy file is an input error (exit 3, POLICY_INVALID), with a GitHub ::error annotation — not drift', async () => {
    const {dir, policyFile} = await project({measurements: set('m')})
    writeFileSync(policyFile, '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Effect": "Deny"}]}')
    const gh = await runCli(['policy', 'check', '--policy-file', policyFile, '--format', 'github'], {cwd: dir})
    expect(gh.exitCode, gh.stdout + gh.stderr).toBe(3)
    expect(gh.stdout).toMatch(new RegExp(`^::error title=nle policy check%3A POLICY_INVALID,file=${policyFile.replace(/[/.]/g, '\\$&')}::`, 'm'))
    writeFileSync(policyFile, '{"Statement": [')
    const js = await runCli(['policy', 'check', '--policy-file', policyFile, '--json'], {cwd: dir})
    expect(js.exitCode).toBe(3)
    expect(jsonFailure(js).code).toBe('POLICY_BAD_JSON')
  }, 60_000)

  it('the default "account may do kms:*" statement is unconditioned access (exit 1 even without --strict), named in the headline', async () => {
    const m = set('root')
    const {dir, policyFile} = await project({measurements: m, policy: {Version: '2012-10-17', Statement: [{Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: 'kms:*', Resource: '*'}]}})
    await patchFile(dir, policyFile)
    const text = await runCli(['policy', 'check', '--policy-file', policyFile], {cwd: dir})
    expect(text.exitCode, text.stdout + text.stderr).toBe(1)
    expect(text.stdout.split('\n')[0]).toMatch(/^unconditioned access: Statement "Enable IAM User Permissions" grants the account/)
    expect(text.stdout).toContain('"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/demo-host"}')
    const js = await runCli(['policy', 'check', '--policy-file', policyFile, '--json'], {cwd: dir})
    expect(jsonResult<{verdict: string; findings: {kind: string}[]}>(js)).toMatchObject({verdict: 'unsafe', findings: [{kind: 'unconditioned-access'}]})
  }, 60_000)
})

/** Patch the policy file in-process (the CLI's own apply is exercised above). */
async function patchFile(dir: string, policyFile: string): Promise<void> {
  await applyPolicy({configFile: join(dir, 'nle.yaml'), source: {kind: 'file', path: policyFile}, apply: true, allowDebug: false, force: false})
}

describe('nle policy (live key through --endpoint-url)', () => {
  let server: RunningLocalKms
  let admin: LocalIdentity
  let host: LocalIdentity
  let keyId: string
  beforeAll(async () => {
    const state = newState()
    ;[admin, host] = state.identities as [LocalIdentity, LocalIdentity]
    server = await startLocalKms({state, root: new NsmSimulator().root})
    const kms = new KMSClient({endpoint: server.url, region: 'us-east-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}})
    const policy = {Version: '2012-10-17', Statement: [{Sid: 'Key administrators', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${state.accountId}:root`}, NotAction: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': host.arn}}}]}
    keyId = (await kms.send(new CreateKeyCommand({Policy: JSON.stringify(policy)}))).KeyMetadata!.KeyId!
  })
  afterAll(async () => server?.close())

  const env = (): NodeJS.ProcessEnv => ({
    AWS_ACCESS_KEY_ID: admin.accessKeyId,
    AWS_SECRET_ACCESS_KEY: admin.secretAccessKey,
    AWS_SESSION_TOKEN: '',
    AWS_PROFILE: '',
    AWS_REGION: 'us-east-1',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
    AWS_EC2_METADATA_DISABLED: 'true',
  })

  it('apply --apply writes the policy (role and caller resolved through IAM/STS), then check exits 0', async () => {
    const m = set('live')
    const {dir} = await project({measurements: m, role: host.arn, keyId})
    const url = server.url
    const applied = await runCli(['policy', 'apply', '--endpoint-url', url, '--apply', '--json'], {cwd: dir, env: env()})
    expect(applied.exitCode, applied.stdout + applied.stderr).toBe(0)
    expect(jsonResult<{written: string; lockout: {caller: string; lost: boolean}}>(applied)).toMatchObject({written: expect.stringMatching(/^arn:aws:kms:us-east-1:000000000000:key\//), lockout: {caller: admin.arn, lost: false}})
    const kms = new KMSClient({endpoint: url, region: 'us-east-1', credentials: {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}})
    const stored = parsePolicy((await kms.send(new GetKeyPolicyCommand({KeyId: keyId}))).Policy!)
    expect(stored.Statement.map((s) => s.Sid)).toEqual(['Key administrators', 'nle-demo-enclave-current'])
    const check = await runCli(['policy', 'check', '--endpoint-url', url], {cwd: dir, env: env()})
    expect(check.exitCode, check.stdout + check.stderr).toBe(0)
  }, 60_000)
})
