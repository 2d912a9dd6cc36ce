// The real attestation documents of ../shared/testdata/attestation (see its README and
// vectors.json for where each came from) and helpers the attestation tests share.
import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import type {ExpectedPcrs} from '../lib/attestation/verify.js'

export const ATTESTATION_TESTDATA = fileURLToPath(new URL('../../../shared/testdata/attestation/', import.meta.url))

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

const raw = JSON.parse(readFileSync(`${ATTESTATION_TESTDATA}vectors.json`, 'utf8')) as Record<string, RawVector>

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

export function vector(file: string): Vector {
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

export const AWS_ROOT_PEM_FILE = `${ATTESTATION_TESTDATA}aws_nitro_root_g1.pem`

/** The shared helper (src/test-support/rejection.ts), re-exported for the attestation tests. */
export {codeOf} from './rejection.js'
