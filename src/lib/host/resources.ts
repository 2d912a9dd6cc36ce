/**
 * How much memory and how many CPUs the project's enclave needs, from its EIF and its model, and
 * `nle allocator`'s plan/apply around /etc/nitro_enclaves/allocator.yaml.
 */
import {readFile, stat} from 'node:fs/promises'
import {basename, join} from 'node:path'

import type {LoadedConfig} from '../config/load.js'
import {isNleError} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import {unifiedDiff} from '../diff.js'
import {kvBytesPerToken, kvShapeFromConfig} from '../model/kv-size.js'
import {DTYPES, type Dtype, readDecoderConfig} from '../model/layout.js'
import {MAX_AUTO_BATCH} from '../server/kv-budget.js'
import {type AllocatorSettings, DEFAULT_ALLOCATOR_YAML, readAllocatorFile, readAllocatorSettings, updateAllocatorYaml} from './allocator-yaml.js'
import {type CpuPlan, planCpus, readCpuTopology} from './cpus.js'
import {type KvCacheShape, type LayoutComparison, type MemoryPlan, type ModelFile, type RuntimeNeed, checkHostMemory, compareLayouts, kvCacheBytes, planEnclaveMemory, readMemInfo} from './memory.js'
import {DEFAULT_HOST_PATHS, type HostPaths} from './procfs.js'
import {writeFileAtomicWithBackup} from './write-backup.js'
import {type Bootability, eifBootability} from './bootable.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {describeEnclaves} from './nitro-cli.js'
import {projectPaths} from './project.js'
import {ALLOCATOR_UNIT, restartUnit} from './systemctl.js'

export interface RuntimeEstimate extends RuntimeNeed {
  /** How the KV cache was sized, when the model's config allowed it. */
  kvCache?: KvCacheShape & {bytesPerToken: number}
}

/**
 * The runtime's resident need: the model's bytes (nle-model.json totalBytes) and the KV cache of
 * batch × context × per-token KV bytes, the batch being proxy.concurrency (the proxy never forwards
 * more generations at once) but at most the enclave server's largest automatic batch (it queues
 * the rest, which hold no cache). Undefined when no saved model is found.
 */
export async function runtimeNeedFor(loaded: LoadedConfig): Promise<RuntimeEstimate | undefined> {
  return (await savedModelNeed(loaded))?.runtime
}

/** The saved model's files as its manifest lists them (path and size only), when they are all well-formed. */
function manifestFiles(value: unknown): ModelFile[] | undefined {
  if (!Array.isArray(value)) return undefined
  const files = value.map((f: unknown) => (typeof f === 'object' && f !== null ? (f as Record<string, unknown>) : {}))
  if (!files.every((f) => typeof f.path === 'string' && typeof f.size === 'number' && Number.isSafeInteger(f.size) && f.size >= 0)) return undefined
  return files.map((f) => ({path: f.path as string, size: f.size as number}))
}

async function savedModelNeed(loaded: LoadedConfig): Promise<{runtime: RuntimeEstimate; files: ModelFile[] | undefined} | undefined> {
  const dir = projectPaths(loaded).modelDir
  let modelBytes: number
  let dtype: Dtype | undefined
  let files: ModelFile[] | undefined
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'nle-model.json'), 'utf8')) as {totalBytes?: unknown; dtype?: unknown; files?: unknown}
    if (typeof manifest.totalBytes !== 'number') return undefined
    modelBytes = manifest.totalBytes
    dtype = typeof manifest.dtype === 'string' && (DTYPES as readonly string[]).includes(manifest.dtype) ? (manifest.dtype as Dtype) : undefined
    files = manifestFiles(manifest.files)
  } catch {
    return undefined
  }
  return {runtime: await runtimeNeedOf(loaded, dir, modelBytes, dtype), files}
}

async function runtimeNeedOf(loaded: LoadedConfig, dir: string, modelBytes: number, dtype: Dtype | undefined): Promise<RuntimeEstimate> {
  const cfg = await readDecoderConfig(dir).catch(() => undefined)
  const shape = cfg === undefined ? undefined : kvShapeFromConfig(cfg, dtype)
  if (shape === undefined || !cfg?.maxPositions) return {modelBytes, kvCacheBytes: 0}
  // The enclave server's automatic batch is at most MAX_AUTO_BATCH; the proxy forwards at most proxy.concurrency.
  const kvCache = {...shape, contextTokens: cfg.maxPositions, sequences: Math.min(loaded.config.proxy.concurrency, MAX_AUTO_BATCH)}
  return {modelBytes, kvCacheBytes: kvCacheBytes(kvCache), kvCache: {...kvCache, bytesPerToken: kvBytesPerToken(shape)}}
}

export interface EnclaveMemory extends MemoryPlan {
  runtime?: RuntimeEstimate
  /**
   * The EIF and the memory (automatic sizing) with the model embedded and with it sealed
   * (model.sealed): the built EIF's layout read, the other derived (./memory.ts compareLayouts).
   * Absent when no saved model manifest lists the files.
   */
  layouts?: LayoutComparison
}

