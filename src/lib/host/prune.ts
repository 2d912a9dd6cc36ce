// The runtime's native packages ship prebuilt binaries for every platform (onnxruntime-node: about
// 290 MB, of which linux-x64 is 45 MB; koffi: one folder per OS/arch/libc). An enclave image runs on
// one platform, so after `npm ci` the image removes the others (and UNUSED_PARTS, below):
//
//   node dist/lib/host/prune.js --verify node_modules
//
// (templates/enclave/Dockerfile). The platform kept is the one of the node that runs the script,
// i.e. the image's. It refuses (exit 1) when a package has no binary for that platform, and with
// --verify it then loads each pruned package, so a broken image fails at build time, not at boot.
// Only node: builtins (and ../errors.ts, which has no imports, and ../runtime/lock.ts, which has
// none either) here: the script runs in the image before anything else is known to work.
import {existsSync, lstatSync, readFileSync, readdirSync, rmSync, statSync} from 'node:fs'
import {createRequire} from 'node:module'
import {dirname, join, relative, resolve, sep} from 'node:path'
import {pathToFileURL} from 'node:url'

import {NleError} from '../errors.js'
import {type LockEntry, resolveInLock} from '../runtime/lock.js'

export interface Platform {
  platform: string
  arch: string
}

interface NativePackage {
  name: string
  /** Folders, relative to the package, whose entries are per-platform binaries. */
  roots(pkgDir: string): string[]
  /** How deep the per-platform entries sit under a root: onnxruntime-node has <platform>/<arch>. */
  depth: 1 | 2
  /** The entries (relative to a root, '/'-separated) the package loads on this platform. */
  keep(t: Platform): string[]
}

const listDirs = (dir: string): string[] =>
  existsSync(dir) ? readdirSync(dir, {withFileTypes: true}).filter((e) => e.isDirectory()).map((e) => e.name) : []

/** The packages pruned, and what each loads (onnxruntime-node dist/binding.js, koffi index.js). */
export const NATIVE_PACKAGES: readonly NativePackage[] = [
  {
    name: 'onnxruntime-node',
    // bin/napi-v<N>/<platform>/<arch>/onnxruntime_binding.node
    roots: (pkg) => listDirs(join(pkg, 'bin')).filter((d) => /^napi-v\d+$/.test(d)).map((d) => `bin/${d}`),
    depth: 2,
    keep: (t) => [`${t.platform}/${t.arch}`],
  },
  {
    name: 'koffi',
    // build/koffi/<platform>_<arch>/koffi.node; on Linux it falls back to the musl build.
    roots: () => ['build/koffi'],
    depth: 1,
    keep: (t) => (t.platform === 'linux' ? [`linux_${t.arch}`, `musl_${t.arch}`] : [`${t.platform}_${t.arch}`]),
  },
]

const segments = (p: string): string[] => p.split(/[\\/]+/).filter((s) => s.length > 0)

/**
 * Whether `path` (absolute or relative, any separator) lies inside another platform's binaries of a
 * package in NATIVE_PACKAGES: the files the image removes. Used by bench/engine.ts to measure what
 * the image ships.
 */
export function isForeignBinary(path: string, target: Platform = {platform: process.platform, arch: process.arch}): boolean {
  const s = segments(path)
  for (const pkg of NATIVE_PACKAGES) {
    for (let i = s.lastIndexOf(pkg.name); i >= 0; i = s.lastIndexOf(pkg.name, i - 1)) {
      if (s[i - 1] !== 'node_modules') continue
      const rest = s.slice(i + 1)
      const keep = new Set(pkg.keep(target))
      if (pkg.name === 'onnxruntime-node') {
        if (rest[0] === 'bin' && /^napi-v\d+$/.test(rest[1] ?? '') && rest.length >= 3) {
          // Only the platform level given: foreign unless some kept entry is under it.
          if (rest.length === 3) return ![...keep].some((k) => k.startsWith(`${rest[2]}/`))
          return !keep.has(`${rest[2]}/${rest[3]}`)
        }
      } else if (rest[0] === 'build' && rest[1] === 'koffi' && rest.length >= 3) {
        return !keep.has(rest[2] as string)
      }
      break
    }
  }
  return false
}

/**
 * Parts of packages the runtime never loads, removed with the other platforms' binaries:
 * protobufjs's command-line tools (bin/ and cli/: pbjs, pbts; onnx-proto needs only its library),
 * whose cli/ ships its own bundled node_modules of ~55 packages (jsdoc, markdown-it, espree,
 * lodash, …), ~12 MB.
 */
export const UNUSED_PARTS: readonly {name: string; path: string}[] = [
  {name: 'protobufjs', path: 'cli'},
  {name: 'protobufjs', path: 'bin'},
]

