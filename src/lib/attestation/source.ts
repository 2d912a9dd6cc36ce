/**
 * Where a document and its expectations come from, for `nle attest verify`: a file or an enclave's
 * attestation endpoint, expected PCRs from flags and/or the measurements lockfile, and the
 * human time/duration inputs. No CLI framework here: the command only wires flags to these.
 */
import {randomBytes} from 'node:crypto'
import {access, readFile} from 'node:fs/promises'

import {tlsCertificateError, tlsCertificateHint} from '../errors.js'
import {DEFAULT_LOCKFILE, readLockfile} from '../lockfile.js'
import {toHex} from './cbor.js'
import {MAX_DOCUMENT_BYTES} from './cose.js'
import {attestError} from './errors.js'
import type {ExpectedPcrs} from './verify.js'

/** The path of the attestation endpoint an nle enclave server exposes. */
export const ATTESTATION_PATH = '/v1/attestation'
export const NONCE_BYTES = 32

export function isUrl(target: string): boolean {
  return /^https?:\/\//i.test(target)
}

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

export interface FetchedDocument {
  document: Uint8Array
  nonce: Uint8Array
  url: string
}

/**
 * GET <base>/v1/attestation?nonce=<hex> with a fresh random 32-byte nonce. The endpoint answers
 * with the raw COSE_Sign1 bytes (application/cbor or application/octet-stream) or with JSON
 * `{"document": "<base64>"}`.
 */
export async function fetchAttestation(base: string, options: {timeoutMs?: number; nonce?: Uint8Array} = {}): Promise<FetchedDocument> {
  const nonce = options.nonce ?? new Uint8Array(randomBytes(NONCE_BYTES))
  let url: URL
  try {
    url = new URL(base)
  } catch (error) {
    throw attestError('ATTEST_BAD_URL', `Not a URL: ${base}.`, {cause: error})
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw attestError('ATTEST_BAD_URL', `Only http(s) URLs are supported, not ${url.protocol}.`)
  url.pathname = url.pathname.replace(/\/+$/, '') + ATTESTATION_PATH
  url.search = ''
  url.searchParams.set('nonce', toHex(nonce))
  const where = url.toString()
  const fail = (message: string, cause?: unknown): never => {
    // A refused certificate is a trust problem, not a stopped proxy: say so.
    const tls = tlsCertificateError(cause)
    throw attestError('ATTEST_FETCH_FAILED', message, {
      ...(tls ? {hint: tlsCertificateHint(tls)} : {}),
      details: {url: where, ...(tls ? {tls} : {})},
      cause,
    })
  }
  let response: Response
  try {
    response = await fetch(where, {signal: AbortSignal.timeout(options.timeoutMs ?? 10_000), headers: {accept: 'application/cbor, application/json;q=0.5'}, redirect: 'error'})
  } catch (error) {
    const tls = tlsCertificateError(error)
    return fail(tls ? `${where} presented a TLS certificate this machine does not trust (${tls}).` : `Cannot reach ${where}: ${(error as Error).message}.`, error)
  }
  if (!response.ok) return fail(`${where} answered HTTP ${response.status}.`)
  const declared = Number(response.headers.get('content-length') ?? 0)
  if (declared > 4 * MAX_DOCUMENT_BYTES) return fail(`${where} announced ${declared} bytes; an attestation document is at most ${MAX_DOCUMENT_BYTES}.`)
  const body = new Uint8Array(await response.arrayBuffer())
  if (body.length > 4 * MAX_DOCUMENT_BYTES) return fail(`${where} answered ${body.length} bytes; an attestation document is at most ${MAX_DOCUMENT_BYTES}.`)
  let document = body
  if ((response.headers.get('content-type') ?? '').includes('json')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(body).toString('utf8'))
    } catch (error) {
      return fail(`${where} answered invalid JSON.`, error)
    }
    const b64 = (parsed as {document?: unknown})?.document
    if (typeof b64 !== 'string') return fail(`${where} answered JSON without a "document" string.`)
    document = new Uint8Array(Buffer.from(b64, 'base64'))
  }
  return {document, nonce, url: where}
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

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}

/** `--max-age`: `300`, `300s`, `5m`, `3h`, `1d`, `1500ms` (a bare number is seconds). */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim())
  if (!match) {
    throw attestError('ATTEST_POLICY_INVALID', `Not a duration: ${JSON.stringify(text)}.`, {hint: 'Use e.g. 300s, 5m, 3h or 1d.'})
  }
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!)
}
