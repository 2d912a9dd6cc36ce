/**
 * The enclave's memory: the rule run-enclave applies to an EIF, the runtime's need on top of it, and
 * what the parent host can reserve.
 *
 * Rules (aws-nitro-enclaves-cli `enclave_proc/resource_manager.rs`, the nitro_enclaves driver):
 *  - run-enclave fails with E26 when `4 * eif_bytes > memory_mib << 20`;
 *  - enclave memory is backed by hugepages; the driver's minimum is 64 MiB; nle rounds to 2 MiB pages.
 */
import {kvBytesPerToken} from '../model/kv-size.js'
import {hostError} from './errors.js'
import {DEFAULT_HOST_PATHS, type HostPaths, readHostText} from './procfs.js'

export const MIB = 1024 * 1024
/** nitro-cli's ENCLAVE_MEMORY_EIF_SIZE_RATIO. */
export const EIF_MEMORY_RATIO = 4
export const HUGEPAGE_MIB = 2
/** NE_MIN_ENCLAVE_MEM_SIZE in the nitro_enclaves driver. */
export const NE_MIN_MEMORY_MIB = 64
/** Node + onnxruntime + the enclave server, before the model and KV cache (a measured-ballpark allowance). */
export const RUNTIME_OVERHEAD_MIB = 256

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
// The host's memory: /proc/meminfo

/** Memory `nle allocator` leaves to the parent host when checking what it can reserve. */
export const HOST_RESERVE_MIB = 512

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

export async function readMemInfo(paths: HostPaths = DEFAULT_HOST_PATHS): Promise<MemInfo> {
  return parseMemInfo(await readHostText(paths.meminfo))
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
