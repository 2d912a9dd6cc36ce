/**
 * The bootable native image's root filesystem beyond /app (the build context): what
 * templates/enclave/Dockerfile gets from its base image and its RUN steps.
 *
 *   - The runtime package's dependencies: `npm ci --omit=dev --ignore-scripts` in /app/nle from its
 *     own lockfile (integrity-checked by npm), then the image's prune step run by the image's
 *     pinned Node (`node dist/lib/host/prune.js --verify node_modules`), as the Dockerfile does.
 *   - The system files: /bin/sh (start.sh's interpreter, the image's CMD), socat (the vsock
 *     bridge), mkdir and dirname (start.sh), and the ELF interpreter and shared libraries of those,
 *     of the pinned Node and of every native module left in node_modules, as the build host's
 *     dynamic loader resolves them (`ldd`). They are the build host's own files, copied (symlinks
 *     resolved) to the paths ldd prints; each one's SHA-256 goes into the lockfile
 *     (`inputs["system/<path>"]`), so a change on the host (a libc update) shows as a lockfile diff
 *     naming the file. Why the host's files and not pinned Debian packages: docs/runtime.md.
 */
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {copyFile, mkdir, open, readdir, realpath, stat} from 'node:fs/promises'
import {dirname, join, relative, sep} from 'node:path'

import {hostError} from './errors.js'
import {type HostContext, TOOL_PACKAGES, runTool} from './exec.js'

/** The programs the image needs besides Node, where it holds them, and where the host may have them. */
export const SYSTEM_PROGRAMS: readonly {image: string; name: string; why: string}[] = [
  {image: 'bin/sh', name: 'sh', why: 'runs start.sh (the image\'s CMD)'},
  {image: 'usr/bin/socat', name: 'socat', why: 'the vsock bridge'},
  {image: 'bin/mkdir', name: 'mkdir', why: 'start.sh'},
  {image: 'usr/bin/dirname', name: 'dirname', why: 'start.sh'},
]
/** Where the host's programs are looked up (never PATH: what goes into the image is the system's). */
const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin']

/** `npm ci` of ~55 packages from npm's cache takes seconds; from the registry, give it time. */
const INSTALL_TIMEOUT_MS = 15 * 60_000

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

const isFile = (p: string): Promise<boolean> => stat(p).then((s) => s.isFile(), () => false)

/** `npm ci` in `pkgDir` (the staged /app/nle), then the image's prune step with the image's Node. */
export async function installRuntimePackage(ctx: HostContext, pkgDir: string, imageNode: string): Promise<void> {
  const args = ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline']
  const ci = await runTool(ctx, 'npm', args, {cwd: pkgDir, timeoutMs: INSTALL_TIMEOUT_MS})
  if (ci.exitCode !== 0) {
    throw hostError('BUILD_RUNTIME_INSTALL_FAILED', `\`npm ${args.join(' ')}\` failed in ${pkgDir} (exit ${ci.exitCode}).`, {
      details: {step: 'npm ci', exitCode: ci.exitCode, stderr: ci.stderr.slice(-2000)},
    })
  }
  const prune = await runTool(ctx, 'node', ['dist/lib/host/prune.js', '--verify', 'node_modules'], {cwd: pkgDir, executable: imageNode})
  if (prune.exitCode !== 0) {
    throw hostError('BUILD_RUNTIME_INSTALL_FAILED', `The image's prune step failed in ${pkgDir} (exit ${prune.exitCode}): ${prune.stderr.trim().split('\n').at(-1) ?? ''}`, {
      details: {step: 'prune', exitCode: prune.exitCode, stderr: prune.stderr.slice(-2000)},
    })
  }
}

/**
 * Every ELF file under `dir` (native modules, their shared objects), sorted; the musl builds some
 * packages ship next to the glibc ones (koffi's musl_x64, cbor-extract's *.musl.node) are left out:
 * the image's Node is glibc's, they never load, and their libc is not on the host to resolve.
 */
