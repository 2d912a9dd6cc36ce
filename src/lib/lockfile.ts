/**
 * The measurements lockfile (`nle.lock.json`): the single record of what enclave image was built,
 * which every later step (KMS key policy, CI drift check, client pins, attestation verification)
 * reads instead of recomputing. Schema: docs/lockfile.md.
 *
 * Reading is strict (unknown keys, wrong casing, wrong lengths are all errors): a lockfile is a
 * security input, so anything unexpected fails closed. Writing is deterministic: keys sorted at
 * every level, 2-space indentation, one trailing newline, so the same content gives the same bytes.
 *
 * `previous` is the repository's record of earlier builds (newest first): the only measurement
 * sets other than the current one that `nle policy apply` keeps admitted during a rollout and
 * `nle policy check` accepts from nle's statements. `nle build` maintains it (writeBuildLockfile):
 * when the measurements change, the set being replaced moves to the front.
 */
import {mkdir, readFile} from 'node:fs/promises'
import {dirname} from 'node:path'

import {z} from 'zod'

import {NleError} from './errors.js'
import {writeFileAtomic} from './files.js'

export const DEFAULT_LOCKFILE = 'nle.lock.json'
export const LOCKFILE_VERSION = 1

export type {LockfileErrorCode} from './config/errors.js'

/** 96 lowercase hex characters: a SHA-384 digest / PCR value. */
export type Hex384 = string

export interface LockfileMeasurements {
  PCR0: Hex384
  PCR1: Hex384
  PCR2: Hex384
  /** Only for a signed EIF: the PCR of the DER signing certificate. */
  PCR8?: Hex384
}

export interface LockfileEif {
  /** Where the EIF was written, relative to the lockfile's directory, `/`-separated. */
  path?: string
  /** SHA-384 of the whole EIF file, lowercase hex. */
  sha384: Hex384
  /** Size of the EIF file in bytes. */
  size: number
  /** The EIF header's format version (nle writes 4). */
  version: number
  /** Whether the EIF carries a signature section (then measurements.PCR8 is present). */
  signed: boolean
}

export interface LockfileBuilder {
  /** What produced the EIF: `nle` (docker-free builder) or `nitro-cli` (build-enclave), etc. */
  name: string
  /** That tool's version string. */
  version: string
}

/**
 * Digests of the inputs the image was built from, keyed by a name. Well-known names:
 * `modelManifest`, `runtimeBundle`, `kernel`, `cmdline`, `ramdisk0`, `ramdisk1`, …
 * Values are `sha256:<64 hex>` or `sha384:<96 hex>`.
 */
export type LockfileInputs = Record<string, string>

/** An earlier build's measurement set (the EIF's digest when nle recorded it). */
export interface LockfilePrevious extends LockfileMeasurements {
  /** SHA-384 of that build's EIF file (its lockfile's eif.sha384). */
  eifSha384?: Hex384
}

export interface Lockfile {
  version: 1
  measurements: LockfileMeasurements
  eif: LockfileEif
  builder: LockfileBuilder
  inputs: LockfileInputs
  /** Earlier builds, newest first (at most MAX_PREVIOUS, no duplicates, never the current set). Absent: none recorded. */
  previous?: LockfilePrevious[]
}

/** How many earlier builds the lockfile keeps (kms.keepPrevious is at most this). */
export const MAX_PREVIOUS = 10

const hex384 = z.string().regex(/^[0-9a-f]{96}$/, 'must be 96 lowercase hex characters (SHA-384)')
const digest = z
  .string()
  .regex(/^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96})$/, 'must be "sha256:<64 hex>" or "sha384:<96 hex>"')
const inputName = z.string().regex(/^[A-Za-z][A-Za-z0-9._+/-]{0,127}$/, 'input names are 1-128 of [A-Za-z0-9._+/-], starting with a letter')

const schema = z.strictObject({
  version: z.literal(1),
  measurements: z.strictObject({PCR0: hex384, PCR1: hex384, PCR2: hex384, PCR8: hex384.optional()}),
  eif: z.strictObject({
    path: z
      .string()
      .min(1)
      .max(4096)
      .refine((p) => !p.includes('\\') && !p.includes('\0'), 'must be a /-separated relative path')
      .optional(),
    sha384: hex384,
    size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    version: z.number().int().min(0).max(0xffff),
    signed: z.boolean(),
  }),
  builder: z.strictObject({name: z.string().min(1).max(256), version: z.string().min(1).max(256)}),
  inputs: z.record(inputName, digest),
  previous: z.array(z.strictObject({PCR0: hex384, PCR1: hex384, PCR2: hex384, PCR8: hex384.optional(), eifSha384: hex384.optional()})).max(MAX_PREVIOUS).optional(),
})

const setKey = (m: LockfileMeasurements): string => [m.PCR0, m.PCR1, m.PCR2, m.PCR8 ?? ''].join(':')

