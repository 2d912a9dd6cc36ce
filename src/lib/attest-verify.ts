/**
 * `nle attest verify`: verify one attestation document, from a file or fetched from an enclave
 * with a fresh nonce through the shared client (`openEnclaveClient`: https with --ca, http,
 * unix:/path.sock). The expectation (PCRs) is required and comes from the lockfile and/or the
 * --pcrN flags; the root is AWS's unless an insecure one is named.
 */
import {readFile} from 'node:fs/promises'

import {toHex} from './attestation/cbor.js'
import {type AttestationDocument} from './attestation/document.js'
import {attestError} from './attestation/errors.js'
import {insecureDevRoot} from './attestation/roots.js'
import {type PcrFlags, readDocumentFile, resolveExpectedPcrs} from './attestation/source.js'
import {type ExpectedPcrs, type PcrCheck, type VerifiedAttestation, comparePcrs, inspectAttestation, verifyAttestation} from './attestation/verify.js'
import {openEnclaveClient} from './client/open.js'
import {isNleError} from './errors.js'

export interface AttestVerifyOptions {
  /** A document file, or where the enclave is: http(s)://… or unix:/path.sock. */
  target: string
  lockfile?: string | undefined
  pcrs: PcrFlags
  /** Verify as of this time (default now). */
  at?: Date
  maxAgeMs: number
  allowDebug: boolean
  /** INSECURE: a PEM root file to trust instead of AWS's. */
  rootFile?: string | undefined
  /** PEM file to trust for an https target's certificate. */
  caFile?: string | undefined
  /** Time to the enclave's answer (URL mode). */
  timeoutMs: number
}

export interface AttestVerifyResult {
  verified: true
  source: string
  lockfile: string | null
  moduleId: string
  timestamp: string
  verifiedAt: string
  ageMs: number
  digest: string
  debug: boolean
  root: string
  nonce: string | null
  nonceChecked: boolean
  publicKey: string | null
  userData: string | null
  pcrs: PcrCheck[]
  chain: VerifiedAttestation['chain']
}

/** What an unverified document claims, for the refusal's report (undefined when it does not even parse). */
export interface RefusedDocument {
  source: string
  moduleId: string
  timestamp: string
  pcrs: PcrCheck[]
}

/** Whether the target names an enclave (a URL or a socket) rather than a document file. */
export function isEnclaveTarget(target: string): boolean {
  return /^https?:\/\//i.test(target) || target.startsWith('unix:')
}

/**
 * Verifies; throws the refusal (ATTEST_*, or the client's CLIENT_* when the enclave cannot be
 * reached or its certificate is not trusted). `onRefused` sees what the refused document claims.
 */
export async function attestVerify(options: AttestVerifyOptions, onRefused?: (doc: RefusedDocument, code: string) => void): Promise<AttestVerifyResult> {
  const {expected, lockfile} = await resolveExpectedPcrs(options.pcrs, options.lockfile)
  let root
  if (options.rootFile !== undefined) {
    let pem: string
    try {
      pem = await readFile(options.rootFile, 'utf8')
    } catch (error) {
      throw attestError('ATTEST_READ_FAILED', `Cannot read the root certificate ${options.rootFile}.`, {hint: 'Check the --root path.', cause: error})
    }
    root = insecureDevRoot(pem)
  }

  let document: Uint8Array
  let nonce: Uint8Array | null = null
  let source = options.target
  if (isEnclaveTarget(options.target)) {
    const connection = await openEnclaveClient({
      flags: {target: options.target, ca: options.caFile},
      expectedPcrs: expected,
      devStack: false,
      client: {timeoutMs: options.timeoutMs, idleTimeoutMs: options.timeoutMs},
    })
    try {
      const fetched = await connection.client.fetchAttestation()
      ;({document, nonce} = fetched)
      source = fetched.url
    } finally {
      connection.close()
    }
  } else {
    document = await readDocumentFile(options.target)
  }

  let verified: VerifiedAttestation
  try {
    verified = await verifyAttestation(document, {
      expectedPcrs: expected,
      expectedNonce: nonce,
      maxAgeMs: options.maxAgeMs,
      at: options.at ?? new Date(),
      allowDebug: options.allowDebug,
      insecureDevRoot: root,
    })
  } catch (error) {
    if (onRefused && isNleError(error)) {
      const claimed = claims(document, source, expected, options.allowDebug)
      if (claimed) onRefused(claimed, error.code)
    }
    throw error
  }
  return {
    verified: true,
    source,
    lockfile,
    moduleId: verified.moduleId,
    timestamp: verified.timestamp.toISOString(),
    verifiedAt: verified.verifiedAt.toISOString(),
    ageMs: verified.ageMs,
    digest: verified.digest,
    debug: verified.debug,
    root: verified.root,
    nonce: verified.nonce === null ? null : toHex(verified.nonce),
    nonceChecked: nonce !== null,
    publicKey: verified.publicKey === null ? null : toHex(verified.publicKey),
    userData: verified.userData === null ? null : toHex(verified.userData),
    pcrs: verified.pcrChecks,
    chain: verified.chain,
  }
}

/** The PCR checks worth showing: every checked one, and unchecked ones that are not all zero. */
export function shownPcrs(checks: PcrCheck[]): PcrCheck[] {
  return checks.filter((c) => c.status !== 'unchecked' || !/^0+$/.test(c.value ?? ''))
}

function claims(document: Uint8Array, source: string, expected: ExpectedPcrs, allowDebug: boolean): RefusedDocument | undefined {
  let doc: AttestationDocument
  try {
    doc = inspectAttestation(document)
  } catch {
    return undefined
  }
  const expectedMap = new Map<number, string>()
  for (const [k, v] of Object.entries(expected)) if (typeof v === 'string') expectedMap.set(Number(k.slice(3)), v.toLowerCase())
  return {source, moduleId: doc.moduleId, timestamp: new Date(doc.timestamp).toISOString(), pcrs: shownPcrs(comparePcrs(doc.pcrs, expectedMap, allowDebug))}
}
