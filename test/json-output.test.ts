// What `--json` prints, as a script reads it (the compiled CLI): every run here is validated
// against its command's schema as committed in schema/json/ (`npm run build` writes them from
// src/cli/results.ts), and its shape is snapshot-tested with the volatile values (paths, times,
// digests, sizes, durations, pids, ports) normalised. A failure is the failure envelope, alone on
// stdout, with the exit status of its code.
import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {type AddressInfo, createServer} from 'node:net'
import {join} from 'node:path'

import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'

import {schemaFile} from '../src/cli/results.js'
import {errorCatalogue} from '../src/lib/errors.js'
import {ATTESTATION_TESTDATA, vector} from '../src/test-support/attestation.js'
import {BIN, type CliResult, REPO_ROOT, json, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type FakeHost, fakeHost, fakeProject} from './fakes/host.js'

const tmp = tempDir('nle-json-')
let host: FakeHost
let project: string
afterAll(() => {
  host?.cleanup()
  tmp.cleanup()
})

beforeAll(async () => {
  host = fakeHost()
  project = await fakeProject(host, 'jsonout')
}, 60_000)

/** The committed schema of a command (or `error`), as a validator. */
function committedSchema(name: string): z.ZodType {
  const file = name === 'error' ? 'error.schema.json' : schemaFile(name)
  return z.fromJSONSchema(JSON.parse(readFileSync(join(REPO_ROOT, 'schema/json', file), 'utf8')) as Parameters<typeof z.fromJSONSchema>[0])
}

function validate(name: string, value: unknown): void {
  const checked = committedSchema(name).safeParse(value)
  expect(checked.success, `${name}: ${checked.error?.message ?? ''}\n${JSON.stringify(value, null, 2)}`).toBe(true)
}

const VOLATILE_NUMBER = /(Ms|Bytes|Size|MiB|Tokens|PerSecond)$|^(ms|pid|port|size|bytes|files|packages|parameters|cpuCount|available|requested|threadsPerCore|memory_mib|cpu_count|ProcessID|EnclaveCID|cid)$/

/** The shape of a value with what changes from run to run (or machine to machine) replaced by a placeholder. */
function normalise(value: unknown, dirs: Record<string, string>, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => normalise(v, dirs, key))
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v, dirs, k)]))
  if (typeof value === 'number') return VOLATILE_NUMBER.test(key) ? '<number>' : value
  if (typeof value !== 'string') return value
  let s = value
  for (const [name, dir] of Object.entries(dirs)) s = s.replaceAll(dir, `<${name}>`)
  return s
    .replace(/\b[0-9a-f]{32,}\b/g, (h) => `<hex${h.length}>`)
    .replace(/\b[0-9a-f]{8,}…/g, '<hex>…')
    .replace(/^([-+ ]?(memory_mib|cpu_count): )\d+$/gm, '$1<number>')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
    .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:<port>')
    .replace(/\.bak\b|\.\d{8}T\d{6}Z?\.bak/g, '.<time>.bak')
}

/** Run a command with --json: its single envelope, validated against its schema. */
async function envelopeOf(name: string, args: readonly string[], options: {cwd?: string; env?: NodeJS.ProcessEnv} = {}): Promise<{r: CliResult; envelope: Record<string, unknown>}> {
  const r = await runCli([...args, '--json'], {cwd: options.cwd ?? project, env: options.env ?? host.env})
  const envelope = json(r)
  validate(name, envelope)
  expect(envelope).toMatchObject({command: name, schemaVersion: 1, exitCode: r.exitCode})
  return {r, envelope}
}

const dirs = (): Record<string, string> => ({project, host: host.dir, tmp: tmp.dir, repo: REPO_ROOT.replace(/\/$/, '')})