/** Validate a parsed value as a Lockfile; throws LOCKFILE_* NleErrors. `source` names it in messages. */
export function parseLockfile(value: unknown, source = DEFAULT_LOCKFILE): Lockfile {
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'version' in value) {
    const v = (value as {version: unknown}).version
    if (v !== LOCKFILE_VERSION) {
      throw new NleError('LOCKFILE_UNSUPPORTED_VERSION', `${source}: lockfile version ${JSON.stringify(v)} is not supported (expected ${LOCKFILE_VERSION}).`, {
        hint: 'Regenerate it with this version of nle (`nle eif build` or `nle build`).',
        details: {path: source, version: v},
      })
    }
  }
  const result = schema.safeParse(value)
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    throw new NleError('LOCKFILE_INVALID', `${source} is not a valid nle lockfile: ${issues[0] ?? 'invalid'}`, {
      hint: 'Do not edit the lockfile by hand; regenerate it. Its schema is in docs/lockfile.md.',
      details: {path: source, issues},
    })
  }
  const data = result.data
  if (data.eif.signed !== (data.measurements.PCR8 !== undefined)) {
    throw new NleError('LOCKFILE_INVALID', `${source}: eif.signed is ${data.eif.signed} but measurements.PCR8 is ${data.measurements.PCR8 ? 'present' : 'absent'}.`, {
      hint: 'A signed EIF has a PCR8 and an unsigned one has none; regenerate the lockfile.',
      details: {path: source},
    })
  }
  if (data.eif.path !== undefined && (data.eif.path.startsWith('/') || /^[A-Za-z]:/.test(data.eif.path))) {
    throw new NleError('LOCKFILE_INVALID', `${source}: eif.path must be relative to the lockfile, got ${JSON.stringify(data.eif.path)}.`, {
      details: {path: source},
    })
  }
  const seen = new Set([setKey(data.measurements)])
  for (const [i, p] of (data.previous ?? []).entries()) {
    const key = setKey(p)
    if (seen.has(key)) {
      throw new NleError('LOCKFILE_INVALID', `${source}: previous.${i} ${key === setKey(data.measurements) ? 'is the current measurement set' : 'appears twice'}.`, {
        hint: 'previous lists earlier builds once each, newest first, never the current one (docs/lockfile.md).',
        details: {path: source, index: i},
      })
    }
    seen.add(key)
  }
  return data as Lockfile
}

/**
 * The lockfile a build writes: `next` (the new build, whose own `previous` is ignored) with the
 * history of `prior` (the lockfile it replaces, if any). When the measurements changed, prior's
 * set moves to the front of `previous`; the result holds at most MAX_PREVIOUS sets, each once,
 * never the current one.
 */
export function withBuildHistory(next: Lockfile, prior: Lockfile | undefined): Lockfile {
  const {previous: _ignored, ...rest} = next
  const earlier: LockfilePrevious[] = []
  if (prior !== undefined) {
    if (setKey(prior.measurements) !== setKey(next.measurements)) earlier.push({...prior.measurements, eifSha384: prior.eif.sha384})
    earlier.push(...(prior.previous ?? []))
  }
  const seen = new Set([setKey(next.measurements)])
  const previous = earlier.filter((p) => {
    const key = setKey(p)
    if (seen.has(key)) return false
    seen.add(key)
    return true
  }).slice(0, MAX_PREVIOUS)
  return previous.length > 0 ? {...rest, previous} : rest
}

/**
 * Write the lockfile of a new build (what `nle build` and `nle eif build --lockfile` do): the
 * lockfile already at `path` is read first, and its measurements and history carried over
 * (withBuildHistory). None there: no history. One that cannot be read or is not valid: nothing
 * is written (its history would be lost silently) — the error says to fix or remove it.
 */
export async function writeBuildLockfile(path: string, next: Lockfile): Promise<Lockfile> {
  let prior: Lockfile | undefined
  try {
    prior = await readLockfile(path)
  } catch (error) {
    if (!(error instanceof NleError)) throw error
    if (error.code !== 'LOCKFILE_NOT_FOUND') {
      throw new NleError(error.code, `${error.message} (a build carries the earlier builds' measurements over from it, so it was not overwritten)`, {
        hint: `Fix ${path}, or remove it to start a new history (then no earlier build stays admitted in a rollout), and build again.`,
        details: error.details,
        cause: error,
      })
    }
  }
  const lockfile = withBuildHistory(next, prior)
  await writeLockfile(path, lockfile)
  return lockfile
}

/** Read and strictly validate a lockfile. */
export async function readLockfile(path: string): Promise<Lockfile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      throw new NleError('LOCKFILE_NOT_FOUND', `No lockfile at ${path}.`, {
        hint: 'Build the enclave image first (`nle eif build … --lockfile` or `nle build`), which writes it.',
        details: {path},
        cause: error,
      })
    }
    throw new NleError('LOCKFILE_UNREADABLE', `Cannot read lockfile ${path}: ${(error as Error).message}`, {
      details: {path, errno: code},
      cause: error,
    })
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new NleError('LOCKFILE_BAD_JSON', `${path} is not valid JSON: ${(error as Error).message}`, {
      hint: 'Regenerate the lockfile; do not edit it by hand.',
      details: {path},
      cause: error,
    })
  }
  return parseLockfile(value, path)
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key]
      if (v !== undefined) out[key] = sortKeys(v)
    }
    return out
  }
  return value
}

/** The exact bytes nle writes for a lockfile: validated, keys sorted, 2-space indent, trailing newline. */
export function serializeLockfile(lockfile: Lockfile): string {
  const valid = parseLockfile(lockfile, '(lockfile being written)')
  // No history is written as no field: a first build's lockfile is what it was before `previous` existed.
  const {previous, ...rest} = valid
  return JSON.stringify(sortKeys(previous === undefined || previous.length === 0 ? rest : valid), null, 2) + '\n'
}

/** Validate and write a lockfile deterministically and atomically. */
export async function writeLockfile(path: string, lockfile: Lockfile): Promise<void> {
  const text = serializeLockfile(lockfile)
  try {
    await mkdir(dirname(path), {recursive: true})
    await writeFileAtomic(path, text)
  } catch (error) {
    throw new NleError('LOCKFILE_WRITE_FAILED', `Cannot write lockfile ${path}: ${(error as Error).message}`, {
      details: {path, errno: (error as NodeJS.ErrnoException).code},
      cause: error,
    })
  }
}
