/**
 * `nle doctor`: which parts of a Nitro host exist here, with versions, and whether the chosen
 * workflow can run. Probes are read-only and local: no network call (not even the EC2 metadata
 * service), no credential value is ever read into the report.
 */
import {constants} from 'node:fs'
import {access, readFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'

import {execa} from 'execa'

import {loadConfig} from './config/load.js'
import type {NleConfig} from './config/schema.js'
import {ExitCode, type NleError, isNleError} from './errors.js'
import {NITRO_DEVICE, detectPlace, doctorAutoNote} from './next-steps.js'

export const WORKFLOWS = ['dev', 'build', 'run', 'policy', 'host'] as const
export type Workflow = (typeof WORKFLOWS)[number]

/** What each workflow needs. `host` is everything a real Nitro host runs. */
const NEEDS: Record<Workflow, readonly CheckId[]> = {
  dev: ['node', 'config'],
  build: ['node', 'config', 'docker', 'docker-daemon', 'nitro-cli'],
  run: ['node', 'config', 'nitro-cli', 'nitro-device', 'allocator', 'vsock-proxy', 'socat'],
  policy: ['node', 'config', 'aws-credentials', 'aws-region'],
  host: ['node', 'config', 'docker', 'docker-daemon', 'nitro-cli', 'nitro-device', 'allocator', 'vsock-proxy', 'socat', 'aws-credentials', 'aws-region'],
}

export type CheckId =
  | 'node'
  | 'config'
  | 'docker'
  | 'docker-daemon'
  | 'nitro-cli'
  | 'nitro-device'
  | 'allocator'
  | 'vsock-proxy'
  | 'socat'
  | 'aws-credentials'
  | 'aws-region'

export interface Check {
  id: CheckId
  name: string
  status: 'ok' | 'missing' | 'error'
  /** Version or value found (never a secret). */
  version?: string
  detail?: string
  /** How to install or fix it, when not ok. */
  hint?: string
  /** Whether the requested workflow needs it. */
  required: boolean
}

export interface DoctorReport {
  workflow: Workflow
  /** Present when no workflow was asked for: why this one was chosen, and how to check the other. */
  auto?: {note: string}
  ok: boolean
  /** Required checks that are not ok. */
  missing: CheckId[]
  checks: Check[]
  /** 0 ready; 3 (CONFIG) when nle.yaml exists but is invalid; 1 when a needed part is missing. */
  exitCode: number
}

export interface ExecResult {
  exitCode: number | undefined
  stdout: string
  stderr: string
  /** The program was not found on PATH. */
  notFound: boolean
}

export interface DoctorEnv {
  exec: (file: string, args: readonly string[]) => Promise<ExecResult>
  env: NodeJS.ProcessEnv
  home: string
  nitroDevice: string
  configFile: string
  nodeVersion: string
}

export function defaultDoctorEnv(configFile: string): DoctorEnv {
  return {
    exec: (file, args) => execProbe(file, args),
    env: process.env,
    home: homedir(),
    nitroDevice: NITRO_DEVICE,
    configFile,
    nodeVersion: process.versions.node,
  }
}

/** Runs a probe command; `path` replaces PATH (tests point it at fake tools). */
export async function execProbe(file: string, args: readonly string[], path?: string): Promise<ExecResult> {
  const env = path === undefined ? {LC_ALL: 'C'} : {LC_ALL: 'C', PATH: path}
  const r = await execa(file, args, {reject: false, timeout: 5000, stdin: 'ignore', env})
  const notFound = (r as {code?: string}).code === 'ENOENT'
  return {exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), notFound}
}

type Probe = Omit<Check, 'id' | 'name' | 'required'>

/**
 * The workflow plain `nle doctor` checks: everything a Nitro host runs where the Nitro Enclaves
 * device is, else what `nle dev` needs (a laptop is not judged as a Nitro host).
 */
export async function chooseWorkflow(denv: Pick<DoctorEnv, 'nitroDevice'>): Promise<{workflow: Workflow; note: string}> {
  const workflow = (await detectPlace(denv.nitroDevice)) === 'nitro-host' ? 'host' : 'dev'
  return {workflow, note: doctorAutoNote(workflow, denv.nitroDevice)}
}

