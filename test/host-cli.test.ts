// The host commands as a user runs them (the compiled CLI), against the fake docker, nitro-cli,
// systemctl and socat in test/fakes: build → allocator → run → status → stop, and errors.
import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {createServer} from 'node:net'

import {REPO_ROOT, jsonResult, runCli} from '../src/test-support/cli.js'
import {FAKES_DIR, type FakeHost, fakeHost, fakeProject} from './fakes/host.js'

let host: FakeHost
afterEach(() => host?.cleanup())

/** A host with 8 vCPUs (2 threads per core) and 16 GB, as /proc and /sys show it. */
function hostFiles(h: FakeHost): string[] {
  const cpu = join(h.dir, 'sys-cpu')
  for (let c = 0; c < 8; c++) {
    mkdirSync(join(cpu, `cpu${c}`, 'topology'), {recursive: true})
    writeFileSync(join(cpu, `cpu${c}`, 'topology', 'thread_siblings_list'), `${c % 4},${(c % 4) + 4}\n`)
  }
  writeFileSync(join(cpu, 'online'), '0-7\n')
  writeFileSync(join(h.dir, 'meminfo'), `MemTotal:       16000000 kB\nMemFree:        15000000 kB\nMemAvailable:   15000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n`)
  const file = join(h.dir, 'allocator.yaml')
  copyFileSync(join(REPO_ROOT, 'src/lib/host/testdata/allocator.yaml'), file)
  return ['--file', file, '--meminfo', join(h.dir, 'meminfo'), '--cpu-dir', cpu]
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => resolve(port))
    })
  })
}

