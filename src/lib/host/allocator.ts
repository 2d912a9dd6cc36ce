/**
 * Sizing the Nitro Enclaves allocator (/etc/nitro_enclaves/allocator.yaml) for the enclave in
 * nle.yaml, and rewriting that file without losing its comments.
 *
 * Rules (aws-nitro-enclaves-cli `enclave_proc/resource_manager.rs`, `bootstrap/nitro-enclaves-allocator`,
 * the nitro_enclaves driver):
 *  - run-enclave fails with E26 when `4 * eif_bytes > memory_mib << 20`;
 *  - enclave memory is backed by hugepages; the driver's minimum is 64 MiB; nle rounds to 2 MiB pages;
 *  - CPUs are reserved as full cores and never from CPU 0's core.
 */
import {constants} from 'node:fs'
import {access, copyFile, readFile, stat} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

import {type Document, isMap, isPair, isScalar, parseDocument} from 'yaml'

import {kvBytesPerToken} from '../model/kv-size.js'
import {hostError} from './errors.js'
import {writeAtomically} from '../files.js'

export const MIB = 1024 * 1024
/** nitro-cli's ENCLAVE_MEMORY_EIF_SIZE_RATIO. */
export const EIF_MEMORY_RATIO = 4
export const HUGEPAGE_MIB = 2
/** NE_MIN_ENCLAVE_MEM_SIZE in the nitro_enclaves driver. */
export const NE_MIN_MEMORY_MIB = 64
/** Node + onnxruntime + the enclave server, before the model and KV cache (a measured-ballpark allowance). */
export const RUNTIME_OVERHEAD_MIB = 256
/** Memory `nle allocator` leaves to the parent host when checking what it can reserve. */
export const HOST_RESERVE_MIB = 512
export const DEFAULT_ALLOCATOR_YAML = '/etc/nitro_enclaves/allocator.yaml'

/** The smallest memory (MiB) run-enclave accepts for an EIF of this size: E26's exact check. */
export function minMemoryForEifMiB(eifBytes: number): number {
  return Math.ceil((EIF_MEMORY_RATIO * eifBytes) / MIB)
}

export function roundUpToHugepages(mib: number): number {
  return Math.ceil(mib / HUGEPAGE_MIB) * HUGEPAGE_MIB
}

export interface KvCacheShape {
  numLayers: number
  /** Heads of the KV cache (num_key_value_heads: fewer than the attention heads with grouped-query attention). */
  kvHeads: number
  headDim: number
  /** Tokens one sequence can hold (the model's context length). */
  contextTokens: number
  /** Sequences in flight at once: the enclave server's batch (generationConcurrency). */
  sequences: number
  /** 4 for fp32 (what the runtime keeps the cache in), 2 for an fp16 export's cache. */
  bytesPerValue?: number
}

/** batch × context × per-token KV bytes (layers × 2 × KV heads × head size × bytes per value). */
export function kvCacheBytes(s: KvCacheShape): number {
  const perToken = kvBytesPerToken({numLayers: s.numLayers, kvHeads: s.kvHeads, headDim: s.headDim, bytesPerValue: s.bytesPerValue ?? 4})
  return s.sequences * s.contextTokens * perToken
}

export interface RuntimeNeed {
  modelBytes: number
  kvCacheBytes: number
}

export interface MemoryPlan {
  eifBytes: number
  /** 4x the EIF (E26). */
  eifRuleMiB: number
  /** Model + KV cache + runtime overhead, when known. */
  runtimeMiB: number
  /** What the enclave is given: the sum, at least 64 MiB, rounded up to 2 MiB hugepages. */
  memoryMiB: number
  /** Where memoryMiB came from. */
  source: 'auto' | 'config'
}

/**
 * Enclave memory. The EIF is copied into enclave memory and its ramdisks unpacked there (the 4x
 * rule covers both); the runtime then loads the model and grows the KV cache on top of that.
 */
export function planEnclaveMemory(eifBytes: number, runtime: RuntimeNeed | undefined, configured: 'auto' | number = 'auto'): MemoryPlan {
  const eifRuleMiB = minMemoryForEifMiB(eifBytes)
  const runtimeMiB = runtime ? Math.ceil((runtime.modelBytes + runtime.kvCacheBytes) / MIB) + RUNTIME_OVERHEAD_MIB : 0
  if (configured !== 'auto') {
    if (configured < eifRuleMiB) {
      throw hostError('RUN_MEMORY_TOO_SMALL', `enclave.memoryMiB is ${configured} MiB, but an EIF of ${eifBytes} bytes needs at least ${eifRuleMiB} MiB (4x its size).`, {
        hint: `Set enclave.memoryMiB to auto or to at least ${eifRuleMiB} in nle.yaml.`,
        details: {configured, eifBytes, eifRuleMiB},
      })
    }
    return {eifBytes, eifRuleMiB, runtimeMiB, memoryMiB: roundUpToHugepages(Math.max(NE_MIN_MEMORY_MIB, configured)), source: 'config'}
  }
  return {eifBytes, eifRuleMiB, runtimeMiB, memoryMiB: roundUpToHugepages(Math.max(NE_MIN_MEMORY_MIB, eifRuleMiB + runtimeMiB)), source: 'auto'}
}