/** Whether `path` lies inside an UNUSED_PARTS folder of an installed package. */
export function isUnusedPart(path: string): boolean {
  const s = segments(path)
  return UNUSED_PARTS.some(({name, path: part}) => {
    const parts = segments(part)
    for (let i = s.indexOf(name); i >= 0; i = s.indexOf(name, i + 1)) {
      if (s[i - 1] === 'node_modules' && parts.every((p, j) => s[i + 1 + j] === p)) return true
    }
    return false
  })
}

/** What the image's prune step removes: another platform's binaries, or an unused part. */
export function isRemovedByPrune(path: string, target: Platform = {platform: process.platform, arch: process.arch}): boolean {
  return isForeignBinary(path, target) || isUnusedPart(path)
}

export interface PruneReport {
  target: Platform
  packages: {name: string; kept: string[]; removed: string[]; removedBytes: number}[]
  /** UNUSED_PARTS removed (package folder relative to node_modules, the part's path). */
  parts: {name: string; path: string; removedBytes: number}[]
  /** Whole packages nothing loads at run time (unloadedPackages), by lockfile path ("node_modules/adm-zip"). */
  unloaded?: {path: string; removedBytes: number}[]
  removedBytes: number
}

// ---------------------------------------------------------------------------------------------
// Packages installed but never loaded

/**
 * Dependencies a package declares only for its install script, which the image never runs (npm ci
 * --ignore-scripts; onnxruntime-node ships its CPU binaries in the package): onnxruntime-node's
 * script/install.js downloads GPU builds with adm-zip and global-agent; its dist/ requires only
 * onnxruntime-common. The prune step checks that claim (INSTALL_ONLY_CHECK) before it relies on it.
 */
export const INSTALL_SCRIPT_ONLY: Readonly<Record<string, readonly string[]>> = {
  'onnxruntime-node': ['adm-zip', 'global-agent'],
}
/** Where such a package's run-time code lives: none of it may name an install-only dependency. */
const INSTALL_ONLY_CHECK: Readonly<Record<string, readonly string[]>> = {
  'onnxruntime-node': ['dist', 'lib'],
}

/** A package's lockfile entry or package.json: what it depends on (dependencies, optional and peer). */
export type DeclaredDeps = LockEntry

/**
 * The entries (lockfile paths: "node_modules/x", "node_modules/x/node_modules/y") that nothing loads
 * at run time: those not reachable from the root's dependencies once two kinds of edge are cut, the
 * install-script-only ones (INSTALL_SCRIPT_ONLY) and those to a package that holds no loadable file
 * (`typeOnly`: type declarations only, like @types/node and undici-types, which protobufjs lists as
 * dependencies for its TypeScript users).
 */
/** The package name a lockfile path installs ("node_modules/a/node_modules/@s/b" → "@s/b"). */
const packageNameAt = (at: string): string => at.slice(at.lastIndexOf('node_modules/') + 'node_modules/'.length)

export function unloadedEntries(entries: Readonly<Record<string, DeclaredDeps>>, root: DeclaredDeps, typeOnly: (at: string) => boolean): string[] {
  const reached = new Set<string>()
  const queue: [string, DeclaredDeps][] = [['', root]]
  while (queue.length > 0) {
    const [at, pkg] = queue.pop()!
    const cut = new Set(at === '' ? [] : (INSTALL_SCRIPT_ONLY[packageNameAt(at)] ?? []))
    const names = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})])
    for (const dep of [...names].sort()) {
      if (cut.has(dep)) continue
      const target = resolveInLock(entries, at, dep)
      if (target === undefined || reached.has(target) || typeOnly(target)) continue
      reached.add(target)
      queue.push([target, entries[target]!])
    }
  }
  return Object.keys(entries).filter((at) => at !== '' && !reached.has(at)).sort()
}

/** Whether the package folder holds nothing node can load: no .js/.cjs/.mjs/.node/.wasm, no JSON but package.json. */
export function holdsNoCode(dir: string): boolean {
  const walk = (d: string, top: boolean): boolean => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      if (e.isDirectory()) {
        if (e.name === 'node_modules') continue
        if (!walk(join(d, e.name), false)) return false
      } else if (/\.(c|m)?js$|\.node$|\.wasm$/.test(e.name) || (e.name.endsWith('.json') && !(top && e.name === 'package.json'))) {
        return false
      }
    }
    return true
  }
  return walk(dir, true)
}

