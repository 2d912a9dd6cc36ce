import {readFile} from 'node:fs/promises'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {table} from '../../cli/render.js'
import {toHex} from '../../lib/attestation/cbor.js'
import {type AttestationDocument} from '../../lib/attestation/document.js'
import {insecureDevRoot} from '../../lib/attestation/roots.js'
import {fetchAttestation, isUrl, parseDuration, parseTime, readDocumentFile, resolveExpectedPcrs} from '../../lib/attestation/source.js'
import {type PcrCheck, type VerifiedAttestation, comparePcrs, inspectAttestation, verifyAttestation} from '../../lib/attestation/verify.js'
import {ExitCode, NleError, isNleError} from '../../lib/errors.js'

const pcrFlag = (n: number) => Flags.string({description: `Expected PCR${n} (96 hex characters); overrides the lockfile's.`, helpGroup: 'EXPECTED MEASUREMENTS'})

export default class AttestVerify extends BaseCommand<typeof AttestVerify> {
  static override description = `Verify a Nitro Enclave attestation document.

Checks the COSE signature, the certificate chain up to the AWS Nitro Enclaves root (G1), and the
enclave's measurements against the lockfile (or --pcrN flags). Given a URL, it fetches
GET <url>/v1/attestation?nonce=<hex> with a fresh random nonce and checks the document answers it.
Exits 0 only when the document is verified; every refusal exits ${ExitCode.VERIFY} with its own ATTEST_* code.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> attestation.cbor',
    '<%= config.bin %> <%= command.id %> http://127.0.0.1:5001 --lockfile build/nle.lock.json',
    '<%= config.bin %> <%= command.id %> doc.bin --pcr0 <hex> --pcr1 <hex> --pcr2 <hex> --at 2025-05-05T23:27:32Z --max-age 1h',
    '<%= config.bin %> <%= command.id %> http://127.0.0.1:5001 --root simulator-root.pem --allow-debug --json',
  ]

  static override args = {
    target: Args.string({description: 'A file holding the raw document (COSE_Sign1 CBOR), or the http(s) URL of a running enclave.', required: true}),
  }

  static override flags = {
    lockfile: Flags.string({description: 'Measurements lockfile to verify against (default: ./nle.lock.json when present).', helpGroup: 'EXPECTED MEASUREMENTS'}),
    pcr0: pcrFlag(0),
    pcr1: pcrFlag(1),
    pcr2: pcrFlag(2),
    pcr3: pcrFlag(3),
    pcr4: pcrFlag(4),
    pcr8: pcrFlag(8),
    at: Flags.string({description: 'Verify as of this time (ISO 8601 or epoch ms) instead of now.'}),
    'max-age': Flags.string({description: 'Refuse documents older than this (e.g. 300s, 5m, 3h).', default: '5m'}),
    'allow-debug': Flags.boolean({description: 'INSECURE: accept debug-mode enclaves (PCR0..2 zero; their code is not measured). Development only.', default: false}),
    root: Flags.string({description: 'INSECURE: trust this PEM root instead of the AWS Nitro Enclaves root (e.g. the NSM simulator root).'}),
    timeout: Flags.string({description: 'URL mode: how long to wait for the enclave.', default: '10s'}),
  }

  async run(): Promise<Record<string, unknown>> {
    const {flags, args} = this
    const at = flags.at === undefined ? new Date() : parseTime(flags.at)
    const maxAgeMs = parseDuration(flags['max-age'])
    const {expected, lockfile} = await resolveExpectedPcrs(flags, flags.lockfile)
    let root
    if (flags.root !== undefined) {
      let pem: string
      try {
        pem = await readFile(flags.root, 'utf8')
      } catch (error) {
        throw new NleError('ATTEST_READ_FAILED', `Cannot read the root certificate ${flags.root}.`, {cause: error})
      }
      root = insecureDevRoot(pem)
    }

    let document: Uint8Array
    let nonce: Uint8Array | null = null
    let source = args.target
    if (isUrl(args.target)) {
      const fetched = await fetchAttestation(args.target, {timeoutMs: parseDuration(flags.timeout)})
      document = fetched.document
      nonce = fetched.nonce
      source = fetched.url
    } else {
      document = await readDocumentFile(args.target)
    }

    const human = !this.jsonEnabled()
    if (human && root) this.warn(`Trusting a root that is not AWS's (${flags.root}): a document it accepts was not signed by AWS.`)
    if (human && flags['allow-debug']) this.warn('Debug-mode enclaves are accepted (--allow-debug): their code is not measured.')

    let verified: VerifiedAttestation
    try {
      verified = await verifyAttestation(document, {expectedPcrs: expected, expectedNonce: nonce, maxAgeMs, at, allowDebug: flags['allow-debug'], insecureDevRoot: root})
    } catch (error) {
      if (human && isNleError(error)) this.showRefused(document, source, error, expected, flags['allow-debug'])
      throw error
    }

    const pcrs = verified.pcrChecks.filter((c) => c.status !== 'unchecked' || !/^0+$/.test(c.value ?? ''))
    const data = {
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
    if (human) {
      this.log(`Attestation document: ${source}`)
      this.log(`  module id   ${verified.moduleId}`)
      this.log(`  timestamp   ${data.timestamp} (${Math.round(verified.ageMs / 1000)} s before ${data.verifiedAt})`)
      this.log(`  root        ${verified.root}${verified.debug ? '   DEBUG-MODE ENCLAVE' : ''}`)
      this.log(`  nonce       ${nonce === null ? 'not checked (no challenge sent)' : 'matches the one sent'}`)
      if (verified.publicKey) this.log(`  public key  ${verified.publicKey.length} bytes`)
      if (verified.userData) this.log(`  user data   ${verified.userData.length} bytes`)
      this.log('')
      this.log(this.pcrTable(pcrs).trimEnd())
      this.log('')
      this.log(this.chainTable(verified.chain).trimEnd())
      this.log('')
      this.log(`VERIFIED${lockfile ? ` against ${lockfile}` : ''}`)
    }
    return data
  }

  private pcrTable(checks: PcrCheck[]): string {
    return table(
      checks.map((c) => [`PCR${c.index}`, c.value ?? '(absent)', c.status === 'unchecked' ? '-' : c.status]),
      ['PCR', 'value', 'expected'],
    )
  }

  private chainTable(chain: VerifiedAttestation['chain']): string {
    return table(
      chain.map((c) => [c.role, c.subject, `${c.notBefore} → ${c.notAfter}`]),
      ['chain', 'subject', 'validity'],
    )
  }

  /** On refusal, show what the document claims (unverified) so the PCR marks and times can be read. */
  private showRefused(document: Uint8Array, source: string, error: NleError, expected: Parameters<typeof verifyAttestation>[1]['expectedPcrs'], allowDebug: boolean): void {
    let doc: AttestationDocument
    try {
      doc = inspectAttestation(document)
    } catch {
      return
    }
    const expectedMap = new Map<number, string>()
    for (const [k, v] of Object.entries(expected)) if (typeof v === 'string') expectedMap.set(Number(k.slice(3)), v.toLowerCase())
    const checks = comparePcrs(doc.pcrs, expectedMap, allowDebug).filter((c) => c.status !== 'unchecked' || !/^0+$/.test(c.value ?? ''))
    this.log(`Attestation document: ${source}   (NOT VERIFIED: ${error.code}; the values below are what it claims)`)
    this.log(`  module id   ${doc.moduleId}`)
    this.log(`  timestamp   ${new Date(doc.timestamp).toISOString()}`)
    this.log('')
    this.log(this.pcrTable(checks).trimEnd())
    this.log('')
  }
}
