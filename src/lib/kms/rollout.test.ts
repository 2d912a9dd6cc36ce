/**
 * A rollout end to end through the real build (`nle build --builder native`, no blobs: the
 * lockfile is written as `nle build` writes it) and the real policy service on a policy file:
 * build A, apply, build B, apply → A stays admitted as previous because the lockfile records it,
 * and check passes; a statement named like nle's previous one, pinning an image no build
 * recorded, fails check (unrecorded-measurements) and apply drops it.
 */
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {type FakeHost, fakeHost, fakeProject} from '../../../test/fakes/host.js'
import {loadConfig} from '../config/load.js'
import {buildProject} from '../host/build.js'
import {readLockfile} from '../lockfile.js'
import {type MeasurementSet, ownedStatement, parsePolicy} from './policy.js'
import {applyPolicy, runPolicyCheck} from './service.js'

const ACCOUNT = '111122223333'
const ROLE = `arn:aws:iam::${ACCOUNT}:role/demo-host`

let host: FakeHost | undefined
afterEach(() => host?.cleanup())

const pcrs = ({PCR0, PCR1, PCR2}: MeasurementSet): MeasurementSet => ({PCR0, PCR1, PCR2})

describe('rollout through nle build and nle policy', () => {
  it('build A, apply, build B, apply: A is kept as previous (the build recorded it), check ok; a forged previous is caught and dropped', async () => {
    host = fakeHost({NITRO_CLI_BLOBS: undefined})
    const dir = await fakeProject(host, 'demo', (t) => t.replace(/^ {2}# hostRoleArn: .*$/m, `  hostRoleArn: ${ROLE}`))
    const config = join(dir, 'nle.yaml')
    const lockPath = join(dir, 'nle.lock.json')
    const policyFile = join(dir, 'key-policy.json')
    writeFileSync(policyFile, JSON.stringify({Statement: [{Sid: 'admins', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, NotAction: 'kms:Decrypt', Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': ROLE}}}]}))
    const build = async (): Promise<void> => {
      await buildProject({loaded: await loadConfig(config), ctx: {env: host!.env}, builder: 'native'})
    }
    const apply = (extra: {apply?: boolean} = {}) => applyPolicy({configFile: config, source: {kind: 'file', path: policyFile}, apply: extra.apply ?? true, allowDebug: false, force: false})
    const check = () => runPolicyCheck({configFile: config, source: {kind: 'file', path: policyFile}, strict: false, allowDebug: false})

    await build()
    const a = await readLockfile(lockPath)
    expect(a.previous).toBeUndefined()
    await apply()
    expect(await check()).toMatchObject({verdict: 'ok', exitCode: 0})

    // Another image: the enclave server's vsock port is in its environment, so in the measurements.
    writeFileSync(config, readFileSync(config, 'utf8').replace(/^ {2}vsockPort: 5000/m, '  vsockPort: 5005'))
    await build()
    const b = await readLockfile(lockPath)
    expect(b.measurements.PCR0).not.toBe(a.measurements.PCR0)
    expect(b.previous).toEqual([{...a.measurements, eifSha384: a.eif.sha384}])
    expect((await check()).verdict).toBe('drift')
    const rolled = await apply()
    expect(rolled.sets.map((s) => [s.sid, pcrs(s.set)])).toEqual([
      ['nle-demo-enclave-current', pcrs(b.measurements)],
      ['nle-demo-enclave-previous-1', pcrs(a.measurements)],
    ])
    const ok = await check()
    expect(ok).toMatchObject({verdict: 'ok', exitCode: 0})
    expect(ok.sets.map((s) => s.status)).toEqual(['current', 'previous'])

    // Someone who can write the policy adds an image of their own under nle's naming.
    const evil: MeasurementSet = {PCR0: 'e'.repeat(96), PCR1: a.measurements.PCR1, PCR2: a.measurements.PCR2}
    const policy = parsePolicy(readFileSync(policyFile, 'utf8'))
    policy.Statement.push(ownedStatement({sid: 'nle-demo-enclave-previous-2', set: evil, roleArn: ROLE, operations: ['Decrypt']}))
    writeFileSync(policyFile, JSON.stringify(policy, null, 2))
    const caught = await check()
    expect(caught).toMatchObject({verdict: 'unsafe', exitCode: 1})
    expect(caught.findings.map((f) => [f.kind, f.sid, f.severity])).toEqual([['unrecorded-measurements', 'nle-demo-enclave-previous-2', 'error']])
    const dropped = await apply()
    expect(dropped.dropped).toEqual([expect.objectContaining({sid: 'nle-demo-enclave-previous-2', reason: 'unrecorded'})])
    expect(readFileSync(policyFile, 'utf8')).not.toContain(evil.PCR0)
    expect(await check()).toMatchObject({verdict: 'ok', exitCode: 0})
  }, 120_000)
})
