import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {type FakeHost, fakeHost} from '../../../test/fakes/host.js'
import {ExitCode, isNleError} from '../errors.js'
import {
  NitroCliError,
  attachConsole,
  buildEnclave,
  describeEif,
  describeEnclaves,
  nitroCliVersion,
  parseNitroErrors,
  runEnclave,
  terminateEnclave,
} from './nitro-cli.js'

let host: FakeHost
afterEach(() => host?.cleanup())

async function failure(p: Promise<unknown>): Promise<NitroCliError> {
  try {
    await p
  } catch (error) {
    if (error instanceof NitroCliError) return error
    throw error
  }
  throw new Error('expected a failure')
}

/** A small EIF made by the fake build-enclave (an image must be "built" first). */
async function eif(h: FakeHost): Promise<string> {
  h.writeState('images.json', {'app:latest': {Id: 'sha256:' + 'ab'.repeat(32)}})
  const out = join(h.dir, 'app.eif')
  await buildEnclave({env: h.env}, {dockerUri: 'app', outputFile: out})
  return out
}

describe('nitro-cli errors', () => {
  // Shape of a run-enclave failure in the enclave process: its block, then the CLI's E39 (issue #232).
  const E26_THEN_E39 = `Start allocating memory...
[ E26 ] Insufficient memory requested. User provided \`memory\` is 64 MB, but based on the EIF file size, the minimum memory should be 1024 MB

For more details, please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E26

If you open a support ticket, please provide the error log found at "/var/log/nitro_enclaves/err2026-11-26T08:30:00.000000000+00:00.log"
[ E39 ] Enclave process connection failure. Such error appears when the enclave manager fails to connect to at least one enclave process for retrieving the description information.

For more details, please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E39
`

  it('takes the first [ Exx ] as the root cause, keeping multi-line texts whole', () => {
    const blocks = parseNitroErrors(E26_THEN_E39)
    expect(blocks.map((b) => b.code)).toEqual(['E26', 'E39'])
    expect(blocks[0]!.text).toMatch(/minimum memory should be 1024 MB$/)
    const e27 = parseNitroErrors("[ E27 ] Insufficient memory available. User provided `memory` is 9 MB, which is more.\nYou can increase it.\n\nFor more")
    expect(e27[0]!.text).toBe('Insufficient memory available. User provided `memory` is 9 MB, which is more.\nYou can increase it.')
  })

  it('maps E26-then-E39 from run-enclave to the 4x rule with a hint to run nle allocator', async () => {
    host = fakeHost()
    const path = await eif(host)
    const err = await failure(runEnclave({env: host.env}, {eifPath: path, cpuCount: 2, memoryMiB: 0, cid: 16, debug: false}))
    expect(err.code).toBe('NITRO_MEMORY_BELOW_EIF_RULE')
    expect(err.nitroErrors).toEqual(['E26', 'E39'])
    expect(err.toolExitCode).toBe(39)
    expect(err.exitCode).toBe(ExitCode.TOOL)
    expect(err.hint).toMatch(/4x the EIF file size \(nitro-cli wants >= 4 MiB\).*nle allocator --apply/)
    expect(err.toJSON().details).toMatchObject({tool: 'nitro-cli', nitroError: 'E26', nitroErrors: ['E26', 'E39'], argv: ['run-enclave', '--cpu-count', '2', '--memory', '0', '--enclave-cid', '16', '--eif-path', path]})
  })

  it.each([
    ['E27', {FAKE_NITRO_POOL_MIB: '100'}, 'NITRO_MEMORY_POOL_TOO_SMALL', /memory_mib/],
    ['E22', {FAKE_NITRO_CPU_POOL: '1'}, 'NITRO_CPU_POOL_TOO_SMALL', /cpu_count/],
    ['E35', {FAKE_NITRO_FAIL: 'run-enclave:E35'}, 'NITRO_HUGEPAGES_UNAVAILABLE', /hugepages/],
    ['E36', {FAKE_NITRO_FAIL: 'run-enclave:E36'}, 'NITRO_ENCLAVE_BOOT_FAILED', /nle console/],
    ['E59', {FAKE_NITRO_FAIL: 'run-enclave:E59'}, 'NITRO_SIGNING_CERT_INVALID', /certificate/],
  ])('maps a run-enclave %s (then E39) to a specific code and hint', async (nitroCode, env, code, hint) => {
    host = fakeHost(env)
    const path = await eif(host)
    const err = await failure(runEnclave({env: host.env}, {eifPath: path, cpuCount: 2, memoryMiB: 512, cid: 16, debug: false}))
    expect(err.code).toBe(code)
    expect(err.nitroErrors).toEqual([nitroCode, 'E39'])
    expect(err.hint).toMatch(hint)
  })

  it('maps E19 on the device to the driver / instance-type hint, and on a file to that file', async () => {
    host = fakeHost({FAKE_NITRO_FAIL: 'run-enclave:E19'})
    const err = await failure(runEnclave({env: host.env}, {eifPath: 'x.eif', cpuCount: 2, memoryMiB: 512, cid: 16, debug: false}))
    expect(err.code).toBe('NITRO_DEVICE_MISSING')
    expect(err.hint).toMatch(/\/dev\/nitro_enclaves.*instance type.*`ne` group/)
    host.cleanup()
    host = fakeHost()
    const missing = await failure(runEnclave({env: host.env}, {eifPath: '/nope.eif', cpuCount: 2, memoryMiB: 512, cid: 16, debug: false}))
    expect(missing.nitroError).toBe('E19')
    expect(missing.hint).toMatch(/could not use \/nope\.eif/)
  })

  it('maps E50 (image neither local nor pullable) and E49 from build-enclave', async () => {
    host = fakeHost()
    const pull = await failure(buildEnclave({env: host.env}, {dockerUri: 'absent:1', outputFile: join(host.dir, 'x.eif')}))
    expect(pull).toMatchObject({code: 'NITRO_DOCKER_PULL_FAILED', nitroError: 'E50', toolExitCode: 50})
    expect(pull.hint).toMatch(/nle build/)
    host.cleanup()
    host = fakeHost({FAKE_NITRO_FAIL: 'build-enclave:E49'})
    expect((await failure(buildEnclave({env: host.env}, {dockerUri: 'a', outputFile: 'x.eif'}))).code).toBe('NITRO_DOCKER_BUILD_FAILED')
  })
})

