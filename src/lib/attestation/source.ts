/**
 * Where a document and its expectations come from, for `nle attest verify`: a file or an enclave's
 * attestation endpoint, expected PCRs from flags and/or the measurements lockfile, and the
 * human time/duration inputs. No CLI framework here: the command only wires flags to these.
 */
import {access, readFile} from 'node:fs/promises'

import {DEFAULT_LOCKFILE, readLockfile} from '../lockfile.js'
import {attestError} from './errors.js'
import type {ExpectedPcrs} from './verify.js'

/** The path of the attestation endpoint an nle enclave server exposes. */

export async function readDocumentFile(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path))
  } catch (error) {
    throw attestError('ATTEST_READ_FAILED', `Cannot read the attestation document ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`, {
      details: {path},
      cause: error,
    })
  }
}

export interface PcrFlags {
  pcr0?: string
  pcr1?: string
  pcr2?: string
  pcr3?: string
  pcr4?: string
  pcr8?: string
}

export interface ExpectationSource {
  expected: ExpectedPcrs
  /** The lockfile that was read, if any. */
  lockfile: string | null
}

/**
 * The expected PCRs: the lockfile's measurements (an explicit path must exist; the default
 * ./nle.lock.json is used when present), overridden one by one by --pcrN flags. PCR0, PCR1 and
 * PCR2 must all end up known, or this throws ATTEST_NO_EXPECTED_PCRS.
 */
export async function resolveExpectedPcrs(flags: PcrFlags, lockfilePath: string | undefined): Promise<ExpectationSource> {
  let path: string | null = null
  if (lockfilePath !== undefined) {
    path = lockfilePath
  } else {
    try {
      await access(DEFAULT_LOCKFILE)
      path = DEFAULT_LOCKFILE
    } catch {
      path = null
    }
  }
  const merged: Record<string, string> = {}
  if (path !== null) {
    const lock = await readLockfile(path)
    for (const [k, v] of Object.entries(lock.measurements)) if (typeof v === 'string') merged[k] = v
  }
  for (const i of [0, 1, 2, 3, 4, 8] as const) {
    const v = flags[`pcr${i}`]
    if (v !== undefined) merged[`PCR${i}`] = v.replace(/^0x/i, '').toLowerCase()
  }
  const {PCR0, PCR1, PCR2} = merged
  if (PCR0 === undefined || PCR1 === undefined || PCR2 === undefined) {
    throw attestError('ATTEST_NO_EXPECTED_PCRS', 'No expected measurements for PCR0, PCR1 and PCR2: a document cannot be verified against nothing.', {
      hint: `Run it next to ${DEFAULT_LOCKFILE}, pass --lockfile, or give --pcr0, --pcr1 and --pcr2.`,
    })
  }
  return {expected: merged as unknown as ExpectedPcrs, lockfile: path}
}

/** `--at`: an ISO 8601 time or milliseconds since the epoch. */
export function parseTime(text: string): Date {
  const date = /^\d+$/.test(text) ? new Date(Number(text)) : new Date(text)
  if (Number.isNaN(date.getTime())) {
    throw attestError('ATTEST_POLICY_INVALID', `Not a time: ${JSON.stringify(text)}.`, {hint: 'Use ISO 8601 (2025-05-05T23:27:32Z) or milliseconds since the epoch.'})
  }
  return date
}
