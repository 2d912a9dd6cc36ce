import {chmod, mkdir, readFile, writeFile} from 'node:fs/promises'
import {basename, join, resolve} from 'node:path'

import {parseConfig} from './config/load.js'
import {configSchema} from './config/schema.js'
import {type CoreErrorCode, NleError} from './errors.js'
import {TEMPLATES_DIR} from './paths.js'
import {type NextStep, type Place, detectPlace, initSteps, otherPlaceNote} from './next-steps.js'
import {renderTemplate} from './template.js'

export type InitErrorCode = Extract<CoreErrorCode, `INIT_${string}`>

/**
 * Template file (under templates/) → path written in the project, and its mode. `merge: 'lines'`
 * files are the user's as much as nle's: nle appends its lines that are missing and never
 * rewrites or removes theirs, with or without --force. Every other file is nle's own.
 */
const FILES: readonly {template: string; target: string; mode?: number; merge?: 'lines'}[] = [
  {template: 'nle.yaml', target: 'nle.yaml'},
  {template: 'gitignore', target: '.gitignore', merge: 'lines'},
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
  /** Overwrite nle's own files that differ (never a merged file's existing lines). */
  force?: boolean
  /** Where the Nitro device would be (tests); decides which next steps fit this machine. */
  nitroDevice?: string
}

/**
 * created: did not exist; overwritten: differed, replaced with --force; merged: existed, nle's
 * missing lines appended; unchanged: already as nle writes it (or, for a merged file, already has
 * every line), left alone.
 */
export type InitAction = 'created' | 'overwritten' | 'merged' | 'unchanged'

export interface InitResult {
  dir: string
  name: string
  files: {path: string; bytes: number; action: InitAction; added?: string[]}[]
  /** Where the next steps are for: this machine has a Nitro device, or not. */
  place: Place
  nextSteps: NextStep[]
  /** One line about the other place. */
  note: string
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
 * Scaffold a project, also into an existing repository: files nle would write identically are left
 * alone, a .gitignore gets nle's missing lines appended, and only a file of nle's that exists with
 * other content is a conflict. All-or-nothing: with a conflict and no `force`, nothing is written.
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

  const plans = await Promise.all(rendered.map(async (f) => ({...f, ...(await planFile(f))})))
  const conflicts = plans.filter((p) => p.kind === 'conflict').map((p) => p.target)
  if (conflicts.length > 0 && !options.force) {
    const alone = plans.filter((p) => p.kind === 'same' || p.kind === 'merge').map((p) => p.target)
    throw new NleError<InitErrorCode>('INIT_FILES_EXIST', `${dir} already has ${conflicts.join(', ')}, different from what nle writes; nothing was written.`, {
      hint: `Move ${conflicts.length === 1 ? 'it' : 'them'} aside, choose another folder, or pass --force to replace nle's own files (a .gitignore is only ever appended to).`,
      details: {existing: conflicts, conflicts, compatible: alone},
    })
  }

  const files: InitResult['files'] = []
  for (const p of plans) {
    const action: InitAction = p.kind === 'new' ? 'created' : p.kind === 'conflict' ? 'overwritten' : p.kind === 'merge' ? 'merged' : 'unchanged'
    const text = p.kind === 'merge' ? p.merged : p.text
    if (action !== 'unchanged') {
      try {
        await mkdir(join(p.path, '..'), {recursive: true})
        await writeFile(p.path, text)
        if (p.mode) await chmod(p.path, p.mode)
      } catch (error) {
        throw new NleError<InitErrorCode>('INIT_WRITE_FAILED', `Cannot write ${p.path}: ${(error as Error).message}`, {
          hint: 'Check that the folder is writable.',
          cause: error,
        })
      }
    }
    files.push({path: p.target, bytes: Buffer.byteLength(text), action, ...(p.kind === 'merge' ? {added: p.added} : {})})
  }
  const place = await detectPlace(options.nitroDevice)
  const cd = resolve(dir) === resolve('.') ? undefined : options.dir
  return {dir, name, files, place, nextSteps: initSteps(place, cd), note: otherPlaceNote(place)}
}

type Plan =
  | {kind: 'new' | 'same' | 'conflict'}
  | {kind: 'merge'; merged: string; added: string[]}

/** What writing `f` would do to what is on disk. */
async function planFile(f: {path: string; text: string; merge?: 'lines'}): Promise<Plan> {
  let current: string
  try {
    current = await readFile(f.path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {kind: 'new'}
    throw new NleError<InitErrorCode>('INIT_WRITE_FAILED', `Cannot read ${f.path}: ${(error as Error).message}`, {
      hint: 'Check the file\'s permissions (or that it is not a folder).',
      cause: error,
    })
  }
  if (f.merge === 'lines') return mergeLines(current, f.text)
  return current === f.text ? {kind: 'same'} : {kind: 'conflict'}
}

/**
 * The user's file with nle's missing lines appended (comments and blank lines of nle's template
 * are not lines to add). Idempotent: a second run finds every line and changes nothing.
 */
export function mergeLines(current: string, template: string): Plan {
  // `node_modules`, `/node_modules` and `node_modules/` all keep nle's `node_modules/` out of git.
  const key = (l: string): string => l.trim().replace(/^\/|\/$/g, '')
  const have = new Set(current.split(/\r?\n/).map(key))
  const added = template
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !have.has(key(l)))
  if (added.length === 0) return {kind: 'same'}
  const sep = current === '' || current.endsWith('\n') ? '' : '\n'
  return {kind: 'merge', added, merged: `${current}${sep}${current === '' ? '' : '\n'}# Added by nle init\n${added.join('\n')}\n`}
}
