// The real attestation documents of ../shared/testdata/attestation (see its README and
// vectors.json for where each came from) and helpers the attestation tests share. In a clone
// without ../shared the vectors are empty: tests that read them skip on HAVE_VECTORS (the reason
// is printed once by sharedTestdata), and the helpers still load.
import {readFileSync} from 'node:fs'

import {describe, it} from 'vitest'

import type {ExpectedPcrs} from '../lib/attestation/verify.js'
import {sharedTestdata} from './testdata.js'

/** The folder of the real documents (trailing slash), or undefined where ../shared is absent. */
export const ATTESTATION_TESTDATA: string | undefined = sharedTestdata('attestation/')
export const HAVE_VECTORS = ATTESTATION_TESTDATA !== undefined

/**
 * describe() over the real documents. Where they are absent its body is not even collected (it
 * may decode them at collection time); one skipped test stands in for it and says why.
 */
export function describeVectors(name: string, body: () => void): void {
  if (HAVE_VECTORS) describe(name, body)
  else describe.skip(name, () => it('needs ../shared/testdata/attestation (absent in this clone)', () => undefined))
}

export interface Vector {
  file: string
  source: string
  moduleId: string
  timestampMs: number
  debug: boolean
  expected: 'valid' | 'invalid'
  pcrs: Record<string, string>
  leafNotAfter: string
  bytes: Uint8Array
}

interface RawVector {
  source: string
  module_id?: string
  timestamp_ms?: number
  debug_mode_pcr0_2_zero?: boolean
  expected?: 'valid' | 'invalid'
  pcrs?: Record<string, string>
  earliest_not_after_in_chain?: string
}

const raw = (ATTESTATION_TESTDATA === undefined ? {} : JSON.parse(readFileSync(`${ATTESTATION_TESTDATA}vectors.json`, 'utf8'))) as Record<string, RawVector>

/** Every real document, in file-name order. */
export const VECTORS: Vector[] = Object.entries(raw)
  .filter(([, v]) => v.pcrs !== undefined)
  .map(([file, v]) => ({
    file,
    source: v.source,
    moduleId: v.module_id!,
    timestampMs: v.timestamp_ms!,
    debug: v.debug_mode_pcr0_2_zero!,
    expected: v.expected!,
    pcrs: v.pcrs!,
    leafNotAfter: v.earliest_not_after_in_chain!,
    bytes: new Uint8Array(readFileSync(`${ATTESTATION_TESTDATA}${file}`)),
  }))

/**
 * One real document. Without the shared data it is a stub with no bytes, so a module can name
 * its vectors at top level; every test that reads one skips on HAVE_VECTORS (and a test that
 * forgot to would fail on the empty document, not pass).
 */
export function vector(file: string): Vector {
  if (!HAVE_VECTORS) return {file, source: '', moduleId: '', timestampMs: 0, debug: false, expected: 'invalid', pcrs: {}, leafNotAfter: '', bytes: new Uint8Array()}
  const v = VECTORS.find((x) => x.file === file)
  if (!v) throw new Error(`no test vector ${file}`)
  return v
}

/** A vector's own PCR0/1/2/3/4/8 as the verifier's expectation. */
export function expectedOf(v: Vector, indexes: readonly number[] = [0, 1, 2, 3, 4, 8]): ExpectedPcrs {
  const out: Record<string, string> = {}
  for (const i of indexes) out[`PCR${i}`] = v.pcrs[String(i)]!
  return out as unknown as ExpectedPcrs
}

/** The PEM AWS publishes, from the shared data (undefined without it). */
export const AWS_ROOT_PEM_FILE = ATTESTATION_TESTDATA === undefined ? undefined : `${ATTESTATION_TESTDATA}aws_nitro_root_g1.pem`

/** The shared helper (src/test-support/rejection.ts), re-exported for the attestation tests. */
export {codeOf} from './rejection.js'
