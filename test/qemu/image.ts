// Builds the EIF of the QEMU boot check with nle's own EIF and cpio writers (src/lib/eif):
//   kernel   Debian's cloud kernel (vmlinuz, from scripts/qemu-nitro.sh's cache);
//   cmdline  QEMU_CMDLINE (src/lib/host/blobs.ts: the native builder's `--blobs qemu` uses the same);
//   ramdisk0 (bootstrap, PCR1) nle's bootstrap layout — dev/, init, nsm.ko — plus bin/busybox and
//            virtio_mmio.ko; init is templates/qemu/init.sh (also the native builder's);
//   ramdisk1 (application, PCR2) nle's customer layout — rootfs/…, cmd, env — with Node (the
//            enclave's pinned Node 24 that the native builder uses, src/lib/host/node-runtime.ts,
//            as the test passes it), the shared libraries it and koffi link, and the probe
//            runtime/enclave-server/attest-probe.ts with the nle modules it imports, transpiled
//            to JavaScript, plus the two packages it needs at run time (cbor-x, koffi + its
//            linux_x64 native module).
// Everything is sorted, timestamps and owners are fixed (nle's cpio writer), the metadata's
// BuildTime is nle's fixed epoch: the same inputs give the same bytes and PCRs.
import {existsSync, readFileSync, readdirSync, realpathSync, statSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import ts from 'typescript'

import {withParents} from '../../src/lib/eif/build.js'
import {type CpioEntry, bootstrapRamdiskEntries, cpioChunks, customerRamdiskEntries} from '../../src/lib/eif/cpio.js'
import {type EifBuildResult, writeEif} from '../../src/lib/eif/writer.js'
import {QEMU_CMDLINE, QEMU_INIT, type QemuManifest, qemuCacheDir} from '../../src/lib/host/blobs.js'
import {sharedLibraries} from '../../src/lib/host/rootfs.js'

export type {QemuManifest}

export const REPO = fileURLToPath(new URL('../../', import.meta.url))
export const PROBE_ENTRY = 'runtime/enclave-server/attest-probe.ts'
export const CMDLINE = QEMU_CMDLINE

export const QEMU_CACHE = qemuCacheDir(process.env)

/** The manifest scripts/qemu-nitro.sh wrote, or why the boot check cannot run here. */
export function loadQemuManifest(): {manifest: QemuManifest; reason?: undefined} | {manifest?: undefined; reason: string} {
  const path = join(QEMU_CACHE, 'manifest.json')
  if (process.platform !== 'linux' || process.arch !== 'x64') return {reason: `the boot check needs linux/x64 (this is ${process.platform}/${process.arch})`}
  if (!existsSync(path)) return {reason: `${path} not found: run \`bash scripts/qemu-nitro.sh\` to build QEMU with the nitro-enclave machine`}
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as QemuManifest
  for (const key of ['qemu', 'kernel', 'virtioMmioKo', 'nsmKo', 'busybox'] as const) {
    if (!existsSync(manifest[key])) return {reason: `${manifest[key]} (${key} in ${path}) is missing: run \`bash scripts/qemu-nitro.sh\` again`}
  }
  return {manifest}
}

// ---------------------------------------------------------------------------------------------
// The probe's JavaScript: its import closure, transpiled file by file.

/** Packages the probe loads at run time, and which of their files it needs. */
const RUNTIME_PACKAGES: Record<string, (rel: string) => boolean> = {
  // Pure-JS ESM entry (node-index.js and its siblings); cbor-extract (native, optional) is left
  // out and disabled through CBOR_NATIVE_ACCELERATION_DISABLED.
  'cbor-x': (rel) => rel === 'package.json' || /^[^/]+\.js$/.test(rel),
  // Loaded with createRequire by nsm-device.ts, so no import statement names it.
  koffi: (rel) => ['package.json', 'index.js', 'indirect.js'].includes(rel) || rel === 'build/koffi/linux_x64/koffi.node',
}

function packageName(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!
}

function imports(code: string): string[] {
  return ts.preProcessFile(code, true, true).importedFiles.map((f) => f.fileName)
}

/** path in the image (relative to /app) → JavaScript, for the probe and every module it imports. */
export function transpileProbe(): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  const bare = new Set<string>()
  const queue = [resolve(REPO, PROBE_ENTRY)]
  while (queue.length > 0) {
    const file = queue.pop()!
    const rel = relative(REPO, file).replace(/\.ts$/, '.js')
    if (out.has(rel)) continue
    const js = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: {module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false, sourceMap: false, removeComments: false},
    }).outputText
    out.set(rel, Buffer.from(js, 'utf8'))
    for (const spec of imports(js)) {
      if (spec.startsWith('node:')) continue
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'))
        if (!existsSync(target)) throw new Error(`${rel} imports ${spec}: no ${relative(REPO, target)}`)
        queue.push(target)
      } else {
        bare.add(packageName(spec))
      }
    }
  }
  for (const name of bare) {
    if (!(name in RUNTIME_PACKAGES)) throw new Error(`the probe now imports the package ${name}: add it (and the files it needs) to RUNTIME_PACKAGES in test/qemu/image.ts`)
  }
  return out
}