// ---------------------------------------------------------------------------------------------
// The host: /proc/meminfo and /sys/devices/system/cpu

export interface HostPaths {
  meminfo: string
  cpuDir: string
}

export const DEFAULT_HOST_PATHS: HostPaths = {meminfo: '/proc/meminfo', cpuDir: '/sys/devices/system/cpu'}

export interface MemInfo {
  memTotalKiB: number
  memAvailableKiB: number
  hugepagesTotal: number
  hugepageSizeKiB: number
}

export function parseMemInfo(text: string): MemInfo {
  const field = (name: string): number | undefined => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)
    return m ? Number(m[1]) : undefined
  }
  const memTotalKiB = field('MemTotal')
  if (memTotalKiB === undefined) throw hostError('HOST_PROC_UNREADABLE', 'meminfo has no MemTotal line.')
  return {
    memTotalKiB,
    memAvailableKiB: field('MemAvailable') ?? field('MemFree') ?? 0,
    hugepagesTotal: field('HugePages_Total') ?? 0,
    hugepageSizeKiB: field('Hugepagesize') ?? 2048,
  }
}

/** Parse a kernel CPU list such as "0-3,8,10-11". */
export function parseCpuList(text: string): number[] {
  const out: number[] = []
  for (const part of text.trim().split(',').filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    if (!m) throw hostError('HOST_PROC_UNREADABLE', `Malformed CPU list "${text.trim()}".`)
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    for (let i = a; i <= b; i++) out.push(i)
  }
  return out
}

export interface CpuTopology {
  online: number[]
  /** For each online CPU, the CPUs of its core (itself included), sorted. */
  siblings: Map<number, number[]>
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    throw hostError('HOST_PROC_UNREADABLE', `Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'nle allocator reads /proc and /sys of a Linux host; run it on the Nitro host itself.',
      cause: error,
    })
  }
}

export async function readMemInfo(paths: HostPaths = DEFAULT_HOST_PATHS): Promise<MemInfo> {
  return parseMemInfo(await readText(paths.meminfo))
}

export async function readCpuTopology(paths: HostPaths = DEFAULT_HOST_PATHS): Promise<CpuTopology> {
  const online = parseCpuList(await readText(join(paths.cpuDir, 'online')))
  const siblings = new Map<number, number[]>()
  for (const cpu of online) {
    const list = await readText(join(paths.cpuDir, `cpu${cpu}`, 'topology', 'thread_siblings_list')).catch(() => String(cpu))
    siblings.set(cpu, parseCpuList(list).sort((a, b) => a - b))
  }
  return {online, siblings}
}

export interface CpuPlan {
  requested: number
  /** Rounded up to full cores. */
  cpuCount: number
  threadsPerCore: number
  /** Online CPUs outside CPU 0's core. */
  available: number
  /** Full cores the allocator would take (informational; it picks within one NUMA node). */
  pool: number[]
}

export function planCpus(requested: number, topo: CpuTopology): CpuPlan {
  const threadsPerCore = Math.max(1, ...[...topo.siblings.values()].map((s) => s.length))
  const cpuCount = Math.ceil(requested / threadsPerCore) * threadsPerCore
  const cpu0Core = new Set(topo.siblings.get(0) ?? [0])
  const onlineSet = new Set(topo.online)
  const usable = topo.online.filter((c) => !cpu0Core.has(c))
  const pool: number[] = []
  const seen = new Set<number>()
  for (const cpu of usable) {
    if (pool.length >= cpuCount || seen.has(cpu)) continue
    const core = topo.siblings.get(cpu) ?? [cpu]
    core.forEach((c) => seen.add(c))
    if (core.every((c) => onlineSet.has(c) && !cpu0Core.has(c))) pool.push(...core)
  }
  const plan = {requested, cpuCount, threadsPerCore, available: usable.length, pool: pool.slice(0, cpuCount)}
  if (plan.pool.length < cpuCount) {
    throw hostError(
      'ALLOCATOR_INSUFFICIENT_CPUS',
      `The enclave needs ${cpuCount} CPUs (${requested} requested, rounded to full cores of ${threadsPerCore}), but this host has only ${plan.pool.length} outside CPU 0's core.`,
      {
        hint: 'Lower enclave.cpuCount in nle.yaml or use a larger instance: CPU 0 and its hyperthread siblings always stay with the parent.',
        details: {...plan, online: topo.online.length},
      },
    )
  }
  return plan
}

export function checkHostMemory(memoryMiB: number, mem: MemInfo): {capacityMiB: number} {
  const reservedKiB = mem.hugepagesTotal * mem.hugepageSizeKiB
  const capacityMiB = Math.floor((mem.memAvailableKiB + reservedKiB) / 1024) - HOST_RESERVE_MIB
  if (memoryMiB > capacityMiB) {
    throw hostError(
      'ALLOCATOR_INSUFFICIENT_MEMORY',
      `The enclave needs ${memoryMiB} MiB, but this host can reserve at most ${Math.max(0, capacityMiB)} MiB (${Math.floor(mem.memTotalKiB / 1024)} MiB total, ${HOST_RESERVE_MIB} MiB kept for the parent).`,
      {
        hint: 'Use a smaller model or dtype q8, lower proxy.concurrency (KV cache), or an instance with more memory; stop other memory users first.',
        details: {memoryMiB, capacityMiB, ...mem},
      },
    )
  }
  return {capacityMiB}
}

