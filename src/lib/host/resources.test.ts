import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {afterEach, describe, expect, it} from 'vitest'

import {type FakeHost, fakeHost, fakeProject} from '../../../test/fakes/host.js'
import {type LoadedConfig, loadConfig} from '../config/load.js'
import {hasCode, isNleError} from '../errors.js'
import {MIB} from './memory.js'
import {buildProject} from './build.js'
import {runEnclave} from './nitro-cli.js'
import {applyAllocator, planAllocator} from './resources.js'

let host: FakeHost
afterEach(() => host?.cleanup())

async function setup(env: NodeJS.ProcessEnv = {}): Promise<{loaded: LoadedConfig; file: string; hostPaths: {meminfo: string; cpuDir: string}}> {
  host = fakeHost(env)
  const dir = await fakeProject(host)
  const loaded = await loadConfig(join(dir, 'nle.yaml'))
  const cpuDir = join(host.dir, 'cpu')
  for (let c = 0; c < 4; c++) {
    mkdirSync(join(cpuDir, `cpu${c}`, 'topology'), {recursive: true})
    writeFileSync(join(cpuDir, `cpu${c}`, 'topology', 'thread_siblings_list'), `${c % 2 === 0 ? c : c - 1},${c % 2 === 0 ? c + 1 : c}\n`)
  }
  writeFileSync(join(cpuDir, 'online'), '0-3\n')
  writeFileSync(join(host.dir, 'meminfo'), 'MemTotal: 8000000 kB\nMemAvailable: 7000000 kB\nHugePages_Total: 0\nHugepagesize: 2048 kB\n')
  const file = join(host.dir, 'allocator.yaml')
  copyFileSync(fileURLToPath(new URL('testdata/allocator.yaml', import.meta.url)), file)
  return {loaded, file, hostPaths: {meminfo: join(host.dir, 'meminfo'), cpuDir}}
}

describe('nle allocator', () => {
  it('sizes memory from the EIF and the saved model, CPUs from the topology, and diffs the file', async () => {
    const s = await setup()
    expect(hasCode(await planAllocator(s).catch((e: unknown) => e), 'ALLOCATOR_NO_EIF')).toBe(true)
    await buildProject({loaded: s.loaded, ctx: {env: host.env}})
    const plan = await planAllocator(s)
    // fakeProject: 3 MiB model; KV cache 2 x 2 layers x 64 x 128 positions x 4 sequences x 4 B = 0.5 MiB.
    expect(plan.memory.runtime).toMatchObject({modelBytes: 3 * MIB, kvCacheBytes: MIB / 2})
    expect(plan.memory.runtimeMiB).toBe(4 + 256)
    expect(plan.memory.memoryMiB).toBe(Math.ceil((Math.ceil((4 * plan.eif.bytes) / MIB) + 260) / 2) * 2)
    expect(plan.proposed).toEqual({memory_mib: plan.memory.memoryMiB, cpu_count: 2})
    expect(plan.cpus.pool).toEqual([2, 3])
    expect(plan.current).toEqual({memory_mib: 512, cpu_count: 2})
    expect(plan.diff).toContain(`-memory_mib: 512\n+memory_mib: ${plan.memory.memoryMiB}\n`)
    expect(plan.eif.bootable).toBe(true)
  })

  it('applies: refuses while an enclave runs; writes with a backup and restarts the allocator; reports a failed restart', async () => {
    const s = await setup()
    await buildProject({loaded: s.loaded, ctx: {env: host.env}})
    const plan = await planAllocator(s)
    const eif = join(s.loaded.dir, 'build', 'enclave.eif')
    const running = await runEnclave({env: host.env}, {eifPath: eif, cpuCount: 2, memoryMiB: 512, cid: 20, debug: false})
    const busy = await applyAllocator(plan, {env: host.env}).catch((e: unknown) => e)
    expect(hasCode(busy, 'ALLOCATOR_ENCLAVE_RUNNING')).toBe(true)
    expect(readFileSync(s.file, 'utf8')).toContain('memory_mib: 512\n')
    host.writeState('enclaves.json', [])

    const failed = await applyAllocator(plan, {env: {...host.env, FAKE_SYSTEMCTL_FAIL: 'restart'}}).catch((e: unknown) => e)
    expect(hasCode(failed, 'ALLOCATOR_RESTART_FAILED')).toBe(true)
    expect(isNleError(failed) && failed.hint).toMatch(/journalctl -u nitro-enclaves-allocator.service.*allocator\.yaml\.\d{8}T\d{6}Z\.bak/)

    const again = await planAllocator(s)
    expect(again.changed).toBe(false)
    expect(await applyAllocator(again, {env: host.env})).toEqual({written: false, restarted: false})
    expect(running.EnclaveCID).toBe(20)
  })

  it('marks a placeholder-kernel EIF as NOT BOOTABLE and fails clearly on a host without the memory', async () => {
    const s = await setup({NITRO_CLI_BLOBS: undefined})
    await buildProject({loaded: s.loaded, ctx: {env: host.env}, builder: 'native'})
    const plan = await planAllocator(s)
    expect(plan.eif).toMatchObject({bootable: false, reason: expect.stringMatching(/placeholder kernel/)})
    writeFileSync(s.hostPaths.meminfo, 'MemTotal: 800000 kB\nMemAvailable: 700000 kB\n')
    expect(hasCode(await planAllocator(s).catch((e: unknown) => e), 'ALLOCATOR_INSUFFICIENT_MEMORY')).toBe(true)
  })
})
