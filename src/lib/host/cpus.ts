/**
 * The enclave's CPUs: the host's topology (/sys/devices/system/cpu) and the plan the allocator
 * follows — CPUs are reserved as full cores and never from CPU 0's core.
 */
import {join} from 'node:path'

import {hostError} from './errors.js'
import {DEFAULT_HOST_PATHS, type HostPaths, readHostText} from './procfs.js'

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

export async function readCpuTopology(paths: HostPaths = DEFAULT_HOST_PATHS): Promise<CpuTopology> {
  const online = parseCpuList(await readHostText(join(paths.cpuDir, 'online')))
  const siblings = new Map<number, number[]>()
  for (const cpu of online) {
    const list = await readHostText(join(paths.cpuDir, `cpu${cpu}`, 'topology', 'thread_siblings_list')).catch(() => String(cpu))
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