describe('--json success envelopes fit their schemas', () => {
  it('init, doctor, model synth', async () => {
    const dir = join(tmp.dir, 'fresh')
    const init = await envelopeOf('init', ['init', dir, '--name', 'fresh'], {cwd: tmp.dir})
    expect(init.envelope.ok).toBe(true)
    // The next steps are for this machine (a Nitro host or not): their shape is checked, not their text.
    const {place, nextSteps, note, ...files} = init.envelope.result as {place: string; nextSteps: unknown[]; note: string}
    expect([['dev', 'nitro-host'].includes(place), nextSteps.length > 0, note.length > 0]).toEqual([true, true, true])
    expect(normalise({...init.envelope, result: files}, {...dirs(), fresh: dir})).toMatchSnapshot()

    // doctor's checks depend on what this machine has installed: its snapshot is the envelope without them.
    const doctor = await envelopeOf('doctor', ['doctor', '--for', 'dev'], {cwd: dir})
    const {checks, ...report} = doctor.envelope.result as {checks: {id: string}[]}
    expect(checks.map((c) => c.id)).toContain('node')
    expect(normalise({...doctor.envelope, result: report}, dirs())).toMatchSnapshot()

    const synth = await envelopeOf('model synth', ['model', 'synth', '--preset', 'tiny', '--out', join(tmp.dir, 'tiny')], {cwd: tmp.dir})
    expect(normalise(synth.envelope, dirs())).toMatchSnapshot()
  }, 120_000)

  it('build --builder native, eif describe, pcr, allocator, status, stop', async () => {
    const build = await envelopeOf('build', ['build', '--builder', 'native'])
    expect(build.r.exitCode, build.r.stderr).toBe(0)
    const {runtime, ...rest} = build.envelope.result as {runtime?: unknown}
    // The runtime closure's package list changes with every dependency bump: its presence is enough.
    expect(runtime).toBeDefined()
    expect(normalise({...build.envelope, result: rest}, dirs())).toMatchSnapshot()

    const described = await envelopeOf('eif describe', ['eif', 'describe', 'build/enclave.eif'])
    expect(normalise(described.envelope, dirs())).toMatchSnapshot()

    const pcr = await envelopeOf('pcr', ['pcr', '--input', 'nle.yaml'])
    expect(normalise(pcr.envelope, dirs())).toMatchSnapshot()

    const cpu = join(host.dir, 'sys-cpu')
    for (let c = 0; c < 4; c++) {
      mkdirSync(join(cpu, `cpu${c}`, 'topology'), {recursive: true})
      writeFileSync(join(cpu, `cpu${c}`, 'topology', 'thread_siblings_list'), `${c % 2},${(c % 2) + 2}\n`)
    }
    writeFileSync(join(cpu, 'online'), '0-3\n')
    writeFileSync(join(host.dir, 'meminfo'), 'MemTotal:        8000000 kB\nMemFree:         7000000 kB\nMemAvailable:    7000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n')
    const file = join(host.dir, 'allocator.yaml')
    copyFileSync(join(REPO_ROOT, 'src/lib/host/testdata/allocator.yaml'), file)
    const allocator = await envelopeOf('allocator', ['allocator', '--file', file, '--meminfo', join(host.dir, 'meminfo'), '--cpu-dir', cpu])
    expect(normalise(allocator.envelope, dirs())).toMatchSnapshot()

    for (const command of ['status', 'stop']) {
      const {envelope} = await envelopeOf(command, [command])
      expect(normalise(envelope, dirs())).toMatchSnapshot()
    }
  }, 120_000)

  it('policy apply, show, check (and --format json is the same envelope)', async () => {
    const role = 'arn:aws:iam::111122223333:role/jsonout-host'
    const policyFile = join(tmp.dir, 'key-policy.json')
    writeFileSync(policyFile, JSON.stringify({Version: '2012-10-17', Statement: [{Sid: 'Key administrators', Effect: 'Allow', Principal: {AWS: 'arn:aws:iam::111122223333:root'}, NotAction: ['kms:Decrypt'], Resource: '*', Condition: {ArnNotEquals: {'aws:PrincipalArn': role}}}]}))
    const policy = ['--policy-file', policyFile, '--role', role]
    const apply = await envelopeOf('policy apply', ['policy', 'apply', ...policy, '--apply'])
    expect(apply.r.exitCode, apply.r.stderr).toBe(0)
    expect(normalise(apply.envelope, dirs())).toMatchSnapshot()
    const show = await envelopeOf('policy show', ['policy', 'show', ...policy])
    expect(normalise(show.envelope, dirs())).toMatchSnapshot()
    const check = await envelopeOf('policy check', ['policy', 'check', ...policy])
    expect(check.envelope).toMatchObject({ok: true, exitCode: 0, result: {verdict: 'ok'}})
    expect(normalise(check.envelope, dirs())).toMatchSnapshot()
    const format = await runCli(['policy', 'check', ...policy, '--format', 'json'], {cwd: project, env: host.env})
    expect(json(format)).toEqual(check.envelope)
  }, 120_000)

  it.skipIf(ATTESTATION_TESTDATA === undefined)('attest verify (a real AWS document; needs ../shared/testdata/attestation)', async () => {
    const v = vector('turnkey_prod_attestation.bin')
    const args = ['attest', 'verify', `${ATTESTATION_TESTDATA}${v.file}`, '--pcr0', v.pcrs['0']!, '--pcr1', v.pcrs['1']!, '--pcr2', v.pcrs['2']!, '--at', new Date(v.timestampMs + 1000).toISOString()]
    const {envelope} = await envelopeOf('attest verify', args)
    expect(envelope.ok).toBe(true)
    expect(normalise(envelope, {...dirs(), testdata: ATTESTATION_TESTDATA!.replace(/\/$/, '')})).toMatchSnapshot()
  }, 60_000)

  it('proxy: one envelope per line, listening then stopped, each fitting the line schema', async () => {
    const child = execa(process.execPath, [BIN, 'proxy', '--upstream', `unix:${join(tmp.dir, 'none.sock')}`, '--http-port', '0', '--json'], {cwd: tmp.dir, reject: false, env: {NO_COLOR: '1'}})
    let out = ''
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('\n')) resolve()
      })
      void child.then((r) => reject(new Error(`proxy exited ${r.exitCode}: ${r.stderr}`)))
    })
    child.kill('SIGTERM')
    const result = await child
    expect(result.exitCode).toBe(0)
    const lines = String(result.stdout).trim().split('\n').map((l) => JSON.parse(l) as {event: string})
    for (const line of lines) validate('proxy', line)
    expect(normalise(lines, dirs())).toMatchSnapshot()
  }, 60_000)
})

