/**
 * Where the native builder's kernel, init and nsm.ko come from (`--blobs`, `build.blobs`,
 * NITRO_CLI_BLOBS):
 *
 *   nitro        nitro-cli's blobs folder (/usr/share/nitro_enclaves/blobs, from
 *                aws-nitro-enclaves-cli-devel): bzImage (or Image), cmdline, init, nsm.ko; a
 *                bootable EIF for a real Nitro host.
 *   qemu         the kernel `scripts/qemu-nitro.sh` prepares for local runs in QEMU's nitro-enclave
 *                machine (its manifest, $NLE_QEMU_CACHE/manifest.json): Debian's cloud kernel, its
 *                nsm.ko and virtio_mmio.ko, busybox, and nle's own init (templates/qemu/init.sh).
 *                Boots in QEMU only (the kernel is not the one Nitro hosts use).
 *   placeholder  no kernel: a measurable EIF that cannot boot (what `nle dev` builds to have
 *                PCRs for its simulated NSM); its metadata says so.
 *   <folder>     a folder laid out like nitro-cli's.
 *
 * Unset: NITRO_CLI_BLOBS, else nitro-cli's folder when it exists, else the placeholder. A choice
 * that was made (flag, config, environment) and cannot be met fails: BUILD_BLOBS_MISSING when
 * there is nothing at all, BUILD_BLOBS_INCOMPLETE when a file is missing.
 */
import {readFile, stat} from 'node:fs/promises'
import {basename, isAbsolute, join, resolve} from 'node:path'

import {TEMPLATES_DIR} from '../paths.js'
import {hostError} from './errors.js'

export const DEFAULT_BLOBS_DIR = '/usr/share/nitro_enclaves/blobs'
/** nitro-cli's x86_64 blobs/cmdline (trimmed), used with the placeholder kernel. */
export const DEFAULT_CMDLINE = 'reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on'
/**
 * The command line of the `qemu` kernel. No virtio_mmio.device= (the cloud kernel lacks
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES; devices come from ACPI). tsc_early_khz avoids a rare TSC
 * calibration hang under TCG; panic=-1 turns a panic into a reboot, which QEMU's -no-reboot turns
 * into an exit.
 */
export const QEMU_CMDLINE = 'console=ttyS0 reboot=k panic=-1 pci=off random.trust_cpu=on tsc_early_khz=2000000'
/** The `qemu` kernel's /init (busybox sh): loads virtio_mmio and nsm, enters /rootfs, runs /cmd. */
export const QEMU_INIT = join(TEMPLATES_DIR, 'qemu', 'init.sh')

export type BlobsKind = 'nitro' | 'qemu' | 'placeholder' | 'folder'

/** A file of the bootstrap ramdisk besides init and nsm.ko (the `qemu` kernel's busybox and virtio_mmio.ko). */
export interface BootstrapFile {
  name: string
  path: string
  mode: number
}

export interface Blobs {
  kind: BlobsKind
  /** Where they were found (a folder, the QEMU manifest) or "placeholder". */
  source: string
  kernel: string
  /** A cmdline given as a string (stored exactly), or a cmdline file (trimmed, as nitro-cli does). */
  cmdline?: string
  cmdlineFile?: string
  init: string
  nsmKo: string
  extraBootstrap: BootstrapFile[]
  arch: 'x86_64' | 'aarch64'
  /** e.g. "4.14.256" or "6.12.118+deb12-cloud-amd64". */
  kernelVersion?: string
}

/** What scripts/qemu-nitro.sh writes to $NLE_QEMU_CACHE/manifest.json. */
export interface QemuManifest {
  qemu: string
  qemuVersion: string
  /** What the binary's `-accel help` lists ("tcg", "kvm"); absent in caches from before KVM was built in. */
  accelerators?: string[]
  /** -L directories: linuxboot_dma.bin (qemu-system-data), bios-microvm.bin (seabios). */
  firmwareDirs: string[]
  kernel: string
  kernelConfig: string
  kernelVersion: string
  virtioMmioKo: string
  nsmKo: string
  /** The guest kernel's vsock transport modules (vsock, vmw_vsock_virtio_transport_common, vmw_vsock_virtio_transport), in load order; absent in older caches. */
  vsockKos?: string[]
  busybox: string
}

export const DEFAULT_QEMU_CACHE = '/var/cache/nle/qemu-nitro'
export function qemuCacheDir(env: NodeJS.ProcessEnv): string {
  return env.NLE_QEMU_CACHE || DEFAULT_QEMU_CACHE
}

const isFile = (p: string): Promise<boolean> => stat(p).then((s) => s.isFile(), () => false)
const isDir = (p: string): Promise<boolean> => stat(p).then((s) => s.isDirectory(), () => false)

const QEMU_HINT = 'Run `sudo bash scripts/qemu-nitro.sh` (from nle\'s repository) to prepare QEMU and its kernel, or set NLE_QEMU_CACHE to where it put them.'

/** The QEMU cache's manifest, each file it names checked; BUILD_BLOBS_MISSING / _INCOMPLETE otherwise. */
export async function loadQemuManifest(env: NodeJS.ProcessEnv): Promise<QemuManifest> {
  const path = join(qemuCacheDir(env), 'manifest.json')
  let manifest: QemuManifest
  try {
    manifest = JSON.parse(await readFile(path, 'utf8')) as QemuManifest
  } catch (cause) {
    throw hostError('BUILD_BLOBS_MISSING', `No QEMU kernel: ${path} is missing or not JSON.`, {cause, hint: QEMU_HINT, details: {manifest: path}})
  }
  const absent: string[] = []
  for (const key of ['kernel', 'virtioMmioKo', 'nsmKo', 'busybox'] as const) {
    if (typeof manifest[key] !== 'string' || !(await isFile(manifest[key]))) absent.push(key)
  }
  for (const ko of manifest.vsockKos ?? []) if (typeof ko !== 'string' || !(await isFile(ko))) absent.push(`vsockKos ${String(ko)}`)
  if (manifest.vsockKos === undefined) absent.push('vsockKos (a cache from before the vsock modules)')
  if (absent.length > 0) {
    throw hostError('BUILD_BLOBS_INCOMPLETE', `The QEMU kernel's manifest ${path} names files that are missing (${absent.join(', ')}).`, {hint: QEMU_HINT, details: {manifest: path, absent}})
  }
  return manifest
}

