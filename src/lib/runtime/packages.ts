/**
 * The two runtimes nle ships as packages of their own: runtime/enclave-server (what the enclave image
 * runs and PCR2 measures) and runtime/parent-proxy (the parent host's TLS proxy). Each has its own
 * package.json and package-lock.json in runtime/<name>/, and its code is the part of nle's compiled
 * dist/ its entry reaches: `assembleRuntimePackage` lays the package out (package.json, lockfile,
 * README, runtime/<name>/index.js and exactly those dist/ files), which is what `nle build` puts in
 * the image as /app/nle.
 *
 * A runtime must not reach the modules FORBIDDEN lists (test/runtime-packages.test.ts walks each
 * graph); scripts/runtime-packages.ts regenerates each package.json's dependencies and lockfile
 * from the graph and nle's lockfile, and the test fails when the committed ones are stale.
 */
import {copyFile, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {PACKAGE_ROOT} from '../paths.js'
import {type ImportGraph, importGraph, relativePosix} from './graph.js'
import {type Lockfile, type RootPackageJson, deriveLockfile} from './lock.js'

export type RuntimeName = 'enclave-server' | 'parent-proxy'
export const RUNTIME_NAMES: readonly RuntimeName[] = ['enclave-server', 'parent-proxy']

export interface RuntimeSpec {
  name: RuntimeName
  /** The package's name in its package.json. */
  packageName: string
  description: string
  /** Entries, relative to nle's package root. */
  entries: string[]
  /** Files (relative to the package root, '/'-separated) the runtime must not reach. */
  forbiddenFiles: RegExp[]
  /** Packages it must not require. */
  forbiddenPackages: string[]
}

/** Never in any runtime: the CLI, its UI, the dev tools, the simulators, the model generators. */
const COMMON_FILES: RegExp[] = [
  /^dist\/(commands|cli|ui|test-support)\//,
  /^dist\/lib\/kms\/local\//,
  /^dist\/lib\/attestation\/simulator\.js$/,
  /^dist\/lib\/model\/(hub|save|synth|synth-gpt2|synth-llama|synth-target|quantize|quality|index)\.js$/,
  // Only the error catalogues of these domains (data: NleError accepts catalogued codes only).
  /^dist\/lib\/(dev|gateway|client|chat|eif|kms|host)\/(?!errors\.js$)/,
  /^dist\/lib\/(init|demo|doctor|next-steps|template)\.js$/,
]
const COMMON_PACKAGES = [
  '@oclif/core',
  '@oclif/plugin-help',
  'ink',
  'react',
  'execa',
  '@aws-sdk/client-iam',
  '@aws-sdk/client-sts',
  'gpt-3-encoder',
  '@huggingface/transformers',
]

const ALLOWED_IN_ENCLAVE = [
  // The enclave's KMS client (KMS mode), CMS envelope, and the image build's prune step.
  /^dist\/lib\/kms\/(enclave-aws|recipient)\.js$/,
  /^dist\/lib\/host\/prune\.js$/,
]

export const RUNTIMES: Record<RuntimeName, RuntimeSpec> = {
  'enclave-server': {
    name: 'enclave-server',
    packageName: '@nle/enclave-server',
    description: 'The inference server inside the Nitro Enclave: engine, model loading, channel, attestation, NSM device, KMS mode',
    entries: ['runtime/enclave-server/index.js', 'dist/lib/host/prune.js'],
    forbiddenFiles: [...COMMON_FILES, /^dist\/lib\/config\/load\.js$/, /^dist\/lib\/proxy\/(?!errors\.js$)/],
    forbiddenPackages: [...COMMON_PACKAGES, 'yaml', 'fastest-levenshtein', '@peculiar/x509', '@aws-sdk/credential-provider-env', '@smithy/credential-provider-imds'],
  },
  'parent-proxy': {
    name: 'parent-proxy',
    packageName: '@nle/parent-proxy',
    description: 'The parent host\'s TLS proxy in front of the enclave server (it reads the project\'s nle.yaml)',
    entries: ['runtime/parent-proxy/index.js'],
    forbiddenFiles: [...COMMON_FILES, /^dist\/lib\/server\/(?!errors\.js$|log\.js$|semaphore\.js$)/, /^dist\/lib\/engine\/(?!errors\.js$)/, /^dist\/lib\/attestation\/(?!errors\.js$)/],
    forbiddenPackages: [...COMMON_PACKAGES, 'onnxruntime-node', 'koffi', '@aws-sdk/client-kms', '@huggingface/tokenizers', '@huggingface/jinja'],
  },
}

/** A forbidden file or package a runtime's graph reaches: "<file or package> (via <importer>)". */
export function forbiddenIn(spec: RuntimeSpec, graph: ImportGraph, root: string = PACKAGE_ROOT): string[] {
  const found: string[] = []
  for (const f of graph.files.map((f) => relativePosix(root, f))) {
    if (spec.name === 'enclave-server' && ALLOWED_IN_ENCLAVE.some((r) => r.test(f))) continue
    if (spec.forbiddenFiles.some((r) => r.test(f))) found.push(f)
  }
  for (const [name, by] of graph.packages) if (spec.forbiddenPackages.includes(name)) found.push(`${name} (via ${relativePosix(root, by[0] as string)})`)
  return found
}

export function runtimeGraph(spec: RuntimeSpec, root: string = PACKAGE_ROOT): ImportGraph {
  return importGraph(spec.entries.map((e) => join(root, e)))
}

export interface RootPackage {
  pkg: RootPackageJson & {overrides?: Record<string, string>; allowScripts?: Record<string, boolean>; engines?: Record<string, string>; license?: string}
  lock: Lockfile
}

export async function readRootPackage(root: string = PACKAGE_ROOT): Promise<RootPackage> {
  return {
    pkg: JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as RootPackage['pkg'],
    lock: JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as Lockfile,
  }
}

/**
 * The runtime's package.json and lockfile as they must be: its dependencies are exactly the packages
 * its graph requires, at the versions nle's lockfile holds (exact), and the lockfile is derived
 * from nle's.
 */
export function runtimeManifest(spec: RuntimeSpec, graph: ImportGraph, root: RootPackage): {packageJson: Record<string, unknown>; lockfile: Lockfile} {
  const dependencies: Record<string, string> = {}
  for (const name of graph.packages.keys()) {
    const locked = root.lock.packages[`node_modules/${name}`]?.version
    if (locked === undefined || root.pkg.dependencies[name] === undefined) {
      throw new Error(`${spec.name} requires ${name}, which is not a production dependency of nle (package.json dependencies)`)
    }
    dependencies[name] = locked
  }
  const lockfile = deriveLockfile(root.lock, {name: spec.packageName, version: root.pkg.version, dependencies, license: root.pkg.license, ...(root.pkg.engines ? {engines: root.pkg.engines} : {})})
  // nle's overrides and allowScripts entries for packages the runtime reaches (or may: optional ones).
  const names = new Set<string>()
  for (const [at, e] of Object.entries(lockfile.packages)) {
    if (at !== '') names.add(at.replace(/^.*node_modules\//, ''))
    for (const d of [e.dependencies, e.optionalDependencies]) for (const n of Object.keys(d ?? {})) names.add(n)
  }
  const keep = <T>(o: Record<string, T> | undefined): Record<string, T> | undefined => {
    const kept = Object.fromEntries(Object.entries(o ?? {}).filter(([k]) => names.has(k)))
    return Object.keys(kept).length > 0 ? kept : undefined
  }
  const overrides = keep(root.pkg.overrides)
  const allowScripts = keep(root.pkg.allowScripts)
  const packageJson: Record<string, unknown> = {
    name: spec.packageName,
    version: root.pkg.version,
    description: spec.description,
    type: 'module',
    license: root.pkg.license,
    private: true,
    engines: root.pkg.engines,
    main: `runtime/${spec.name}/index.js`,
    dependencies,
    ...(overrides ? {overrides} : {}),
    ...(allowScripts ? {allowScripts} : {}),
  }
  return {packageJson, lockfile}
}

export const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n'

export interface AssembledPackage {
  dir: string
  /** Every file written, relative to dir, sorted. */
  files: string[]
}

/**
 * Lays out the runtime package in `outDir` (emptied first): package.json, package-lock.json,
 * README.md and .npmrc from runtime/<name>/, and the files its graph reaches at their paths
 * relative to nle's root (runtime/<name>/index.js, dist/lib/…). Node resolves the dependencies
 * from `outDir/node_modules` once `npm ci` ran there.
 */
export async function assembleRuntimePackage(name: RuntimeName, outDir: string, root: string = PACKAGE_ROOT): Promise<AssembledPackage> {
  const spec = RUNTIMES[name]
  const graph = runtimeGraph(spec, root)
  if (graph.unresolved.length > 0) throw new Error(`${name}: imports that cannot be followed: ${graph.unresolved.join('; ')}`)
  await rm(outDir, {recursive: true, force: true})
  const files: string[] = []
  const put = async (from: string, rel: string): Promise<void> => {
    await mkdir(dirname(join(outDir, rel)), {recursive: true})
    await copyFile(from, join(outDir, rel))
    files.push(rel)
  }
  for (const f of ['package.json', 'package-lock.json', 'README.md']) await put(join(root, 'runtime', name, f), f)
  // npm's settings for the install in the image (no audit/fund); nle's own, the same file.
  await put(join(root, '.npmrc'), '.npmrc')
  for (const f of graph.files) {
    const rel = relativePosix(root, f)
    if (rel.startsWith('..')) throw new Error(`${name}: ${f} is outside nle's package`)
    await put(f, rel)
  }
  return {dir: outDir, files: files.sort()}
}

/** Writes runtime/<name>/package.json and package-lock.json (scripts/runtime-packages.ts). */
export async function writeRuntimeManifests(root: string = PACKAGE_ROOT): Promise<string[]> {
  const rootPackage = await readRootPackage(root)
  const written: string[] = []
  for (const name of RUNTIME_NAMES) {
    const {packageJson, lockfile} = runtimeManifest(RUNTIMES[name], runtimeGraph(RUNTIMES[name], root), rootPackage)
    for (const [file, content] of [['package.json', packageJson], ['package-lock.json', lockfile]] as const) {
      await writeFile(join(root, 'runtime', name, file), json(content))
      written.push(`runtime/${name}/${file}`)
    }
  }
  return written
}
