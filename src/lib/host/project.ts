/** Where a project's host-side files live, all derived from nle.yaml's folder and settings. */
import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import type {LoadedConfig} from '../config/load.js'
import {PACKAGE_ROOT} from '../paths.js'

export interface ProjectPaths {
  dir: string
  configFile: string
  /** The project's enclave/ folder (Dockerfile, start.sh), written by `nle init`. */
  enclaveDir: string
  /** The project's parent/ folder (systemd units, allocator.yaml). */
  parentDir: string
  modelDir: string
  eifPath: string
  lockfile: string
  /** nle's working folder in the project (build context, run state, logs). */
  stateDir: string
  buildContext: string
  nativeRootfs: string
  runState: string
  /** The host end of the vsock bridge. */
  bridgeSocket: string
  /** KMS mode, managed processes: the parent proxy's credentials endpoint (unless proxy.credentials.socket). */
  credentialsSocket: string
  /** A sealed model: the parent proxy's weights server socket (the vsock bridge connects to it). */
  weightsSocket: string
}

export function projectPaths(loaded: LoadedConfig): ProjectPaths {
  const {config, dir} = loaded
  const stateDir = join(dir, '.nle')
  return {
    dir,
    configFile: loaded.file,
    enclaveDir: join(dir, 'enclave'),
    parentDir: join(dir, 'parent'),
    modelDir: resolve(dir, config.model.path),
    eifPath: resolve(dir, config.build.eifPath),
    lockfile: resolve(dir, config.build.lockfile),
    stateDir,
    buildContext: join(stateDir, 'build-context'),
    nativeRootfs: join(stateDir, 'rootfs'),
    runState: join(stateDir, 'run.json'),
    bridgeSocket: socketPath(stateDir, 'bridge'),
    credentialsSocket: socketPath(stateDir, 'credentials'),
    weightsSocket: socketPath(stateDir, 'weights'),
  }
}

let version: string | undefined
/** nle's own version (package.json), recorded in lockfiles and EIF metadata. */
export function nleVersion(): string {
  version ??= (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {version: string}).version
  return version
}

/** Unix socket paths are limited to 107 bytes; deep project folders get a socket in the temp folder. */
function socketPath(stateDir: string, name: 'bridge' | 'credentials' | 'weights'): string {
  const inProject = join(stateDir, `${name}.sock`)
  if (Buffer.byteLength(inProject) <= 100) return inProject
  const hash = createHash('sha256').update(stateDir).digest('hex').slice(0, 16)
  return join(tmpdir(), name === 'bridge' ? `nle-${hash}.sock` : `nle-${hash}-${name}.sock`)
}
