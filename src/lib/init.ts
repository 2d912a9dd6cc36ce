import {constants} from 'node:fs'
import {access, mkdir, readFile, writeFile, chmod} from 'node:fs/promises'
import {basename, join, resolve} from 'node:path'

import {parseConfig} from './config/load.js'
import {configSchema} from './config/schema.js'
import {type CoreErrorCode, NleError} from './errors.js'
import {TEMPLATES_DIR} from './paths.js'
import {renderTemplate} from './template.js'

export type InitErrorCode = Extract<CoreErrorCode, `INIT_${string}`>

/** Template file (under templates/) → path written in the project, and its mode. */
const FILES: readonly {template: string; target: string; mode?: number}[] = [
  {template: 'nle.yaml', target: 'nle.yaml'},
  {template: 'gitignore', target: '.gitignore'},
  {template: 'enclave/Dockerfile', target: 'enclave/Dockerfile'},
  {template: 'enclave/start.sh', target: 'enclave/start.sh', mode: 0o755},
  {template: 'parent/allocator.yaml', target: 'parent/allocator.yaml'},
  {template: 'parent/nle-vsock-bridge.service', target: 'parent/nle-vsock-bridge.service'},
  {template: 'parent/nle-parent-proxy.service', target: 'parent/nle-parent-proxy.service'},
  {template: 'ci/nle-policy-check.yml', target: '.github/workflows/nle-policy-check.yml'},
]

export interface InitOptions {
  dir: string
  /** Project name; defaults to the folder name made valid. */
  name?: string
  force?: boolean
}

export interface InitResult {
  dir: string
  name: string
  files: {path: string; bytes: number; action: 'created' | 'overwritten'}[]
  nextSteps: string[]
}

/** Memory reserved by allocator.yaml before the first build says better (MiB). */
export const INITIAL_ALLOCATOR_MEMORY_MIB = 4096

export function projectNameFrom(dir: string): string {
  return basename(resolve(dir))
    .toLowerCase()
    .replaceAll(/[^a-z0-9-]+/g, '-')
    .replaceAll(/^-+|-+$/g, '')
    .slice(0, 63)
}

/**
 * Scaffold a project. All-or-nothing about existing files: without `force`, if any target
 * exists nothing is written at all.
 */
export async function initProject(options: InitOptions): Promise<InitResult> {
  const dir = resolve(options.dir)
  const name = options.name ?? projectNameFrom(dir)
  const nameCheck = configSchema.shape.name.safeParse(name)
  if (!nameCheck.success) {
    throw new NleError<InitErrorCode>('INIT_BAD_NAME', `"${name}" is not a valid project name (lowercase letters, digits and dashes, at most 63).`, {
      hint: 'Pass --name my-project.',
    })
  }
  const defaults = configSchema.parse({version: 1, name})
  const values = {
    name,
    cpuCount: defaults.enclave.cpuCount,
    cid: defaults.enclave.cid,
    vsockPort: defaults.enclave.vsockPort,
    port: defaults.proxy.port,
    allocatorMemoryMiB: INITIAL_ALLOCATOR_MEMORY_MIB,
  }

  const rendered = await Promise.all(
    FILES.map(async (f) => ({
      ...f,
      path: join(dir, f.target),
      text: renderTemplate(await readFile(join(TEMPLATES_DIR, f.template), 'utf8'), values, f.template),
    })),
  )
  // The config we write must be one we accept.
  parseConfig(rendered[0]!.text, 'templates/nle.yaml')

  const existing = (await Promise.all(rendered.map(async (f) => ((await exists(f.path)) ? f.target : undefined)))).filter(
    (f): f is string => f !== undefined,
  )
  if (existing.length > 0 && !options.force) {
    throw new NleError<InitErrorCode>('INIT_FILES_EXIST', `${dir} already has ${existing.join(', ')}; nothing was written.`, {
      hint: 'Use --force to overwrite them, or choose another folder.',
      details: {existing},
    })
  }

  const files: InitResult['files'] = []
  for (const f of rendered) {
    try {
      await mkdir(join(f.path, '..'), {recursive: true})
      await writeFile(f.path, f.text)
      if (f.mode) await chmod(f.path, f.mode)
    } catch (error) {
      throw new NleError<InitErrorCode>('INIT_WRITE_FAILED', `Cannot write ${f.path}: ${(error as Error).message}`, {
        hint: 'Check that the folder is writable.',
        cause: error,
      })
    }
    files.push({path: f.target, bytes: Buffer.byteLength(f.text), action: existing.includes(f.target) ? 'overwritten' : 'created'})
  }
  const cd = resolve(dir) === resolve('.') ? [] : [`cd ${options.dir}`]
  return {
    dir,
    name,
    files,
    nextSteps: [...cd, 'nle doctor', 'nle model save   # or: nle model synth --preset tiny', 'nle build', 'nle policy apply', 'nle run'],
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK)
    return true
  } catch {
    return false
  }
}
