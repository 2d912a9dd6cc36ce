/**
 * A runtime package's package-lock.json, derived from nle's own: the entries its dependencies reach,
 * at the same paths, versions and integrity hashes. So the enclave installs exactly the bytes the CLI
 * was tested with, and no lockfile is resolved anew (scripts/runtime-packages.ts writes it; a test
 * checks the committed one is current).
 *
 * Keeping each reached entry at its path is sound: Node resolves a name from a package by walking
 * up its node_modules folders, and every folder it would find in nle's tree that the runtime needs
 * is kept, so each require resolves to the same entry in both trees.
 */
export interface LockEntry {
  version?: string
  resolved?: string
  integrity?: string
  license?: string
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, {optional?: boolean}>
  dev?: boolean
  optional?: boolean
  devOptional?: boolean
  peer?: boolean
  [key: string]: unknown
}

export interface Lockfile {
  name?: string
  version?: string
  lockfileVersion: number
  requires?: boolean
  packages: Record<string, LockEntry>
}

export interface RootPackageJson {
  name: string
  version: string
  dependencies: Record<string, string>
  [key: string]: unknown
}

export class LockDerivationError extends Error {}

/** Where Node finds `name` when `from` (a lockfile path, '' = the root) requires it. */
export function resolveInLock(packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  let base = from
  for (;;) {
    const candidate = `${base === '' ? '' : `${base}/`}node_modules/${name}`
    if (packages[candidate] !== undefined) return candidate
    if (base === '') return undefined
    const cut = base.lastIndexOf('/node_modules/')
    base = cut < 0 ? '' : base.slice(0, cut)
  }
}

/** The entries `deps` reach in `root` (a lockfile v2/v3), with dev/peer marks dropped. */
export function deriveLockfile(root: Lockfile, pkg: RootPackageJson): Lockfile {
  if (root.lockfileVersion < 2) throw new LockDerivationError(`lockfileVersion ${root.lockfileVersion} has no "packages" map`)
  const reached = new Map<string, boolean>() // path → reached only through optional dependencies
  const queue: {from: string; name: string; optional: boolean}[] = Object.keys(pkg.dependencies).map((name) => ({from: '', name, optional: false}))
  while (queue.length > 0) {
    const {from, name, optional} = queue.shift()!
    const at = resolveInLock(root.packages, from, name)
    if (at === undefined) {
      // An optional dependency npm did not install for any platform (cbor-x's cbor-extract).
      if (optional) continue
      throw new LockDerivationError(`${from || 'the runtime package'} needs ${name}, which nle's lockfile does not hold`)
    }
    const before = reached.get(at)
    if (before !== undefined && (before === optional || !before)) continue
    reached.set(at, optional)
    const e = root.packages[at]!
    if (e.link) throw new LockDerivationError(`${at} is a link (workspace); a runtime package cannot depend on it`)
    for (const d of Object.keys(e.dependencies ?? {})) queue.push({from: at, name: d, optional})
    for (const d of Object.keys(e.optionalDependencies ?? {})) queue.push({from: at, name: d, optional: true})
    for (const d of Object.keys(e.peerDependencies ?? {})) {
      if (!e.peerDependenciesMeta?.[d]?.optional) queue.push({from: at, name: d, optional})
    }
  }
  const packages: Record<string, LockEntry> = {
    '': {name: pkg.name, version: pkg.version, ...(typeof pkg.license === 'string' ? {license: pkg.license} : {}), dependencies: pkg.dependencies, ...(pkg.engines ? {engines: pkg.engines} : {})},
  }
  for (const at of [...reached.keys()].sort()) {
    const {dev: _dev, optional: _optional, devOptional: _devOptional, peer: _peer, ...rest} = root.packages[at]!
    packages[at] = {...rest, ...(reached.get(at) ? {optional: true} : {})}
  }
  return {name: pkg.name, version: pkg.version, lockfileVersion: 3, requires: true, packages}
}
