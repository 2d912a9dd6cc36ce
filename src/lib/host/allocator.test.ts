import {mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, chmodSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {afterEach, describe, expect, it} from 'vitest'

import {hasCode} from '../errors.js'
import {tempDir} from '../../test-support/tmp.js'
import {readAllocatorSettings, updateAllocatorYaml} from './allocator-yaml.js'
import {parseCpuList, planCpus, readCpuTopology} from './cpus.js'
import {MIB, checkHostMemory, kvCacheBytes, minMemoryForEifMiB, parseMemInfo, planEnclaveMemory, readMemInfo} from './memory.js'
import {writeFileAtomicWithBackup} from './write-backup.js'

// Same layout as aws-nitro-enclaves-cli's bootstrap/allocator.yaml (v1.5.0): `---`, comment lines
// before each key, a trailing commented-out cpu_pool with no blank line before it. Wording is ours.
const SHIPPED = readFileSync(fileURLToPath(new URL('testdata/allocator.yaml', import.meta.url)), 'utf8')

let cleanup: (() => void) | undefined
afterEach(() => cleanup?.())

/** nitro-cli's E26 check (enclave_proc/resource_manager.rs): fails when 4 * eif > memory << 20. */
const e26 = (eifBytes: number, memoryMiB: number): boolean => 4 * eifBytes > memoryMiB * MIB

describe('the 4x EIF rule', () => {
  it.each([
    [0, 0],
    [1, 1],
    [MIB / 4, 1],
    [MIB / 4 + 1, 2],
    [MIB, 4],
    [MIB + 1, 5],
    [256 * MIB - 1, 1024],
    [256 * MIB, 1024],
    [256 * MIB + 1, 1025],
    [17_500 * MIB, 70_000],
  ])('an EIF of %i bytes needs %i MiB, the least nitro-cli accepts', (eif, min) => {
    expect(minMemoryForEifMiB(eif)).toBe(min)
    expect(e26(eif, min)).toBe(false)
    if (min > 0) expect(e26(eif, min - 1)).toBe(true)
  })

  it('agrees with the E26 inequality on both sides for sizes around every MiB/4 boundary', () => {
    for (let q = 1; q < 2000; q += 37) {
      for (const eif of [q * (MIB / 4) - 1, q * (MIB / 4), q * (MIB / 4) + 1]) {
        const min = minMemoryForEifMiB(eif)
        expect(e26(eif, min)).toBe(false)
        expect(e26(eif, min - 1)).toBe(true)
      }
    }
  })
})

describe('planEnclaveMemory', () => {
  it('never goes below the driver minimum of 64 MiB and rounds up to 2 MiB hugepages', () => {
    expect(planEnclaveMemory(1000, undefined).memoryMiB).toBe(64)
    // 4 x 30 MiB + 1 byte = 121 MiB: odd, so 122.
    expect(planEnclaveMemory(30 * MIB + 1, undefined)).toMatchObject({eifRuleMiB: 121, memoryMiB: 122, source: 'auto'})
  })

  it('adds the runtime: model bytes + KV cache (whole MiB) + 256 MiB overhead', () => {
    const p = planEnclaveMemory(100 * MIB, {modelBytes: 300 * MIB + 1, kvCacheBytes: 50 * MIB})
    expect(p.eifRuleMiB).toBe(400)
    expect(p.runtimeMiB).toBe(351 + 256)
    expect(p.memoryMiB).toBe(400 + 607 + 1) // 1007 rounded up to 1008
  })

  it('takes a configured size (rounded to hugepages) but refuses one below 4x the EIF', () => {
    expect(planEnclaveMemory(MIB, undefined, 513)).toMatchObject({memoryMiB: 514, source: 'config'})
    let err: unknown
    try {
      planEnclaveMemory(200 * MIB, undefined, 512)
    } catch (error) {
      err = error
    }
    expect(hasCode(err, 'RUN_MEMORY_TOO_SMALL')).toBe(true)
  })

  it('sizes the KV cache as batch x context x (layers x 2 x KV heads x head size x bytes)', () => {
    // gpt2-medium (16 heads of 64), 1024 positions, 4 sequences, fp32: 768 MiB.
    expect(kvCacheBytes({numLayers: 24, kvHeads: 16, headDim: 64, contextTokens: 1024, sequences: 4})).toBe(768 * MIB)
    // Qwen2.5-0.5B's shape: grouped-query attention keeps 2 of 14 heads, 24 KiB a token; 8 x 4096 tokens.
    expect(kvCacheBytes({numLayers: 24, kvHeads: 2, headDim: 64, contextTokens: 4096, sequences: 8})).toBe(8 * 4096 * 24 * 1024)
    // An fp16 cache is half that.
    expect(kvCacheBytes({numLayers: 24, kvHeads: 2, headDim: 64, contextTokens: 4096, sequences: 8, bytesPerValue: 2})).toBe(8 * 4096 * 12 * 1024)
  })
})

describe('host CPUs', () => {
  const topo = (online: string, siblings: Record<number, string>) => ({
    online: parseCpuList(online),
    siblings: new Map(parseCpuList(online).map((c) => [c, parseCpuList(siblings[c] ?? String(c))])),
  })
  // An 8-vCPU host with hyperthreads: core n = CPUs n and n+4 (like an r5.2xlarge).
  const smt = topo('0-7', {0: '0,4', 1: '1,5', 2: '2,6', 3: '3,7', 4: '0,4', 5: '1,5', 6: '2,6', 7: '3,7'})

  it('parses kernel CPU lists', () => {
    expect(parseCpuList('0-3,8,10-11\n')).toEqual([0, 1, 2, 3, 8, 10, 11])
  })

  it('rounds up to full cores and never uses CPU 0\'s core', () => {
    expect(planCpus(3, smt)).toMatchObject({cpuCount: 4, threadsPerCore: 2, available: 6, pool: [1, 5, 2, 6]})
    expect(planCpus(6, smt).pool).not.toContain(0)
    expect(planCpus(6, smt).pool).not.toContain(4)
  })

  it('fails clearly when the host lacks the CPUs', () => {
    let err: unknown
    try {
      planCpus(7, smt)
    } catch (error) {
      err = error
    }
    expect(hasCode(err, 'ALLOCATOR_INSUFFICIENT_CPUS')).toBe(true)
    expect(planCpus(1, topo('0-1', {})).cpuCount).toBe(1)
    expect(() => planCpus(1, topo('0', {}))).toThrow(/only 0 outside CPU 0/)
  })

  it('reads /proc/meminfo and /sys/devices/system/cpu from injectable paths', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    writeFileSync(join(t.dir, 'meminfo'), 'MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:   8000000 kB\nHugePages_Total:     512\nHugepagesize:       2048 kB\n')
    for (let c = 0; c < 4; c++) {
      mkdirSync(join(t.dir, 'cpu', `cpu${c}`, 'topology'), {recursive: true})
      writeFileSync(join(t.dir, 'cpu', `cpu${c}`, 'topology', 'thread_siblings_list'), `${c % 2 === 0 ? `${c},${c + 1}` : `${c - 1}-${c}`}\n`)
    }
    writeFileSync(join(t.dir, 'cpu', 'online'), '0-3\n')
    const paths = {meminfo: join(t.dir, 'meminfo'), cpuDir: join(t.dir, 'cpu')}
    const mem = await readMemInfo(paths)
    expect(mem).toEqual({memTotalKiB: 16_000_000, memAvailableKiB: 8_000_000, hugepagesTotal: 512, hugepageSizeKiB: 2048})
    const t2 = await readCpuTopology(paths)
    expect(planCpus(2, t2).pool).toEqual([2, 3])
    // Already-reserved hugepages count as reservable: 7812 + 1024 - 512 parent reserve.
    expect(checkHostMemory(8000, mem).capacityMiB).toBe(8324)
    let err: unknown
    try {
      checkHostMemory(9000, mem)
    } catch (error) {
      err = error
    }
    expect(hasCode(err, 'ALLOCATOR_INSUFFICIENT_MEMORY')).toBe(true)
    expect(() => parseMemInfo('garbage')).toThrow(/MemTotal/)
  })
})