/** Runs the checks for `workflow`, or for the one chooseWorkflow picks when it is undefined. */
export async function doctor(workflow: Workflow | undefined, denv: DoctorEnv): Promise<DoctorReport> {
  if (workflow !== undefined) return runDoctor(workflow, denv)
  const chosen = await chooseWorkflow(denv)
  return {...(await runDoctor(chosen.workflow, denv)), auto: {note: chosen.note}}
}

export async function runDoctor(workflow: Workflow, denv: DoctorEnv): Promise<DoctorReport> {
  let config: NleConfig | undefined
  let configError: NleError | undefined
  const probes: Record<CheckId, () => Promise<Probe>> = {
    node: async () => {
      const major = Number(denv.nodeVersion.split('.')[0])
      return major >= 20
        ? {status: 'ok', version: denv.nodeVersion}
        : {status: 'error', version: denv.nodeVersion, hint: 'nle needs Node.js 20 or newer.'}
    },
    config: async () => {
      try {
        const loaded = await loadConfig(denv.configFile)
        config = loaded.config
        return {status: 'ok', version: `version ${loaded.config.version}`, detail: loaded.file}
      } catch (error) {
        if (isNleError(error) && error.code === 'CONFIG_NOT_FOUND') {
          return {status: 'missing', detail: denv.configFile, hint: 'Run `nle init` or pass --config PATH.'}
        }
        if (isNleError(error)) configError = error
        if (!isNleError(error)) return {status: 'error', detail: String(error)}
        // The table shows the first line; what follows (a YAML code frame, a list of problems) goes under the hint.
        const [first, ...rest] = error.message.split('\n')
        const more = rest.join('\n').replace(/^\n+|\s+$/g, '')
        return {status: 'error', detail: `[${error.code}] ${first}`, hint: [error.hint, more].filter(Boolean).join('\n') || undefined}
      }
    },
    docker: async () =>
      toolVersion(denv, 'docker', ['--version'], /version ([\w.+-]+)/, 'Install Docker: `sudo dnf install -y docker` (Amazon Linux 2023) or `sudo apt-get install docker.io`.'),
    'docker-daemon': async () => {
      const r = await denv.exec('docker', ['info', '--format', '{{.ServerVersion}}'])
      if (r.notFound) return {status: 'missing', hint: 'Install Docker first.'}
      if (r.exitCode === 0 && r.stdout.trim()) return {status: 'ok', version: r.stdout.trim()}
      return {
        status: 'missing',
        detail: firstLine(r.stderr) || 'the daemon did not answer',
        hint: 'Start it: `sudo systemctl enable --now docker`, and add your user to the docker group.',
      }
    },
    'nitro-cli': async () =>
      toolVersion(
        denv,
        'nitro-cli',
        ['--version'],
        /Nitro CLI ([\w.+-]+)/,
        'Install the Nitro Enclaves CLI: `sudo dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel` (Amazon Linux).',
      ),
    'nitro-device': async () => {
      try {
        await access(denv.nitroDevice, constants.R_OK | constants.W_OK)
        return {status: 'ok', detail: denv.nitroDevice}
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        return code === 'EACCES'
          ? {status: 'error', detail: `${denv.nitroDevice}: permission denied`, hint: 'Add your user to the `ne` group: `sudo usermod -aG ne $USER`, then log in again.'}
          : {
              status: 'missing',
              detail: denv.nitroDevice,
              hint: 'Use an EC2 instance type that supports Nitro Enclaves, launched with enclaves enabled, and install aws-nitro-enclaves-cli (it loads the nitro_enclaves driver).',
            }
      }
    },
    allocator: async () => serviceState(denv, 'nitro-enclaves-allocator.service', 'Reserve CPUs and memory: `sudo nle allocator --apply`, then `sudo systemctl enable --now nitro-enclaves-allocator.service`.'),
    'vsock-proxy': async () =>
      serviceState(denv, 'nitro-enclaves-vsock-proxy.service', 'The enclave reaches KMS through it: `sudo systemctl enable --now nitro-enclaves-vsock-proxy.service`.'),
    socat: async () => toolVersion(denv, 'socat', ['-V'], /socat version ([\w.+-]+)/, 'Install socat: `sudo dnf install -y socat` or `sudo apt-get install socat`.'),
    'aws-credentials': async () => {
      const source = await credentialSource(denv)
      return source
        ? {status: 'ok', detail: source}
        : {
            status: 'missing',
            hint: 'Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an instance with a role (not probed: doctor makes no network calls).',
          }
    },
    'aws-region': async () => {
      const region = config?.kms.region ?? denv.env.AWS_REGION ?? denv.env.AWS_DEFAULT_REGION ?? (await profileRegion(denv))
      return region ? {status: 'ok', version: region} : {status: 'missing', hint: 'Set kms.region in nle.yaml or AWS_REGION.'}
    },
  }

  const names: Record<CheckId, string> = {
    node: 'Node.js',
    config: 'nle.yaml',
    docker: 'docker CLI',
    'docker-daemon': 'docker daemon',
    'nitro-cli': 'nitro-cli',
    'nitro-device': 'Nitro Enclaves device',
    allocator: 'allocator service',
    'vsock-proxy': 'vsock-proxy service',
    socat: 'socat',
    'aws-credentials': 'AWS credentials',
    'aws-region': 'AWS region',
  }
  const needed = new Set(NEEDS[workflow])
  // config first: the region check reads it.
  const ids = Object.keys(probes) as CheckId[]
  const checks: Check[] = []
  for (const id of ids) checks.push({id, name: names[id], required: needed.has(id), ...(await probes[id]())})
  const missing = checks.filter((c) => c.required && c.status !== 'ok').map((c) => c.id)
  // An invalid nle.yaml is an input error (exit 3), as for every other command; a missing part is a failed check.
  const exitCode = configError && needed.has('config') ? configError.exitCode : missing.length > 0 ? ExitCode.CHECK_FAILED : ExitCode.OK
  return {workflow, ok: missing.length === 0, missing, checks, exitCode}
}