export async function enclaveMemoryFor(loaded: LoadedConfig, eifBytes: number): Promise<EnclaveMemory> {
  const saved = await savedModelNeed(loaded)
  const runtime = saved?.runtime
  const plan = planEnclaveMemory(eifBytes, runtime, loaded.config.enclave.memoryMiB)
  const layouts = saved?.files === undefined ? undefined : compareLayouts({eifBytes, built: loaded.config.model.sealed ? 'sealed' : 'embedded', files: saved.files, runtime})
  return {...plan, ...(runtime ? {runtime} : {}), ...(layouts ? {layouts} : {})}
}

/** The built EIF's size: the file when present, else what the lockfile recorded. */
export async function eifSizeFor(loaded: LoadedConfig, eifPath?: string): Promise<{path: string; bytes: number} & Partial<Bootability>> {
  const paths = projectPaths(loaded)
  const path = eifPath ?? paths.eifPath
  const st = await stat(path).catch(() => undefined)
  if (st?.isFile()) return {path, bytes: st.size, ...(await eifBootability(path))}
  if (eifPath === undefined) {
    const lock = await readLockfile(paths.lockfile).catch((error: unknown) => (isNleError(error) ? undefined : Promise.reject(error)))
    if (lock) return {path, bytes: lock.eif.size}
  }
  throw hostError('ALLOCATOR_NO_EIF', `No EIF at ${path} (and no lockfile recording its size).`, {
    hint: 'Build it first: `nle build` (the memory needed depends on the EIF size).',
    details: {path},
  })
}

export interface AllocatorPlan {
  file: string
  eif: {path: string; bytes: number} & Partial<Bootability>
  memory: EnclaveMemory
  cpus: CpuPlan
  host: {memTotalMiB: number; capacityMiB: number; onlineCpus: number}
  current: AllocatorSettings
  proposed: {memory_mib: number; cpu_count: number}
  changed: boolean
  diff: string
  /** The new file text (not part of --json output). */
  text: string
}

export interface AllocatorOptions {
  loaded: LoadedConfig
  file?: string
  eifPath?: string
  hostPaths?: HostPaths
}

export async function planAllocator(o: AllocatorOptions): Promise<AllocatorPlan> {
  const file = o.file ?? DEFAULT_ALLOCATOR_YAML
  const hostPaths = o.hostPaths ?? DEFAULT_HOST_PATHS
  const eif = await eifSizeFor(o.loaded, o.eifPath)
  const memory = await enclaveMemoryFor(o.loaded, eif.bytes)
  const [mem, topo] = await Promise.all([readMemInfo(hostPaths), readCpuTopology(hostPaths)])
  const cpus = planCpus(o.loaded.config.enclave.cpuCount, topo)
  const {capacityMiB} = checkHostMemory(memory.memoryMiB, mem)
  const before = await readAllocatorFile(file)
  const current = readAllocatorSettings(before, file)
  const proposed = {memory_mib: memory.memoryMiB, cpu_count: cpus.cpuCount}
  const text = updateAllocatorYaml(before, {memoryMiB: proposed.memory_mib, cpuCount: proposed.cpu_count}, file)
  return {
    file,
    eif,
    memory,
    cpus,
    host: {memTotalMiB: Math.floor(mem.memTotalKiB / 1024), capacityMiB, onlineCpus: topo.online.length},
    current,
    proposed,
    changed: text !== before,
    diff: unifiedDiff(before, text, {from: `a/${basename(file)}`, to: `b/${basename(file)}`}),
    text,
  }
}

export interface ApplyResult {
  written: boolean
  backup?: string
  restarted: boolean
}

/** Write the plan (atomically, with a backup) and restart the allocator; refuses while an enclave runs. */
export async function applyAllocator(plan: AllocatorPlan, ctx: HostContext): Promise<ApplyResult> {
  if (!plan.changed) return {written: false, restarted: false}
  const running = await describeEnclaves(ctx)
  if (running.length > 0) {
    throw hostError('ALLOCATOR_ENCLAVE_RUNNING', `${running.length} enclave(s) are running (${running.map((e) => e.EnclaveName ?? e.EnclaveID).join(', ')}); the allocator cannot change its reservation under them.`, {
      hint: 'Stop them first (`nle stop`, or `nitro-cli terminate-enclave --all`), then apply again.',
      details: {enclaves: running.map((e) => e.EnclaveID)},
    })
  }
  const {backup} = await writeFileAtomicWithBackup(plan.file, plan.text)
  try {
    await restartUnit(ctx, ALLOCATOR_UNIT)
  } catch (error) {
    throw hostError('ALLOCATOR_RESTART_FAILED', `${plan.file} was written, but restarting ${ALLOCATOR_UNIT} failed.`, {
      hint: `See \`journalctl -u ${ALLOCATOR_UNIT}\`: the host may lack the hugepages or CPUs. The previous file is ${backup ?? '(none)'}; copy it back and restart the service to undo.`,
      details: {file: plan.file, backup: backup ?? null},
      cause: error,
    })
  }
  return {written: true, ...(backup ? {backup} : {}), restarted: true}
}