/** Line 3 of a kernel config: "# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration". */
async function kernelVersionOf(configFile: string): Promise<string | undefined> {
  const line = (await readFile(configFile, 'utf8').catch(() => '')).split('\n')[2] ?? ''
  return /^# \w+\/\S+ (\d+(?:\.\d+)*)/.exec(line)?.[1]
}

async function fromFolder(dir: string, kind: 'nitro' | 'folder', named: string): Promise<Blobs> {
  if (!(await isDir(dir))) {
    throw hostError('BUILD_BLOBS_MISSING', `The blobs folder ${dir} (${named}) does not exist.`, {
      hint: 'Install aws-nitro-enclaves-cli-devel (it ships /usr/share/nitro_enclaves/blobs), point --blobs / build.blobs / NITRO_CLI_BLOBS at a complete folder, or use `--blobs qemu` for the local QEMU kernel.',
      details: {dir},
    })
  }
  const kernelName = (await isFile(join(dir, 'bzImage'))) ? 'bzImage' : (await isFile(join(dir, 'Image'))) ? 'Image' : undefined
  const absent: string[] = kernelName ? [] : ['bzImage (or Image)']
  for (const f of ['cmdline', 'init', 'nsm.ko']) if (!(await isFile(join(dir, f)))) absent.push(f)
  if (absent.length > 0) {
    throw hostError('BUILD_BLOBS_INCOMPLETE', `The blobs folder ${dir} lacks ${absent.join(', ')}.`, {
      hint: 'Install aws-nitro-enclaves-cli-devel (it ships /usr/share/nitro_enclaves/blobs) or point NITRO_CLI_BLOBS / --blobs at a complete folder.',
      details: {dir, absent},
    })
  }
  const kernel = join(dir, kernelName!)
  const config = `${kernel}.config`
  const kernelVersion = (await isFile(config)) ? await kernelVersionOf(config) : undefined
  return {
    kind,
    source: dir,
    kernel,
    cmdlineFile: join(dir, 'cmdline'),
    init: join(dir, 'init'),
    nsmKo: join(dir, 'nsm.ko'),
    extraBootstrap: [],
    arch: kernelName === 'Image' ? 'aarch64' : 'x86_64',
    ...(kernelVersion ? {kernelVersion} : {}),
  }
}

/** "…/6.12.118+deb12-cloud-amd64-vmw_vsock_virtio_transport.ko" → "vmw_vsock_virtio_transport" (module names have no "-"). */
export function vsockModuleName(path: string): string {
  return basename(path).replace(/\.ko$/, '').split('-').pop()!
}

async function fromQemu(env: NodeJS.ProcessEnv): Promise<Blobs> {
  const m = await loadQemuManifest(env)
  return {
    kind: 'qemu',
    source: join(qemuCacheDir(env), 'manifest.json'),
    kernel: m.kernel,
    cmdline: QEMU_CMDLINE,
    init: QEMU_INIT,
    nsmKo: m.nsmKo,
    extraBootstrap: [
      {name: 'bin/busybox', path: m.busybox, mode: 0o755},
      {name: 'virtio_mmio.ko', path: m.virtioMmioKo, mode: 0o644},
      // AF_VSOCK for start.sh's socat bridges; init loads them when present (templates/qemu/init.sh).
      ...(m.vsockKos ?? []).map((path) => ({name: `${vsockModuleName(path)}.ko`, path, mode: 0o644})),
    ],
    arch: 'x86_64',
    kernelVersion: m.kernelVersion,
  }
}

/** The placeholder: `kind: 'placeholder'`, files written by the builder (see build.ts). */
export const PLACEHOLDER = 'placeholder'

export interface BlobsRequest {
  /** --blobs: nitro, qemu, placeholder or a folder. */
  flag?: string
  /** build.blobs in nle.yaml (a folder relative to the project). */
  config?: string
  projectDir: string
  env: NodeJS.ProcessEnv
}

/**
 * Which blobs a build uses; undefined means the placeholder. The flag wins over the config, the
 * config over NITRO_CLI_BLOBS; with none of them, nitro-cli's folder if it exists.
 */
export async function resolveBlobs(r: BlobsRequest): Promise<Blobs | undefined> {
  const chosen = r.flag ?? r.config
  const base = r.flag !== undefined ? process.cwd() : r.projectDir
  const named = r.flag !== undefined ? '--blobs' : 'build.blobs'
  if (chosen !== undefined) {
    if (chosen === PLACEHOLDER) return undefined
    if (chosen === 'qemu') return fromQemu(r.env)
    if (chosen === 'nitro') return fromFolder(DEFAULT_BLOBS_DIR, 'nitro', `${named} nitro`)
    return fromFolder(isAbsolute(chosen) ? chosen : resolve(base, chosen), 'folder', named)
  }
  if (r.env.NITRO_CLI_BLOBS) return fromFolder(r.env.NITRO_CLI_BLOBS, 'folder', 'NITRO_CLI_BLOBS')
  if (await isDir(DEFAULT_BLOBS_DIR)) return fromFolder(DEFAULT_BLOBS_DIR, 'nitro', 'nitro-cli\'s default')
  return undefined
}