async function toolVersion(denv: DoctorEnv, tool: string, args: string[], pattern: RegExp, hint: string): Promise<Probe> {
  const r = await denv.exec(tool, args)
  if (r.notFound) return {status: 'missing', hint}
  const version = pattern.exec(`${r.stdout}\n${r.stderr}`)?.[1]
  if (r.exitCode === 0 || version) return {status: 'ok', version: version ?? 'unknown'}
  return {status: 'error', detail: firstLine(r.stderr) || `exit ${r.exitCode}`, hint}
}

async function serviceState(denv: DoctorEnv, unit: string, hint: string): Promise<Probe> {
  const r = await denv.exec('systemctl', ['is-active', unit])
  if (r.notFound) return {status: 'missing', detail: 'systemctl not found', hint}
  const state = r.stdout.trim() || 'unknown'
  return state === 'active' ? {status: 'ok', version: state} : {status: 'missing', detail: state, hint}
}

async function credentialSource(denv: DoctorEnv): Promise<string | undefined> {
  const e = denv.env
  if (e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY) return 'environment (AWS_ACCESS_KEY_ID)'
  if (e.AWS_WEB_IDENTITY_TOKEN_FILE) return 'web identity token file'
  if (e.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || e.AWS_CONTAINER_CREDENTIALS_FULL_URI) return 'container credentials endpoint'
  const file = e.AWS_SHARED_CREDENTIALS_FILE ?? join(denv.home, '.aws', 'credentials')
  const profile = e.AWS_PROFILE ?? 'default'
  const text = await readFile(file, 'utf8').catch(() => '')
  if (new RegExp(`^\\[${escape(profile)}\\]`, 'm').test(text)) return `profile "${profile}" in ${file}`
  const cfg = await readFile(e.AWS_CONFIG_FILE ?? join(denv.home, '.aws', 'config'), 'utf8').catch(() => '')
  if (new RegExp(`^\\[(profile )?${escape(profile)}\\][^[]*(sso_|credential_process|role_arn)`, 'm').test(cfg)) return `profile "${profile}" (AWS config)`
  return undefined
}

async function profileRegion(denv: DoctorEnv): Promise<string | undefined> {
  const profile = denv.env.AWS_PROFILE ?? 'default'
  const cfg = await readFile(denv.env.AWS_CONFIG_FILE ?? join(denv.home, '.aws', 'config'), 'utf8').catch(() => '')
  const section = new RegExp(`^\\[(profile )?${escape(profile)}\\]([^[]*)`, 'm').exec(cfg)?.[2] ?? ''
  return /^\s*region\s*=\s*(\S+)/m.exec(section)?.[1]
}

function escape(s: string): string {
  return s.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? ''
}
