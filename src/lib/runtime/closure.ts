/**
 * Figures of a runtime package's production closure, as the image ships it: packages, files and
 * bytes under an installed node_modules (or, from a lockfile alone, under the folders nle's own
 * node_modules holds for the same entries), with other platforms' native binaries left out as the
 * image's prune step removes them, and the package parts it removes (src/lib/host/prune.ts).
 */
import {existsSync, lstatSync, readdirSync} from 'node:fs'
import {join, relative, sep} from 'node:path'

import {holdsNoCode, isRemovedByPrune, unloadedEntries} from '../host/prune.js'
import type {Lockfile} from './lock.js'

export interface ClosureFigures {
  packages: number
  files: number
  bytes: number
  /** Package names (with their lockfile path when nested), sorted. */
  names: string[]
}

/**
 * Files and bytes under `dir`, other platforms' binaries left out, and not descending into `skip`
 * (absolute folders counted on their own: nested packages). Everything else counts, a package's own
 * bundled node_modules included (protobufjs ships cli/node_modules).
 */
function tally(dir: string, base: string, skip: ReadonlySet<string>): {files: number; bytes: number} {
  let files = 0
  let bytes = 0
  const walk = (d: string): void => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      const rel = relative(base, p).split(sep).join('/')
      if (e.isDirectory()) {
        if (skip.has(p) || isRemovedByPrune(rel)) continue
        walk(p)
      } else if (e.isFile() && !isRemovedByPrune(rel)) {
        files += 1
        bytes += lstatSync(p).size
      }
    }
  }
  walk(dir)
  return {files, bytes}
}

/** The figures of the entries a lockfile lists, measured in `root`/<entry path> (nle's own tree). */
export function lockClosureFigures(lock: Lockfile, root: string): ClosureFigures {
  let files = 0
  let bytes = 0
  // Less the packages the prune step removes as never loaded (install-script-only, type-only).
  const unloaded = new Set(unloadedEntries(lock.packages, lock.packages[''] ?? {}, (at) => existsSync(join(root, at)) && holdsNoCode(join(root, at))))
  // And the optional packages of other platforms (cbor-extract's), which npm does not install here.
  const entries = Object.keys(lock.packages).filter((p) => p !== '' && !unloaded.has(p) && existsSync(join(root, p))).sort()
  const dirs = new Set(entries.map((at) => join(root, at)))
  // Nested entries of nle's tree that this lockfile does not list must not count either.
  for (const at of Object.keys(lock.packages)) if (at !== '') dirs.add(join(root, at))
  for (const at of entries) {
    const dir = join(root, at)
    const nested = new Set([...dirs].filter((d) => d !== dir && d.startsWith(`${dir}${sep}`)))
    // Other packages nle's tree nests here (not in this lockfile): skip them too.
    const nm = join(dir, 'node_modules')
    if (existsSync(nm)) nested.add(nm)
    const t = tally(dir, root, nested)
    files += t.files
    bytes += t.bytes
  }
  // A nested entry of this lockfile is under its parent's node_modules, skipped above: count it.
  return {packages: entries.length, files, bytes, names: entries.map((at) => at.replace(/^node_modules\//, ''))}
}

/** The figures of an installed node_modules: every file under it; packages are the folders with a package.json right under a node_modules. */
export function installedClosureFigures(nodeModules: string): ClosureFigures {
  const names: string[] = []
  const base = join(nodeModules, '..')
  const find = (d: string, underNodeModules: boolean): void => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      if (!e.isDirectory()) continue
      const p = join(d, e.name)
      if (isRemovedByPrune(relative(base, p).split(sep).join('/'))) continue
      if (e.name === 'node_modules') find(p, true)
      else if (underNodeModules && e.name.startsWith('@')) find(p, true)
      else {
        if (underNodeModules && existsSync(join(p, 'package.json'))) names.push(relative(nodeModules, p).split(sep).join('/'))
        find(p, false)
      }
    }
  }
  find(nodeModules, true)
  const t = tally(nodeModules, base, new Set())
  return {packages: names.length, files: t.files, bytes: t.bytes, names: names.sort()}
}