export async function elfFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, {withFileTypes: true})).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile() && /\.(node|so)(\.\d+)*$/.test(e.name) && !/musl/i.test(relative(dir, p))) {
        const fh = await open(p, 'r')
        try {
          const magic = Buffer.alloc(4)
          await fh.read(magic, 0, 4, 0)
          if (magic.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) out.push(p)
        } finally {
          await fh.close()
        }
      }
    }
  }
  await walk(dir)
  return out
}

/**
 * The ELF interpreter and shared libraries of `binaries`, as the host's `ldd` resolves them
 * (absolute paths, sorted); those under `inside` (the image's own, e.g. libonnxruntime.so next to
 * its binding) are left out. A library ldd cannot find fails the build.
 */
export async function sharedLibraries(ctx: HostContext, binaries: readonly string[], inside?: string): Promise<string[]> {
  const libs = new Set<string>()
  for (const bin of binaries) {
    const r = await runTool(ctx, 'ldd', [bin])
    const text = r.stdout + r.stderr
    if (r.exitCode !== 0) {
      if (/not a dynamic executable|statically linked/.test(text)) continue
      throw hostError('BUILD_SYSTEM_FILE_MISSING', `\`ldd ${bin}\` failed (exit ${r.exitCode}).`, {details: {binary: bin, stderr: r.stderr.slice(-2000)}})
    }
    for (const line of r.stdout.split('\n')) {
      const missing = /^\s*(\S+) => not found/.exec(line)
      if (missing) {
        throw hostError('BUILD_SYSTEM_FILE_MISSING', `${bin} needs ${missing[1]}, which this host does not have.`, {
          hint: 'Install the library (the package that provides it) on the build host; the image takes the host\'s copy.',
          details: {binary: bin, library: missing[1]},
        })
      }
      const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line)
      if (m && !(inside !== undefined && (m[1]! + sep).startsWith(inside + sep))) libs.add(m[1]!)
    }
  }
  return [...libs].sort()
}

async function systemProgram(name: string): Promise<string> {
  for (const d of SYSTEM_DIRS) if (await isFile(join(d, name))) return join(d, name)
  const hint = name === 'socat' ? TOOL_PACKAGES.socat : `Install the package that provides ${name} (coreutils, dash) on the build host.`
  throw hostError('BUILD_SYSTEM_FILE_MISSING', `The build host has no ${name} in ${SYSTEM_DIRS.join(', ')}; the image needs it.`, {hint, details: {program: name}})
}

/**
 * Copies the system programs and every shared library the image's binaries need into `rootfs`;
 * returns image path → SHA-256 (hex) of each file copied, sorted by path.
 */
export async function addSystemFiles(ctx: HostContext, rootfs: string, imageNode: string): Promise<Record<string, string>> {
  const programs = await Promise.all(SYSTEM_PROGRAMS.map(async (p) => ({...p, host: await systemProgram(p.name)})))
  const natives = await elfFiles(join(rootfs, 'app'))
  const libs = await sharedLibraries(ctx, [imageNode, ...programs.map((p) => p.host), ...natives], rootfs)
  const files: {image: string; host: string}[] = [...programs.map((p) => ({image: p.image, host: p.host})), ...libs.map((l) => ({image: l.slice(1), host: l}))]
  const digests: Record<string, string> = {}
  for (const f of files.sort((a, b) => (a.image < b.image ? -1 : 1))) {
    const to = join(rootfs, ...f.image.split('/'))
    if (relative(rootfs, to).startsWith('..')) continue
    await mkdir(dirname(to), {recursive: true})
    await copyFile(await realpath(f.host), to)
    digests[f.image] = await sha256(to)
  }
  return digests
}

/** The lockfile's inputs for the system files: `system/<image path>` → `sha256:<hex>`. */
export function systemInputs(digests: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(digests).map(([p, d]) => [`system/${p}`, `sha256:${d}`]))
}
