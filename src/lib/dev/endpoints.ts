/**
 * What a running `nle dev` stack publishes for other commands (`nle chat`, `nle gateway`) in the
 * project: `.nle/dev/endpoints.json`. Removed when the stack stops.
 *
 * The file says which root of trust and which certificate to accept, so it is trusted only when
 * everything about it holds (else it is ignored, with the reason): a regular file (not a link)
 * owned by this user and readable by nobody else (0600), naming this project (its real path), a
 * live process of this user whose command line is `nle dev` of this project (Linux: /proc), and a
 * dev root inside the project's .nle/dev whose SHA-256 is the one it names. The measurements never
 * come from it: the lockfile is the project's own (build.lockfile of its nle.yaml).
 */
import {constants} from 'node:fs'
import {mkdir, open, readFile, readlink, realpath, rm, stat} from 'node:fs/promises'
import {dirname, join, resolve, sep} from 'node:path'

import {insecureDevRoot} from '../attestation/roots.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../config/load.js'
import {isNleError} from '../errors.js'
import {writeFileAtomic} from '../files.js'
import {DEFAULT_LOCKFILE} from '../lockfile.js'

export interface DevEndpoints {
  /** The project folder (real path) whose `nle dev` wrote this. */
  projectDir: string
  /** The parent proxy's HTTPS URL. */
  proxyUrl: string
  /** The enclave server's Unix socket (what the proxy forwards to). */
  enclaveSocket: string
  /** The local KMS endpoint. */
  kmsUrl: string
  /** The dev key and where the endpoint keeps its state (the dev client identity of KMS mode is there). */
  kms?: {keyArn: string; region: string; stateFile: string; identitiesFile?: string}
  /** PEM of the NSM simulator's root: the only root dev documents chain to. */
  devRootFile: string
  devRootSha256: string
  /** PEM of the proxy's self-signed certificate. */
  caFile: string
  /** pid of the `nle dev` process that owns the stack. */
  pid: number
}

export function endpointsFile(projectDir: string): string {
  return join(projectDir, '.nle', 'dev', 'endpoints.json')
}

export async function writeEndpoints(projectDir: string, endpoints: DevEndpoints): Promise<void> {
  const file = endpointsFile(projectDir)
  await mkdir(dirname(file), {recursive: true, mode: 0o700})
  await writeFileAtomic(file, JSON.stringify(endpoints, null, 2) + '\n', {mode: 0o600})
}

/** Why an endpoints file is not trusted. */
export class UntrustedEndpoints extends Error {
  override name = 'UntrustedEndpoints'
}

const untrusted = (why: string): never => {
  throw new UntrustedEndpoints(why)
}

/** Whether `path` is `dir` or inside it (both real paths). */
const inside = (path: string, dir: string): boolean => path === dir || path.startsWith(dir + sep)

/** The arguments of a live process (Linux), or undefined where /proc cannot tell. */
export async function processInfo(pid: number): Promise<{uid: number; argv: string[]; cwd: string} | undefined> {
  try {
    const [info, cmdline, cwd] = await Promise.all([stat(`/proc/${pid}`), readFile(`/proc/${pid}/cmdline`, 'latin1'), readlink(`/proc/${pid}/cwd`)])
    return {uid: info.uid, argv: cmdline.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1), cwd}
  } catch {
    return undefined
  }
}

/**
 * The project folder an `nle dev` command line runs for: `nle … dev [--config|-c FILE]` (FILE
 * relative to its working folder, default nle.yaml), or undefined when it is not `nle dev`.
 */
export function devProjectOf(argv: readonly string[], cwd: string): string | undefined {
  const entry = argv.findIndex((a) => /(^|\/)(nle|run\.js|dev\.js)$/.test(a))
  if (entry < 0 || argv[entry + 1] !== 'dev') return undefined
  let config = DEFAULT_CONFIG_FILE
  for (let i = entry + 2; i < argv.length; i++) {
    const a = argv[i]!
    if ((a === '--config' || a === '-c') && argv[i + 1] !== undefined) config = argv[++i]!
    else if (a.startsWith('--config=')) config = a.slice('--config='.length)
  }
  return dirname(resolve(cwd, config))
}