describe('--json failures', () => {
  /** Its failure: stdout is exactly one failure envelope, its exit status the code's. */
  async function failure(name: string | null, args: readonly string[], cwd = project): Promise<{code: string; exitCode: number}> {
    const r = await runCli([...args, '--json'], {cwd, env: host.env})
    const envelope = json<{ok: boolean; command: string | null; exitCode: number; error: {code: string; exitCode: number; docs: string}}>(r)
    validate(name ?? 'error', envelope)
    validate('error', envelope)
    // Nothing but the envelope on stdout: parsing all of it gave one object, and re-rendering it gives the same text.
    expect(r.stdout).toBe(JSON.stringify(envelope, null, 2))
    const spec = errorCatalogue().find((e) => e.code === envelope.error.code)
    expect(spec, envelope.error.code).toBeDefined()
    expect([envelope.ok, envelope.command, r.exitCode, envelope.exitCode, envelope.error.exitCode, envelope.error.docs]).toEqual([false, name, spec!.exit, spec!.exit, spec!.exit, spec!.docs])
    return {code: envelope.error.code, exitCode: r.exitCode}
  }

  it('print the failure envelope alone on stdout, with the exit status of their code', async () => {
    const existing = join(tmp.dir, 'existing')
    await runCli(['init', existing])
    writeFileSync(join(existing, 'nle.yaml'), 'version: 1\nname: edited\n')
    expect(await failure('init', ['init', existing])).toEqual({code: 'INIT_FILES_EXIST', exitCode: 6})
    expect(await failure('build', ['build', '--no-such-flag'])).toEqual({code: 'USAGE', exitCode: 2})
    expect(await failure('eif describe', ['eif', 'describe', join(tmp.dir, 'missing.eif')])).toEqual({code: 'EIF_NOT_FOUND', exitCode: 6})
    writeFileSync(join(tmp.dir, 'bad.yaml'), 'version: 1\nname: demo\nenclave: {cpuCont: 2}\n')
    expect((await failure('allocator', ['allocator', '--config', join(tmp.dir, 'bad.yaml')])).exitCode).toBe(3)
    expect(await failure('policy check', ['policy', 'check', '--policy-file', join(tmp.dir, 'missing.json')])).toMatchObject({exitCode: 3})
    // No command matched: the envelope names none.
    expect(await failure(null, ['stauts'])).toEqual({code: 'CLI_UNKNOWN_COMMAND', exitCode: 2})
  }, 120_000)

  it('a long-running command ends its lines with the failure line', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const port = (taken.address() as AddressInfo).port
    const r = await runCli(['proxy', '--upstream', `unix:${join(tmp.dir, 'none.sock')}`, '--http-port', String(port), '--json'], {cwd: tmp.dir}).finally(() => taken.close())
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as {ok: boolean; event: string; exitCode: number; error: {code: string}})
    for (const line of lines) validate('proxy', line)
    expect(lines.at(-1)).toMatchObject({ok: false, event: 'error', exitCode: 6, error: {code: 'ADDRESS_IN_USE'}})
    expect(r.exitCode).toBe(6)
  }, 60_000)
})
