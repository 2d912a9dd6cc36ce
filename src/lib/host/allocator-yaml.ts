/**
 * /etc/nitro_enclaves/allocator.yaml (aws-nitro-enclaves-cli `bootstrap/nitro-enclaves-allocator`):
 * read it, and set its memory and CPUs as a YAML document edited in place, so every comment and the
 * key order survive.
 */
import {constants} from 'node:fs'
import {access, readFile} from 'node:fs/promises'

import {type Document, isMap, isPair, isScalar, parseDocument} from 'yaml'

import {hostError} from './errors.js'

export const DEFAULT_ALLOCATOR_YAML = '/etc/nitro_enclaves/allocator.yaml'

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