function packageEntries(name: string, prefix: string): CpioEntry[] {
  const root = join(REPO, 'node_modules', name)
  const keep = RUNTIME_PACKAGES[name]!
  const files: CpioEntry[] = []
  const walk = (dir: string): void => {
    for (const n of readdirSync(dir).sort()) {
      const abs = join(dir, n)
      const rel = relative(root, abs)
      const st = statSync(abs)
      if (st.isDirectory()) {
        if (n !== 'node_modules') walk(abs)
      } else if (st.isFile() && keep(rel)) {
        files.push({name: `${prefix}/${rel}`, type: 'file', path: abs, size: st.size, mode: rel.endsWith('.node') ? 0o755 : 0o644})
      }
    }
  }
  walk(root)
  if (files.length === 0) throw new Error(`node_modules/${name} has none of the files the probe needs`)
  return files
}

const fileRef = (name: string, path: string, mode: number): CpioEntry => {
  const real = realpathSync(path)
  return {name, type: 'file', path: real, size: statSync(real).size, mode}
}

export interface ProbeImage {
  bootstrap: CpioEntry[]
  customer: CpioEntry[]
  nodeBinary: string
  libraries: string[]
}

/** Another program to run instead of the probe (the vsock test's guest), with extra bootstrap files (init insmods any vsock modules). */
export interface ImageVariant {
  /** In the image at /app/<name>, run as `node /app/<name>`. */
  program: {name: string; data: Buffer}
  bootstrapFiles?: CpioEntry[]
}

export async function probeImageEntries(m: QemuManifest, nodeBinary: string, variant?: ImageVariant): Promise<ProbeImage> {
  const bootstrap = withParents([
    ...bootstrapRamdiskEntries(readFileSync(QEMU_INIT), {path: m.nsmKo, size: statSync(m.nsmKo).size}),
    fileRef('bin/busybox', m.busybox, 0o755),
    fileRef('virtio_mmio.ko', m.virtioMmioKo, 0o644),
    ...(variant?.bootstrapFiles ?? []),
  ])

  const node = realpathSync(nodeBinary)
  const koffiNative = join(REPO, 'node_modules/koffi/build/koffi/linux_x64/koffi.node')
  const libraries = await sharedLibraries({env: process.env}, [node, koffiNative])
  const rootfs: CpioEntry[] = [fileRef('rootfs/usr/bin/node', node, 0o755)]
  for (const lib of libraries) rootfs.push(fileRef(`rootfs${lib}`, lib, 0o755))
  rootfs.push({name: 'rootfs/app/package.json', type: 'file', mode: 0o644, data: Buffer.from('{"type":"module","private":true}\n')})
  for (const [rel, js] of transpileProbe()) rootfs.push({name: `rootfs/app/${rel}`, type: 'file', mode: 0o644, data: js})
  for (const name of Object.keys(RUNTIME_PACKAGES)) rootfs.push(...packageEntries(name, `rootfs/app/node_modules/${name}`))
  if (variant) rootfs.push({name: `rootfs/app/${variant.program.name}`, type: 'file', mode: 0o644, data: variant.program.data})

  const cmd = ['/usr/bin/node', variant ? `/app/${variant.program.name}` : `/app/${PROBE_ENTRY.replace(/\.ts$/, '.js')}`]
  const env = ['PATH=/usr/bin:/bin', 'HOME=/tmp', 'CBOR_NATIVE_ACCELERATION_DISABLED=true', 'NODE_NO_WARNINGS=1']
  const customer = customerRamdiskEntries(withParents(rootfs), cmd, env)
  return {bootstrap, customer, nodeBinary: node, libraries}
}

export interface BuiltProbeEif extends EifBuildResult {
  path: string
  libraries: string[]
  nodeBinary: string
}

/** Write the boot-check EIF to `output` with nle's EIF writer. */
export async function buildProbeEif(m: QemuManifest, output: string, nodeBinary: string, cmdline: string = CMDLINE, variant?: ImageVariant): Promise<BuiltProbeEif> {
  const image = await probeImageEntries(m, nodeBinary, variant)
  const result = await writeEif(output, {
    kernel: {path: m.kernel},
    cmdline,
    ramdisks: [{chunks: () => cpioChunks(image.bootstrap)}, {chunks: () => cpioChunks(image.customer)}],
    metadata: {imageName: 'nle-qemu-attest-probe', imageVersion: '1', buildTool: 'nle', buildToolVersion: 'test', kernelVersion: m.kernelVersion, operatingSystem: 'Linux'},
  })
  return {...result, path: output, libraries: image.libraries, nodeBinary: image.nodeBinary}
}
