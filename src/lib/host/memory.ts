/**
 * The enclave's memory: the rule run-enclave applies to an EIF, the runtime's need on top of it, and
 * what the parent host can reserve.
 *
 * Rules (aws-nitro-enclaves-cli `enclave_proc/resource_manager.rs`, the nitro_enclaves driver):
 *  - run-enclave fails with E26 when `4 * eif_bytes > memory_mib << 20`;
 *  - enclave memory is backed by hugepages; the driver's minimum is 64 MiB; nle rounds to 2 MiB pages.
 */
import {cpioEntryBytes} from '../eif/cpio.js'
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
// Embedded vs sealed model (model.sealed, issue 24)
//
// Embedded, the EIF carries the model's files, so the model counts five times: four in the 4x
// rule and once more as the runtime's loaded copy. Sealed, the EIF carries the runtime and a small
// sealed manifest; the enclave streams the weights in and holds them decrypted once. Both are
// the same rule — 4 x EIF + model + KV cache + runtime overhead — over different EIFs, so the
// memory for the EIF that was built is planEnclaveMemory's, and only the other layout's EIF size
// has to be derived: the built EIF with the model's ramdisk entries taken out and the sealed
// manifest's put in (or the reverse), each entry sized as the cpio writer lays it out.

/** Where the image holds the model (templates/enclave/Dockerfile WORKDIR /app; the customer ramdisk's rootfs/). */
export const IMAGE_MODEL_DIR = 'rootfs/app/model'
/** The sealed manifest's name in the image, for the estimate (a few bytes of name either way). */
export const SEALED_MANIFEST_NAME = 'nle-sealed.json'
/** The chunk size the estimate assumes (AES-256-GCM chunks of a few MiB). */
export const SEALED_CHUNK_BYTES = 4 * MIB
/** Per chunk in the sealed manifest: a sha256 in hex and its JSON quoting, a nonce and tag, with room to spare. */
const SEALED_MANIFEST_BYTES_PER_CHUNK = 160
/** Per file: its path, size, sha256 and the JSON around them. */
const SEALED_MANIFEST_BYTES_PER_FILE = 256
/** The wrapped data key (a KMS CiphertextBlob, base64), the encryption context, the manifest digest, the format fields. */
const SEALED_MANIFEST_BYTES_BASE = 2048

export interface ModelFile {
  path: string
  size: number
}

/** An upper estimate of the sealed manifest's size: per-chunk digests dominate (about 40 bytes per MiB of model). */
export function estimateSealedManifestBytes(files: readonly ModelFile[], chunkBytes = SEALED_CHUNK_BYTES): number {
  let bytes = SEALED_MANIFEST_BYTES_BASE
  for (const f of files) bytes += SEALED_MANIFEST_BYTES_PER_FILE + Buffer.byteLength(f.path, 'utf8') + Math.max(1, Math.ceil(f.size / chunkBytes)) * SEALED_MANIFEST_BYTES_PER_CHUNK
  return bytes
}

/** The ramdisk bytes the model's files take in an embedded EIF: each file's entry under IMAGE_MODEL_DIR and the entries of its sub-folders. */
export function embeddedModelEntryBytes(files: readonly ModelFile[]): number {
  const dirs = new Set<string>()
  let bytes = 0
  for (const f of files) {
    bytes += cpioEntryBytes(`${IMAGE_MODEL_DIR}/${f.path}`, f.size)
    const parts = f.path.split('/').slice(0, -1)
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'))
  }
  for (const d of dirs) bytes += cpioEntryBytes(`${IMAGE_MODEL_DIR}/${d}`)
  return bytes
}

export interface LayoutFigure {
  eifBytes: number
  /** False for the EIF that was built (its size is read); true for the other layout's (derived from it). */
  estimated: boolean
  eifRuleMiB: number
  runtimeMiB: number
  memoryMiB: number
}

export interface LayoutComparison {
  /** The layout of the EIF that was built (model.sealed). */
  built: 'embedded' | 'sealed'
  embedded: LayoutFigure
  sealed: LayoutFigure
  /** sealed / embedded, rounded to 3 decimals. */
  ratio: {eif: number; memory: number}
  /** The bytes swapped between the two: the model's ramdisk entries and the sealed manifest's. */
  swap: {modelEntryBytes: number; sealedManifestBytes: number; sealedManifestEstimated: boolean}
}

/**
 * Both layouts' EIF size and enclave memory (automatic sizing) from the EIF that was built, the
 * model's files and the runtime need. `sealedManifestBytes`: the sealed manifest's real size when
 * known, else estimateSealedManifestBytes.
 */
export function compareLayouts(o: {eifBytes: number; built: 'embedded' | 'sealed'; files: readonly ModelFile[]; runtime: RuntimeNeed | undefined; sealedManifestBytes?: number}): LayoutComparison {
  const modelEntryBytes = embeddedModelEntryBytes(o.files)
  const manifestBytes = o.sealedManifestBytes ?? estimateSealedManifestBytes(o.files)
  const manifestEntry = cpioEntryBytes(`${IMAGE_MODEL_DIR}/${SEALED_MANIFEST_NAME}`, manifestBytes)
  const embeddedEif = o.built === 'embedded' ? o.eifBytes : o.eifBytes - manifestEntry + modelEntryBytes
  const sealedEif = o.built === 'sealed' ? o.eifBytes : Math.max(0, o.eifBytes - modelEntryBytes) + manifestEntry
  const figure = (eifBytes: number, estimated: boolean): LayoutFigure => {
    const {eifRuleMiB, runtimeMiB, memoryMiB} = planEnclaveMemory(eifBytes, o.runtime)
    return {eifBytes, estimated, eifRuleMiB, runtimeMiB, memoryMiB}
  }
  const embedded = figure(embeddedEif, o.built !== 'embedded')
  const sealed = figure(sealedEif, o.built !== 'sealed')
  const r = (a: number, b: number): number => Math.round((a / b) * 1000) / 1000
  return {
    built: o.built,
    embedded,
    sealed,
    ratio: {eif: r(sealed.eifBytes, embedded.eifBytes), memory: r(sealed.memoryMiB, embedded.memoryMiB)},
    swap: {modelEntryBytes, sealedManifestBytes: manifestBytes, sealedManifestEstimated: o.sealedManifestBytes === undefined},
  }
}

const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`

/** The comparison as table rows for `nle allocator` and `nle build` (label, value). */
export function layoutRows(c: LayoutComparison): [string, string][] {
  const row = (name: 'embedded' | 'sealed', f: LayoutFigure): [string, string] => [
    `${name === 'embedded' ? 'model embedded' : 'model sealed'}${c.built === name ? ' (this EIF)' : ''}`,
    `EIF ${mib(f.eifBytes)}${f.estimated ? ' (estimated)' : ''} -> memory ${f.memoryMiB} MiB (4x EIF ${f.eifRuleMiB} + runtime ${f.runtimeMiB})`,
  ]
  return [row('embedded', c.embedded), row('sealed', c.sealed), ['sealed / embedded', `EIF ${c.ratio.eif}x, memory ${c.ratio.memory}x`]]
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
