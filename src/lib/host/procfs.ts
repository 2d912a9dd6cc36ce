/** What nle reads of the parent host's kernel: /proc/meminfo and /sys/devices/system/cpu (paths replaceable in tests). */
import {readFile} from 'node:fs/promises'

import {hostError} from './errors.js'

export interface HostPaths {
  meminfo: string
  cpuDir: string
}

export const DEFAULT_HOST_PATHS: HostPaths = {meminfo: '/proc/meminfo', cpuDir: '/sys/devices/system/cpu'}

export async function readHostText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    throw hostError('HOST_PROC_UNREADABLE', `Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      hint: 'nle allocator reads /proc and /sys of a Linux host; run it on the Nitro host itself.',
      cause: error,
    })
  }
}