describe('allocator.yaml', () => {
  it('round-trips byte for byte when nothing changes', () => {
    expect(updateAllocatorYaml(SHIPPED, {memoryMiB: 512, cpuCount: 2})).toBe(SHIPPED)
  })

  it('changes only the two values and keeps every comment, the --- marker and the order', () => {
    const out = updateAllocatorYaml(SHIPPED, {memoryMiB: 70_000, cpuCount: 8})
    expect(readAllocatorSettings(out)).toEqual({memory_mib: 70_000, cpu_count: 8})
    const before = SHIPPED.split('\n')
    const after = out.split('\n')
    expect(after).toHaveLength(before.length)
    const changed = after.map((l, i) => [before[i], l]).filter(([a, b]) => a !== b)
    expect(changed).toEqual([
      ['memory_mib: 512', 'memory_mib: 70000'],
      ['cpu_count: 2', 'cpu_count: 8'],
    ])
  })

  it('keeps quoting and inline comments, turns cpu_pool into cpu_count in place, keeps a blank line the file had', () => {
    const text = '# header\nmemory_mib: "512" # MiB\ncpu_pool: 2,3\n\n# trailing, after a blank line\n'
    const out = updateAllocatorYaml(text, {memoryMiB: 1024, cpuCount: 2})
    expect(out).toBe('# header\nmemory_mib: "1024" # MiB\ncpu_count: 2\n\n# trailing, after a blank line\n')
    expect(readAllocatorSettings(out)).toEqual({memory_mib: 1024, cpu_count: 2})
  })

  it('adds missing keys and rejects broken YAML', () => {
    expect(updateAllocatorYaml('---\n', {memoryMiB: 64, cpuCount: 2})).toContain('memory_mib: 64\ncpu_count: 2\n')
    let err: unknown
    try {
      updateAllocatorYaml('memory_mib: [1\n', {memoryMiB: 64, cpuCount: 2})
    } catch (error) {
      err = error
    }
    expect(hasCode(err, 'ALLOCATOR_BAD_YAML')).toBe(true)
  })

  it('writes atomically, keeps a timestamped backup and the file mode', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    const file = join(t.dir, 'allocator.yaml')
    writeFileSync(file, SHIPPED)
    chmodSync(file, 0o640)
    const {backup} = await writeFileAtomicWithBackup(file, 'memory_mib: 64\ncpu_count: 2\n', new Date('2026-11-26T08:30:00.123Z'))
    expect(backup).toBe(join(t.dir, 'allocator.yaml.20261126T083000Z.bak'))
    expect(readFileSync(backup!, 'utf8')).toBe(SHIPPED)
    expect(readFileSync(file, 'utf8')).toBe('memory_mib: 64\ncpu_count: 2\n')
    expect(statSync(file).mode & 0o777).toBe(0o640)
    expect(readdirSync(t.dir).sort()).toEqual(['allocator.yaml', 'allocator.yaml.20261126T083000Z.bak'])
  })
})
