/**
 * Figures of a runtime package's production closure, as the image ships it: packages, files and
 * bytes under an installed node_modules (or, from a lockfile alone, under the folders nle's own
 * node_modules holds for the same entries), with other platforms' native binaries left out as the
 * image's prune step removes them (src/lib/host/prune.ts).
 */
import {existsSync, lstatSync, readdirSync} from 'node:fs'
import {join, relative, sep} from 'node:path'

import {isForeignBinary} from '../host/prune.js'
import type {Lockfile} from './lock.js'

export interface ClosureFigures {
  packages: number
  files: number
  bytes: number
  /** Package names (with their lockfile path when nested), sorted. */
  names: string[]
}

/** Files and bytes under `dir`, skipping nested node_modules and foreign binaries. */
function tally(dir: string, base: string): {files: number; bytes: number} {
  let files = 0
  let bytes = 0
  const walk = (d: string): void => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) {
        if (e.name === 'node_modules' || isForeignBinary(relative(base, p).split(sep).join('/'))) continue
        walk(p)
      } else if (e.isFile() && !isForeignBinary(relative(base, p).split(sep).join('/'))) {
        files += 1
        bytes += lstatSync(p).size
      }
    }
  }
  walk(dir)
  return {files, bytes}
}

/** The figures of the entries a lockfile lists, measured in `nodeModulesRoot`/<entry path>. */
export function lockClosureFigures(lock: Lockfile, root: string): ClosureFigures {
  let files = 0
  let bytes = 0
  const names: string[] = []
  for (const at of Object.keys(lock.packages).filter((p) => p !== '').sort()) {
    const dir = join(root, at)
    names.push(at.replace(/^node_modules\//, ''))
    if (!existsSync(dir)) continue // an optional package for another platform
    const t = tally(dir, root)
    files += t.files
    bytes += t.bytes
  }
  return {packages: names.length, files, bytes, names}
}

/** The figures of an installed node_modules (every package folder, nested ones included). */
export function installedClosureFigures(nodeModules: string): ClosureFigures {
  const names: string[] = []
  let files = 0
  let bytes = 0
  const base = join(nodeModules, '..')
  const visit = (nm: string): void => {
    if (!existsSync(nm)) return
    for (const entry of readdirSync(nm, {withFileTypes: true})) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue
      const dirs = entry.name.startsWith('@') ? readdirSync(join(nm, entry.name), {withFileTypes: true}).filter((e) => e.isDirectory()).map((e) => join(nm, entry.name, e.name)) : [join(nm, entry.name)]
      for (const d of dirs) {
        if (!existsSync(join(d, 'package.json'))) continue
        names.push(relative(nodeModules, d).split(sep).join('/'))
        const t = tally(d, base)
        files += t.files
        bytes += t.bytes
        visit(join(d, 'node_modules'))
      }
    }
  }
  visit(nodeModules)
  return {packages: names.length, files, bytes, names: names.sort()}
}