/** The installed packages under `nodeModules`, by lockfile path, with what each declares. */
function installedEntries(nodeModules: string): Record<string, DeclaredDeps> {
  const out: Record<string, DeclaredDeps> = {}
  const walk = (nm: string, prefix: string): void => {
    for (const entry of listDirs(nm)) {
      const names = entry.startsWith('@') ? listDirs(join(nm, entry)).map((e) => `${entry}/${e}`) : [entry]
      for (const name of names) {
        const dir = join(nm, ...name.split('/'))
        if (!existsSync(join(dir, 'package.json'))) continue
        const at = `${prefix}node_modules/${name}`
        out[at] = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as DeclaredDeps
        walk(join(dir, 'node_modules'), `${at}/`)
      }
    }
  }
  walk(nodeModules, '')
  return out
}

/** Fails (HOST_PRUNE_FAILED) when a package's run-time code names a dependency INSTALL_SCRIPT_ONLY says only its install script uses. */
function checkInstallOnly(nodeModules: string, entries: Readonly<Record<string, DeclaredDeps>>): void {
  for (const at of Object.keys(entries)) {
    const name = packageNameAt(at)
    const deps = INSTALL_SCRIPT_ONLY[name]
    if (!deps) continue
    const dir = join(dirname(resolve(nodeModules)), ...at.split('/'))
    const files: string[] = []
    const walk = (d: string): void => {
      for (const e of readdirSync(d, {withFileTypes: true})) {
        if (e.isDirectory() && e.name !== 'node_modules') walk(join(d, e.name))
        else if (e.isFile() && /\.(c|m)?js$/.test(e.name)) files.push(join(d, e.name))
      }
    }
    for (const sub of INSTALL_ONLY_CHECK[name] ?? []) if (existsSync(join(dir, sub))) walk(join(dir, sub))
    for (const f of files) {
      const text = readFileSync(f, 'utf8')
      const named = deps.find((d) => text.includes(`'${d}'`) || text.includes(`"${d}"`) || text.includes(`\`${d}\``))
      if (named) throw pruneError(`${relative(dir, f)} of ${name} names ${named}, which the prune step takes for an install-script-only dependency; not pruning it (update INSTALL_SCRIPT_ONLY in src/lib/host/prune.ts).`)
    }
  }
}

/**
 * Removes the packages nothing loads at run time (unloadedEntries) from `nodeModules`; the
 * runtime's package.json (next to it) gives the root's dependencies.
 */
export function pruneUnloadedPackages(nodeModules: string): {path: string; removedBytes: number}[] {
  const base = dirname(resolve(nodeModules))
  const entries = installedEntries(nodeModules)
  checkInstallOnly(nodeModules, entries)
  const root = JSON.parse(readFileSync(join(base, 'package.json'), 'utf8')) as DeclaredDeps
  const removed: {path: string; removedBytes: number}[] = []
  for (const at of unloadedEntries(entries, root, (a) => holdsNoCode(join(base, ...a.split('/'))))) {
    const dir = join(base, ...at.split('/'))
    if (!existsSync(dir)) continue // inside one removed already
    removed.push({path: at, removedBytes: bytesOf(dir)})
    rmSync(dir, {recursive: true, force: true})
  }
  return removed
}

/** The image build's prune step failed (exit 1 in the Dockerfile's RUN). */
export const pruneError = (message: string): NleError => new NleError('HOST_PRUNE_FAILED', message, {hint: 'The image would not run: check the native packages installed by npm ci for this platform.'})

function bytesOf(p: string): number {
  const st = statSync(p)
  if (!st.isDirectory()) return st.size
  let sum = 0
  for (const e of readdirSync(p)) sum += bytesOf(join(p, e))
  return sum
}

/** Every package folder named `name` under `nodeModules`, nested ones included. */
function packageDirs(nodeModules: string, name: string): string[] {
  const found: string[] = []
  const walk = (nm: string): void => {
    for (const entry of listDirs(nm)) {
      const dirs = entry.startsWith('@') ? listDirs(join(nm, entry)).map((e) => join(nm, entry, e)) : [join(nm, entry)]
      for (const d of dirs) {
        if (d.endsWith(`${sep}${name}`) && existsSync(join(d, 'package.json'))) found.push(d)
        walk(join(d, 'node_modules'))
      }
    }
  }
  walk(nodeModules)
  return found
}

/**
 * Removes the other platforms' binaries of NATIVE_PACKAGES under `nodeModules`. Throws HOST_PRUNE_FAILED,
 * removing nothing of that package, when an installed package has no binary for `target`.
 */