/** The endpoints, if every check holds; throws UntrustedEndpoints (why not), or the fs error (ENOENT: none). */
async function trustedEndpoints(projectDir: string): Promise<DevEndpoints> {
  const uid = process.getuid?.()
  if (uid === undefined) untrusted('file ownership cannot be checked on this platform')
  const project = await realpath(projectDir)
  // No link followed, and the checks made on the very file that is read.
  const handle = await open(endpointsFile(project), constants.O_RDONLY | constants.O_NOFOLLOW)
  let text: string
  try {
    const info = await handle.stat()
    if (!info.isFile()) untrusted('it is not a regular file')
    if (info.uid !== uid) untrusted(`it is owned by uid ${info.uid}, not by this user (${uid})`)
    if ((info.mode & 0o077) !== 0) untrusted(`its mode is ${(info.mode & 0o777).toString(8)}, not 600`)
    text = await handle.readFile('utf8')
  } finally {
    await handle.close()
  }
  let e: DevEndpoints
  try {
    e = JSON.parse(text) as DevEndpoints
  } catch {
    return untrusted('it is not JSON')
  }
  const strings = ['projectDir', 'proxyUrl', 'enclaveSocket', 'kmsUrl', 'devRootFile', 'devRootSha256', 'caFile'] as const
  if (typeof e !== 'object' || e === null || strings.some((k) => typeof e[k] !== 'string') || !Number.isSafeInteger(e.pid) || e.pid <= 0) untrusted('it does not have the fields nle dev writes')
  if (e.projectDir !== project) untrusted(`it names another project (${e.projectDir})`)
  const owner = (await processInfo(e.pid)) ?? untrusted(`its process ${e.pid} is not running (or cannot be inspected)`)
  if (owner.uid !== uid) untrusted(`its process ${e.pid} belongs to another user`)
  const devProject = devProjectOf(owner.argv, owner.cwd) ?? untrusted(`its process ${e.pid} is not \`nle dev\``)
  if ((await realpath(devProject).catch(() => devProject)) !== project) untrusted(`its process ${e.pid} is \`nle dev\` of another project`)
  const devDir = join(project, '.nle', 'dev')
  for (const file of [e.devRootFile, e.caFile]) {
    if (!inside(await realpath(file).catch(() => ''), devDir)) untrusted(`${file} is not inside ${devDir}`)
  }
  let sha = ''
  try {
    sha = insecureDevRoot(await readFile(e.devRootFile, 'utf8')).sha256
  } catch {
    untrusted(`${e.devRootFile} is not a certificate`)
  }
  if (sha !== e.devRootSha256) untrusted('the dev root it names does not have the SHA-256 it states')
  return e
}

/**
 * The endpoints of a live dev stack in this project, or undefined: absent, or not trusted — then
 * `warn` is told why (the caller falls back to its flags and defaults).
 */
export async function readEndpoints(projectDir: string, warn?: (message: string) => void): Promise<DevEndpoints | undefined> {
  try {
    return await trustedEndpoints(projectDir)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    const why = error instanceof UntrustedEndpoints ? error.message : ((error as NodeJS.ErrnoException).code ?? 'unreadable')
    warn?.(`Ignoring ${endpointsFile(projectDir)}: ${why}.`)
    return undefined
  }
}

/** The project's lockfile: build.lockfile of its nle.yaml (relative to it), else nle.lock.json there. */
export async function projectLockfile(projectDir: string): Promise<string> {
  try {
    const {config, dir} = await loadConfig(join(projectDir, DEFAULT_CONFIG_FILE))
    return resolve(dir, config.build.lockfile)
  } catch (error) {
    if (isNleError(error) && error.code === 'CONFIG_NOT_FOUND') return resolve(projectDir, DEFAULT_LOCKFILE)
    throw error
  }
}

export async function removeEndpoints(projectDir: string): Promise<void> {
  await rm(endpointsFile(projectDir), {force: true})
}
