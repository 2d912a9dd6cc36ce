/** Lockfile records for EIFs nle built or read. */
import {relative, dirname, sep} from 'node:path'

import type {Lockfile} from '../lockfile.js'
import type {EifInfo} from './reader.js'
import type {EifBuildResult} from './writer.js'

export interface LockfileContext {
  /** Path of the lockfile (eif.path is stored relative to its directory). */
  lockfilePath: string
  eifPath: string
  builder: {name: string; version: string}
  /** Extra input digests, e.g. {modelManifest: 'sha256:…', runtimeBundle: 'sha256:…'}. */
  inputs?: Record<string, string>
}

function relPath(ctx: LockfileContext): string {
  return relative(dirname(ctx.lockfilePath), ctx.eifPath).split(sep).join('/')
}

function measurementsOf(m: {PCR0: string; PCR1: string; PCR2: string; PCR8?: string}): Lockfile['measurements'] {
  return {PCR0: m.PCR0, PCR1: m.PCR1, PCR2: m.PCR2, ...(m.PCR8 ? {PCR8: m.PCR8} : {})}
}

export function lockfileFromBuild(result: EifBuildResult, ctx: LockfileContext): Lockfile {
  const inputs: Record<string, string> = {}
  for (const [k, v] of Object.entries(result.inputs)) inputs[k] = `sha384:${v}`
  return {
    version: 1,
    measurements: measurementsOf(result.measurements),
    eif: {path: relPath(ctx), sha384: result.sha384, size: result.size, version: result.version, signed: result.signed},
    builder: ctx.builder,
    inputs: {...inputs, ...ctx.inputs},
  }
}

/** From an EIF read back with `inspectEif(…, {fileDigest: true})` (the type requires the digest). */
export function lockfileFromEif(info: EifInfo & {fileSha384: string}, ctx: LockfileContext): Lockfile {
  return {
    version: 1,
    measurements: measurementsOf(info.measurements),
    eif: {path: relPath(ctx), sha384: info.fileSha384, size: info.layout.fileSize, version: info.layout.version, signed: info.signature !== undefined},
    builder: ctx.builder,
    inputs: {...ctx.inputs},
  }
}
