/** `nle attest verify`'s human report: pure, from the lib's result (scripts use --json). Kept out of render.ts so every command's error path does not load the attestation code. */
import {type AttestVerifyResult, type RefusedDocument, shownPcrs} from '../lib/attest-verify.js'
import type {PcrCheck} from '../lib/attestation/verify.js'
import {table} from './render.js'

/** `nle attest verify`'s report of a verified document (each entry one `log` call, blank lines kept). */
export function attestVerifiedLines(data: AttestVerifyResult): string[] {
  return [
    `Attestation document: ${data.source}`,
    `  module id   ${data.moduleId}`,
    `  timestamp   ${data.timestamp} (${Math.round(data.ageMs / 1000)} s before ${data.verifiedAt})`,
    `  root        ${data.root}${data.debug ? '   DEBUG-MODE ENCLAVE' : ''}`,
    `  nonce       ${data.nonceChecked ? 'matches the one sent' : 'not checked (no challenge sent)'}`,
    ...(data.publicKey ? [`  public key  ${data.publicKey.length / 2} bytes`] : []),
    ...(data.userData ? [`  user data   ${data.userData.length / 2} bytes`] : []),
    `\n${pcrTable(shownPcrs(data.pcrs))}\n`,
    `${table(data.chain.map((c) => [c.role, c.subject, `${c.notBefore} → ${c.notAfter}`]), ['chain', 'subject', 'validity']).trimEnd()}\n`,
    `VERIFIED${data.lockfile ? ` against ${data.lockfile}` : ''}`,
  ]
}

/** On refusal, what the document claims (unverified), so the PCR marks and times can be read. */
export function attestRefusedLines(doc: RefusedDocument, code: string): string[] {
  return [
    `Attestation document: ${doc.source}   (NOT VERIFIED: ${code}; the values below are what it claims)`,
    `  module id   ${doc.moduleId}`,
    `  timestamp   ${doc.timestamp}`,
    `\n${pcrTable(doc.pcrs)}\n`,
  ]
}

function pcrTable(checks: PcrCheck[]): string {
  return table(
    checks.map((c) => [`PCR${c.index}`, c.value ?? '(absent)', c.status === 'unchecked' ? '-' : c.status]),
    ['PCR', 'value', 'expected'],
  ).trimEnd()
}