// ---------------------------------------------------------------------------------------------
// allocator.yaml: a YAML document edited in place, so every comment and the key order survive

export interface AllocatorSettings {
  memory_mib?: number
  cpu_count?: number
  cpu_pool?: string
}

function parseAllocatorDoc(text: string, source: string): Document {
  const doc: Document = parseDocument(text)
  if (doc.errors.length > 0) {
    throw hostError('ALLOCATOR_BAD_YAML', `${source}: ${doc.errors[0]!.message.split('\n')[0]}`, {hint: 'Fix the YAML (or restore the package default) and try again.'})
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) doc.contents = doc.createNode({})
  if (!isMap(doc.contents)) throw hostError('ALLOCATOR_BAD_YAML', `${source} is not a YAML mapping.`)
  return doc
}

export function readAllocatorSettings(text: string, source = DEFAULT_ALLOCATOR_YAML): AllocatorSettings {
  const doc = parseAllocatorDoc(text, source)
  const js = (doc.toJS() ?? {}) as Record<string, unknown>
  const num = (v: unknown): number | undefined => (v === undefined || v === null ? undefined : Number(v))
  return {
    ...(js.memory_mib === undefined ? {} : {memory_mib: num(js.memory_mib)}),
    ...(js.cpu_count === undefined ? {} : {cpu_count: num(js.cpu_count)}),
    ...(js.cpu_pool === undefined || js.cpu_pool === null ? {} : {cpu_pool: String(js.cpu_pool)}),
  }
}

/**
 * Set memory_mib and cpu_count, keeping comments, order and quoting. A `cpu_pool` line is turned
 * into `cpu_count` in place (the allocator rejects both together).
 */
export function updateAllocatorYaml(text: string, want: {memoryMiB: number; cpuCount: number}, source = DEFAULT_ALLOCATOR_YAML): string {
  const doc = parseAllocatorDoc(text, source)
  const setNumber = (key: string, value: number): void => {
    const node = doc.get(key, true)
    if (isScalar(node)) node.value = typeof node.value === 'string' ? String(value) : value
    else doc.set(key, value)
  }
  setNumber('memory_mib', want.memoryMiB)
  const map = doc.contents
  const poolPair = isMap(map) ? map.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === 'cpu_pool') : undefined
  if (poolPair && isScalar(poolPair.key) && doc.get('cpu_count') === undefined) {
    poolPair.key.value = 'cpu_count'
    poolPair.value = doc.createNode(want.cpuCount)
  } else {
    if (poolPair) doc.delete('cpu_pool')
    setNumber('cpu_count', want.cpuCount)
  }
  // yaml puts a blank line before a trailing document comment; keep it only where the file had one.
  if (doc.comment && isMap(doc.contents) && !doc.contents.comment) {
    const lines = text.replace(/\n+$/, '').split('\n')
    const before = lines[lines.length - doc.comment.split('\n').length - 1]
    if (before !== undefined && before.trim() !== '') {
      doc.contents.comment = doc.comment
      doc.comment = null
    }
  }
  return doc.toString()
}

/**
 * Replace `path` with `text` atomically: the old file is copied to a timestamped backup, the new
 * one written beside it (same mode) and renamed over it (`writeAtomically`). Returns the backup's path.
 */
export async function writeFileAtomicWithBackup(path: string, text: string, now: Date = new Date()): Promise<{backup: string | undefined}> {
  const stamp = now.toISOString().replaceAll(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
  const backup = join(dirname(path), `${basename(path)}.${stamp}.bak`)
  let mode = 0o644
  let existed = false
  try {
    mode = (await stat(path)).mode & 0o7777
    existed = true
  } catch {
    // a new file
  }
  try {
    if (existed) await copyFile(path, backup, constants.COPYFILE_EXCL)
    await writeAtomically(path, async (file) => {
      await file.writeFile(text)
      await file.chmod(mode) // the old file's mode exactly, whatever the umask
    })
    return {backup: existed ? backup : undefined}
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw hostError('ALLOCATOR_WRITE_FAILED', `Cannot write ${path}: ${code ?? String(error)}`, {
      hint: code === 'EACCES' || code === 'EPERM' ? `${path} belongs to root: run \`sudo nle allocator --apply\`.` : undefined,
      details: {path, errno: code},
      cause: error,
    })
  }
}

export async function readAllocatorFile(path: string): Promise<string> {
  try {
    await access(path, constants.R_OK)
    return await readFile(path, 'utf8')
  } catch (error) {
    throw hostError('ALLOCATOR_CONFIG_NOT_FOUND', `Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'Install aws-nitro-enclaves-cli (it ships /etc/nitro_enclaves/allocator.yaml) or pass --file PATH.',
      cause: error,
    })
  }
}