describe('nle build / allocator / run / status / stop', () => {
  it('goes through the whole flow with --json and leaves no process behind', async () => {
    const port = await freePort()
    host = fakeHost({NLE_PARENT_PROXY: join(FAKES_DIR, 'parent-proxy.mjs'), FAKE_PROXY_PORT: String(port)})
    const dir = await fakeProject(host, 'demo', (t) => t.replace('host: 0.0.0.0\n  port: 8443', `host: 127.0.0.1\n  port: ${port}`))
    const opts = {cwd: dir, env: host.env}

    const build = await runCli(['build', '--json'], opts)
    expect(build.exitCode, build.stderr).toBe(0)
    const b = jsonResult<{measurements: Record<string, string>; eif: {size: number; bootable: boolean}; memory: {memoryMiB: number; layouts: {built: string; embedded: {eifBytes: number; memoryMiB: number}; sealed: {estimated: boolean; memoryMiB: number}}}}>(build)
    // Both layouts: this EIF embeds the model (its figure is the memory proposed), the sealed one is derived.
    expect(b.memory.layouts).toMatchObject({built: 'embedded', embedded: {eifBytes: b.eif.size, memoryMiB: b.memory.memoryMiB}, sealed: {estimated: true}})
    // (The fake nitro-cli's EIF is smaller than the model it claims to hold, so the two nearly meet here.)
    expect(b.memory.layouts.sealed.memoryMiB).toBeLessThanOrEqual(b.memory.memoryMiB)
    expect(b.measurements.PCR0).toMatch(/^[0-9a-f]{96}$/)
    expect(b.eif.bootable).toBe(true)
    // The stages, timed, and what to run next (this EIF boots: size the host, then run it).
    expect(jsonResult<{stages: {stage: string}[]; nextSteps: string[]}>(build)).toMatchObject({stages: [{stage: 'context'}, {stage: 'docker-build'}, {stage: 'nitro-cli'}, {stage: 'measure'}], nextSteps: ['nle allocator', 'nle run']})
    // Stage lines are for a terminal only: none on a piped stderr.
    expect(build.stderr).not.toContain('Measuring the EIF')

    const alloc = hostFiles(host)
    const show = await runCli(['allocator', ...alloc], opts)
    expect(show.exitCode, show.stderr).toBe(0)
    expect(show.stdout).toContain(`-memory_mib: 512\n+memory_mib: ${b.memory.memoryMiB}`)
    expect(show.stdout).toContain('Run with --apply')
    expect(show.stdout).toMatch(/model embedded \(this EIF\) +EIF [\d.]+ MiB -> memory \d+ MiB/)
    expect(show.stdout).toMatch(/model sealed +EIF [\d.]+ MiB \(estimated\) -> memory \d+ MiB/)
    const applied = jsonResult<{applied: {written: boolean; backup: string; restarted: boolean}; proposed: {cpu_count: number}}>(await runCli(['allocator', '--apply', '--json', ...alloc], opts))
    expect(applied.applied).toMatchObject({written: true, restarted: true})
    expect(applied.proposed.cpu_count).toBe(2)
    expect(readFileSync(alloc[1]!, 'utf8')).toContain(`memory_mib: ${b.memory.memoryMiB}\n`)
    expect(readFileSync(applied.applied.backup, 'utf8')).toContain('memory_mib: 512\n')
    expect(host.calls('systemctl').map((c) => c.argv)).toEqual([['restart', 'nitro-enclaves-allocator.service']])

    const run = await runCli(['run', '--json', '--timeout', '20'], opts)
    expect(run.exitCode, run.stdout).toBe(0)
    const r = jsonResult<{enclave: {id: string; memoryMiB: number}; bridge: {pid: number}; proxy: {pid: number}; health: string}>(run)
    expect(r).toMatchObject({health: 'ok', enclave: {memoryMiB: b.memory.memoryMiB}, proxy: {started: true}})
    expect(host.leftovers().map((p) => p.pid).sort()).toEqual([r.bridge.pid, r.proxy.pid].sort())

    const status = jsonResult<{running: boolean; health: string; enclave: {EnclaveID: string}}>(await runCli(['status', '--json'], opts))
    expect(status).toMatchObject({running: true, health: 'ok', enclave: {EnclaveID: r.enclave.id}})

    const stop = await runCli(['stop', '--json'], opts)
    expect(stop.exitCode, stop.stderr).toBe(0)
    expect(jsonResult<{terminated: string[]; stopped: {pids: number[]}}>(stop)).toMatchObject({terminated: [r.enclave.id], stopped: {pids: [r.proxy.pid, r.bridge.pid]}})
    expect(host.leftovers()).toEqual([])
    expect(host.state('enclaves.json', [1])).toEqual([])
  }, 90_000)

  it('renders a nitro-cli failure with its code, the argv, the stderr tail and the hint, and exits 4', async () => {
    host = fakeHost({FAKE_NITRO_FAIL: 'run-enclave:E35'})
    const dir = await fakeProject(host)
    expect((await runCli(['build'], {cwd: dir, env: host.env})).exitCode).toBe(0)
    const r = await runCli(['run'], {cwd: dir, env: host.env})
    expect(r.exitCode).toBe(4)
    expect(r.stderr).toMatch(/^Error \[NITRO_HUGEPAGES_UNAVAILABLE\]: nitro-cli run-enclave failed: \[E35\] EIF file parsing error/)
    expect(r.stderr).toMatch(/ {2}ran: nitro-cli run-enclave --cpu-count 2 --memory \d+ --enclave-cid 16 --eif-path .*enclave\.eif --enclave-name demo \(exit 39\)/)
    expect(r.stderr).toContain('  | [ E39 ] Enclave process connection failure.')
    expect(r.stderr).toMatch(/\nHint: The enclave memory could not be backed by hugepages/)
    expect(host.leftovers()).toEqual([])
  }, 60_000)

  it('names the package to install when a tool is missing, and refuses to run a NOT BOOTABLE EIF', async () => {
    host = fakeHost()
    const dir = await fakeProject(host)
    // status and stop exit 0 without nitro-cli, as their help says: nothing can run here, and they say why.
    for (const command of ['status', 'stop']) {
      const s = await runCli([command], {cwd: dir, env: host.envWithOnly([])})
      expect(s.exitCode, s.stderr).toBe(0)
      expect(s.stderr).toMatch(/Warning: nitro-cli is not installed, so no enclave can run on this machine/)
    }
    const r = await runCli(['console'], {cwd: dir, env: host.envWithOnly([])})
    expect(r.exitCode).toBe(4)
    expect(r.stderr).toMatch(/^Error \[HOST_TOOL_MISSING\]: nitro-cli is not installed/)
    expect(r.stderr).toMatch(/Hint: Install the Nitro Enclaves CLI: `sudo dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel`/)

    const native = await runCli(['build', '--builder', 'native'], {cwd: dir, env: host.env})
    // `nle run` refuses this EIF: the next step printed is `nle dev`, which runs it here.
    expect(native.stdout).toMatch(/\nNext steps:\n {2}nle dev$/)
    expect(native.stderr).toContain('`nle dev` runs the stack with it here')
    const notBootable = await runCli(['run'], {cwd: dir, env: host.env})
    expect(notBootable.stderr).toMatch(/^Error \[RUN_EIF_NOT_BOOTABLE\]: .* is NOT BOOTABLE/)
    const described = await runCli(['eif', 'describe', 'build/enclave.eif'], {cwd: dir, env: host.env})
    expect(described.stdout).toMatch(/^NOT BOOTABLE: built without Nitro Enclaves blobs/m)
  }, 60_000)
})