export function pruneForeignBinaries(nodeModules: string, target: Platform = {platform: process.platform, arch: process.arch}): PruneReport {
  const report: PruneReport = {target, packages: [], parts: [], removedBytes: 0}
  for (const pkg of NATIVE_PACKAGES) {
    for (const dir of packageDirs(nodeModules, pkg.name)) {
      const kept: string[] = []
      const doomed: string[] = []
      for (const root of pkg.roots(dir)) {
        const entries =
          pkg.depth === 1 ? listDirs(join(dir, root)) : listDirs(join(dir, root)).flatMap((p) => listDirs(join(dir, root, p)).map((a) => `${p}/${a}`))
        for (const e of entries) (pkg.keep(target).includes(e) ? kept : doomed).push(`${root}/${e}`)
      }
      if (kept.length === 0) {
        throw pruneError(`${dir} has no binary for ${target.platform}/${target.arch} (it has ${doomed.join(', ') || 'none'}); not pruning it.`)
      }
      const removed: string[] = []
      let removedBytes = 0
      for (const rel of doomed) {
        const abs = join(dir, rel)
        removedBytes += bytesOf(abs)
        rmSync(abs, {recursive: true, force: true})
        removed.push(rel)
      }
      // An emptied platform folder (bin/napi-v6/darwin) goes too.
      if (pkg.depth === 2) {
        for (const root of pkg.roots(dir)) for (const p of listDirs(join(dir, root))) if (readdirSync(join(dir, root, p)).length === 0) rmSync(join(dir, root, p), {recursive: true})
      }
      report.packages.push({name: pkg.name, kept, removed, removedBytes})
      report.removedBytes += removedBytes
    }
  }
  for (const {name, path} of UNUSED_PARTS) {
    for (const dir of packageDirs(nodeModules, name)) {
      const abs = join(dir, path)
      if (!existsSync(abs)) continue
      const removedBytes = bytesOf(abs)
      rmSync(abs, {recursive: true, force: true})
      report.parts.push({name, path, removedBytes})
      report.removedBytes += removedBytes
    }
  }
  // Only for an installed runtime (its package.json next to node_modules): whole packages nothing loads.
  if (existsSync(join(dirname(resolve(nodeModules)), 'package.json'))) {
    const unloaded = pruneUnloadedPackages(nodeModules)
    if (unloaded.length > 0) {
      report.unloaded = unloaded
      report.removedBytes += unloaded.reduce((sum, u) => sum + u.removedBytes, 0)
    }
  }
  removeDanglingBinLinks(nodeModules)
  return report
}

/** node_modules/.bin links whose target went with a pruned part (protobufjs's pbjs, pbts). */
function removeDanglingBinLinks(nodeModules: string): void {
  const walk = (nm: string): void => {
    const bin = join(nm, '.bin')
    if (existsSync(bin)) {
      for (const e of readdirSync(bin)) {
        const p = join(bin, e)
        if (lstatSync(p).isSymbolicLink() && !existsSync(p)) rmSync(p)
      }
    }
    for (const entry of listDirs(nm)) {
      const dirs = entry.startsWith('@') ? listDirs(join(nm, entry)).map((e) => join(nm, entry, e)) : [join(nm, entry)]
      for (const d of dirs) if (existsSync(join(d, 'node_modules'))) walk(join(d, 'node_modules'))
    }
  }
  walk(nodeModules)
}

/** Loads each pruned package from the folder holding `nodeModules`, as the runtime will. */
export function verifyLoads(nodeModules: string, report: PruneReport): void {
  const req = createRequire(join(dirname(resolve(nodeModules)), 'package.json'))
  for (const name of new Set([...report.packages.map((p) => p.name), ...report.parts.map((p) => p.name)])) {
    try {
      req(name)
    } catch (cause) {
      throw pruneError(`${name} does not load after pruning: ${cause instanceof Error ? cause.message.split('\n')[0] : String(cause)}`)
    }
  }
}

function main(argv: string[]): number {
  const verify = argv.includes('--verify')
  const nodeModules = argv.find((a) => !a.startsWith('--')) ?? 'node_modules'
  try {
    const report = pruneForeignBinaries(nodeModules)
    if (verify) verifyLoads(nodeModules, report)
    for (const p of report.packages) {
      process.stdout.write(`prune: ${p.name}: kept ${p.kept.join(', ')}; removed ${p.removed.length} folders, ${(p.removedBytes / 1e6).toFixed(1)} MB\n`)
    }
    for (const p of report.parts) process.stdout.write(`prune: ${p.name}: removed ${p.path}/ (not loaded at run time), ${(p.removedBytes / 1e6).toFixed(1)} MB\n`)
    for (const u of report.unloaded ?? []) process.stdout.write(`prune: removed ${u.path} (nothing loads it at run time), ${(u.removedBytes / 1e6).toFixed(2)} MB\n`)
    const loaded = [...new Set([...report.packages.map((p) => p.name), ...report.parts.map((p) => p.name)])]
    if (verify) process.stdout.write(`prune: ${loaded.join(', ') || 'nothing'} loaded on ${report.target.platform}/${report.target.arch}\n`)
    return 0
  } catch (error) {
    process.stderr.write(`prune: ${error instanceof Error ? error.message : String(error)}\n`)
    return 1
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) process.exitCode = main(process.argv.slice(2))