describe('nitro-cli calls', () => {
  it('build-enclave: exact argv (signing flags when given) and the Measurements parsed', async () => {
    host = fakeHost()
    host.writeState('images.json', {'app:v1': {Id: 'sha256:' + 'cd'.repeat(32)}})
    const out = join(host.dir, 'a.eif')
    const r = await buildEnclave({env: host.env}, {dockerUri: 'app:v1', outputFile: out, signingCertificate: '/k/cert.pem', privateKey: '/k/key.pem'})
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['build-enclave', '--docker-uri', 'app:v1', '--output-file', out, '--signing-certificate', '/k/cert.pem', '--private-key', '/k/key.pem'])
    expect(r.measurements.HashAlgorithm).toBe('Sha384 { ... }')
    expect(r.measurements.PCR0).toMatch(/^[0-9a-f]{96}$/)
    expect(await nitroCliVersion({env: host.env})).toBe('1.4.2')
    const d = await describeEif({env: host.env}, out)
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['describe-eif', '--eif-path', out])
    expect(d).toMatchObject({EifVersion: 4, IsSigned: false, CheckCRC: true, Measurements: r.measurements})
  })

  it('run / describe / terminate: argv and the EnclaveRunInfo / EnclaveDescribeInfo / EnclaveTerminateInfo shapes', async () => {
    host = fakeHost({FAKE_NITRO_EXTRA_MIB: '510'})
    const path = await eif(host)
    expect(await describeEnclaves({env: host.env})).toEqual([])
    const run = await runEnclave({env: host.env}, {eifPath: path, cpuCount: 2, memoryMiB: 514, cid: 17, debug: true, name: 'demo'})
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['run-enclave', '--cpu-count', '2', '--memory', '514', '--enclave-cid', '17', '--eif-path', path, '--debug-mode', '--enclave-name', 'demo'])
    // MemoryMiB is what was allocated, which can exceed the request (issue #602).
    expect(run).toMatchObject({EnclaveName: 'demo', EnclaveCID: 17, NumberOfCPUs: 2, CPUIDs: [1, 5], MemoryMiB: 1024})
    const list = await describeEnclaves({env: host.env})
    expect(list).toHaveLength(1)
    expect(list[0]).toMatchObject({EnclaveID: run.EnclaveID, State: 'RUNNING', Flags: 'DEBUG_MODE'})
    expect(list[0]!.Measurements?.PCR0).toMatch(/^[0-9a-f]{96}$/)
    await attachConsole({env: host.env}, run.EnclaveID, 5)
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['console', '--enclave-id', run.EnclaveID, '--disconnect-timeout', '5'])
    expect(await terminateEnclave({env: host.env}, run.EnclaveID)).toEqual({EnclaveName: 'demo', EnclaveID: run.EnclaveID, Terminated: true})
    expect(host.calls('nitro-cli').at(-1)!.argv).toEqual(['terminate-enclave', '--enclave-id', run.EnclaveID])
    expect(await describeEnclaves({env: host.env})).toEqual([])
    const unknown = await failure(terminateEnclave({env: host.env}, run.EnclaveID))
    expect(unknown).toMatchObject({code: 'NITRO_CLI_FAILED', nitroError: 'E11'})
  })

  it('console on a non-debug enclave is E44 with the debug-mode hint', async () => {
    host = fakeHost()
    const path = await eif(host)
    const run = await runEnclave({env: host.env}, {eifPath: path, cpuCount: 2, memoryMiB: 512, cid: 16, debug: false})
    const err = await failure(attachConsole({env: host.env}, run.EnclaveID))
    expect(err).toMatchObject({code: 'NITRO_CONSOLE_NEEDS_DEBUG', nitroError: 'E44', toolExitCode: 44})
    expect(err.hint).toMatch(/enclave\.debug: true/)
  })

  it('a missing nitro-cli names the package to install; garbage output is a clear error', async () => {
    host = fakeHost()
    let err: unknown
    try {
      await describeEnclaves({env: host.envWithOnly([])})
    } catch (error) {
      err = error
    }
    expect(isNleError(err) && err.code).toBe('HOST_TOOL_MISSING')
    expect(isNleError(err) && err.hint).toMatch(/aws-nitro-enclaves-cli/)
    writeFileSync(join(host.dir, 'nitro-cli'), '#!/bin/sh\necho "not json"\n', {mode: 0o755})
    try {
      await describeEnclaves({env: {...host.env, PATH: host.dir}})
    } catch (error) {
      err = error
    }
    expect(isNleError(err) && err.code).toBe('HOST_TOOL_BAD_OUTPUT')
  })
})
