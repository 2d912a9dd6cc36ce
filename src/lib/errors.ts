/**
 * The one error family of nle and its catalogue. Every failure a user can cause or meet carries a
 * stable literal `code` (tests assert the code, never the message), a one-line `message`, a `hint`
 * that says what to do (ending with the code's anchor in docs/errors.md), and the process exit
 * status, which follows from the code alone.
 *
 * Each domain declares its codes once, in its own `errors.ts` (`defineErrors({CODE: {exit,
 * summary, hint}})`); this module composes them. `NleError` accepts only catalogued codes, and
 * docs/errors.md is generated from the catalogue (`npm run build`; a test compares it).
 *
 * To add a code: add one entry to the domain's table. To add a domain: write its table and add it
 * to DOMAINS and to ErrorCode below.
 */
// First, so that its bindings exist before any domain module below evaluates (they import them
// through this module).
export * from './error-base.js'

import {ExitCode, type ErrorSpec, NleError, type NleErrorOptions, defineErrors, docsAnchor, useCatalogue} from './error-base.js'
import {ATTEST_ERRORS, type AttestErrorCode} from './attestation/errors.js'
import {CHANNEL_ERRORS, type ChannelErrorCode} from './channel/errors.js'
import {CHAT_ERRORS, type ChatErrorCode} from './chat/errors.js'
import {CLIENT_ERRORS, type ClientErrorCode} from './client/errors.js'
import {CONFIG_ERRORS, type ConfigErrorCode, type LockfileErrorCode} from './config/errors.js'
import {DEV_ERRORS, type DevErrorCode} from './dev/errors.js'
import {EIF_ERRORS, type EifErrorCode} from './eif/errors.js'
import {ENGINE_ERRORS, type EngineErrorCode} from './engine/errors.js'
import {GATEWAY_ERRORS, type GatewayErrorCode} from './gateway/errors.js'
import {HOST_ERRORS, type HostErrorCode} from './host/errors.js'
import {KMS_ERRORS, type KmsDomainErrorCode} from './kms/errors.js'
import {MODEL_ERRORS, type ModelErrorCode} from './model/errors.js'
import {SEAL_ERRORS, type SealErrorCode} from './model/seal/errors.js'
import {PROXY_ERRORS, type ProxyErrorCode} from './proxy/errors.js'
import {SERVER_ERRORS, type ServerErrorCode} from './server/errors.js'
import {VSOCK_ERRORS, type VsockErrorCode} from './vsock/errors.js'

/** Codes of the CLI itself and of the project-level flows in src/lib (init, demo, templates). */
export const CORE_ERRORS = defineErrors({
  USAGE: {exit: ExitCode.USAGE, summary: 'Bad flags or arguments.', hint: 'Run the command with --help for its usage'},
  CLI_UNKNOWN_COMMAND: {exit: ExitCode.USAGE, summary: 'No nle command has that name.', hint: 'Run `nle --help` for the list of commands'},
  INTERNAL: {exit: ExitCode.INTERNAL, summary: 'An unexpected failure: a bug in nle.', hint: 'This is a bug in nle. Re-run with --verbose and report the output'},
  ADDRESS_IN_USE: {
    exit: ExitCode.IO,
    summary: 'The port or Unix socket to listen on is already in use (EADDRINUSE), by another nle or any other process.',
    hint: 'Stop the other process (`ss -ltnp` names it), or choose another port or socket path',
  },
  INIT_FILES_EXIST: {exit: ExitCode.IO, summary: '`nle init` would overwrite files that already exist; nothing was written.', hint: 'Run it in an empty folder, or pass --force to overwrite the files named'},
  INIT_BAD_NAME: {exit: ExitCode.USAGE, summary: 'The project name is not lowercase letters, digits and dashes (at most 63).', hint: 'Pass --name my-project (it names the image, the KMS statements and the units)'},
  INIT_WRITE_FAILED: {exit: ExitCode.IO, summary: '`nle init` could not write a file.', hint: 'Check the folder\'s permissions and free space'},
  TEMPLATE_MISSING_VALUE: {exit: ExitCode.INTERNAL, summary: 'A bundled template names a value nle did not supply.', hint: 'This is a bug in nle. Re-run with --verbose and report the output'},
  DEMO_STEP_FAILED: {exit: ExitCode.CHECK_FAILED, summary: 'A step of `nle demo` did not give the expected result.', hint: 'The summary names the step; re-run with --verbose, and run that step\'s command by hand'},
})

export type CoreErrorCode = keyof typeof CORE_ERRORS

/** Every catalogued code: `new NleError(code, …)` accepts nothing else. */
export type ErrorCode =
  | CoreErrorCode
  | ConfigErrorCode
  | LockfileErrorCode
  | AttestErrorCode
  | ChannelErrorCode
  | ChatErrorCode
  | ClientErrorCode
  | DevErrorCode
  | EifErrorCode
  | EngineErrorCode
  | GatewayErrorCode
  | HostErrorCode
  | KmsDomainErrorCode
  | ModelErrorCode
  | SealErrorCode
  | ProxyErrorCode
  | ServerErrorCode
  | VsockErrorCode

export interface ErrorDomain {
  /** Where the domain's table is declared. */
  file: string
  title: string
  codes: Readonly<Record<string, ErrorSpec>>
}

/** The domains, in the order docs/errors.md lists them. A function: the tables load after this module (see the top). */
function domains(): ErrorDomain[] {
  return [
    {file: 'src/lib/errors.ts', title: 'The CLI and project set-up', codes: CORE_ERRORS},
    {file: 'src/lib/config/errors.ts', title: 'nle.yaml and nle.lock.json', codes: CONFIG_ERRORS},
    {file: 'src/lib/model/errors.ts', title: 'Models (save, synth, hub)', codes: MODEL_ERRORS},
    {file: 'src/lib/model/seal/errors.ts', title: 'Sealed models (`nle model seal`, the weights server, start-up)', codes: SEAL_ERRORS},
    {file: 'src/lib/engine/errors.ts', title: 'The inference engine', codes: ENGINE_ERRORS},
    {file: 'src/lib/eif/errors.ts', title: 'Enclave images (EIF)', codes: EIF_ERRORS},
    {file: 'src/lib/host/errors.ts', title: 'The Nitro host: build, allocator, run and the tools', codes: HOST_ERRORS},
    {file: 'src/lib/attestation/errors.ts', title: 'Attestation', codes: ATTEST_ERRORS},
    {file: 'src/lib/channel/errors.ts', title: 'The attested channel', codes: CHANNEL_ERRORS},
    {file: 'src/lib/server/errors.ts', title: 'The enclave server', codes: SERVER_ERRORS},
    {file: 'src/lib/proxy/errors.ts', title: 'The parent proxy', codes: PROXY_ERRORS},
    {file: 'src/lib/client/errors.ts', title: 'The client', codes: CLIENT_ERRORS},
    {file: 'src/lib/chat/errors.ts', title: '`nle chat`', codes: CHAT_ERRORS},
    {file: 'src/lib/gateway/errors.ts', title: 'The OpenAI-compatible gateway', codes: GATEWAY_ERRORS},
    {file: 'src/lib/kms/errors.ts', title: 'KMS, key policies and CMS envelopes', codes: KMS_ERRORS},
    {file: 'src/lib/dev/errors.ts', title: '`nle dev`', codes: DEV_ERRORS},
    {file: 'src/lib/vsock/errors.ts', title: 'The vhost-user-vsock back-end (QEMU)', codes: VSOCK_ERRORS},
  ]
}

export interface CatalogueEntry extends ErrorSpec {
  code: ErrorCode
  domain: string
  /** `docs/errors.md#code`. */
  docs: string
}

let composed: {domains: ErrorDomain[]; byCode: Map<string, CatalogueEntry>} | undefined

function compose(): NonNullable<typeof composed> {
  if (composed) return composed
  const all = domains()
  const byCode = new Map<string, CatalogueEntry>()
  for (const d of all) {
    for (const [code, spec] of Object.entries(d.codes)) {
      const before = byCode.get(code)
      if (before) throw new Error(`error code ${code} is declared twice: in ${before.domain} and in ${d.file}`)
      byCode.set(code, {...spec, code: code as ErrorCode, domain: d.file, docs: docsAnchor(code)})
    }
  }
  composed = {domains: all, byCode}
  return composed
}

useCatalogue((code) => compose().byCode.get(code))

/** Every catalogued code with its exit status, summary, default hint and docs anchor. */
export function errorCatalogue(): CatalogueEntry[] {
  return [...compose().byCode.values()]
}

/** The domains and their tables, in documentation order. */
export function errorDomains(): ErrorDomain[] {
  return compose().domains
}

export function isErrorCode(code: string): code is ErrorCode {
  return compose().byCode.has(code)
}

/**
 * A listener could not be opened. A port or socket in use is the same cause whoever listens, so
 * it always becomes ADDRESS_IN_USE; every other failure keeps the listener's own code.
 */
export function listenError<C extends ErrorCode>(
  code: C,
  where: string,
  cause: unknown,
  options: NleErrorOptions & {/** A more precise hint for the in-use case (e.g. the flag that picks another port). */ inUseHint?: string} = {},
): NleError<C | 'ADDRESS_IN_USE'> {
  const {inUseHint, ...rest} = options
  const errno = (cause as NodeJS.ErrnoException | undefined)?.code
  const details = {...rest.details, address: where, ...(errno ? {errno} : {})}
  if (errno === 'EADDRINUSE') {
    return new NleError('ADDRESS_IN_USE', `Cannot listen on ${where}: it is already in use.`, {cause, details, ...(inUseHint ? {hint: inUseHint} : {})})
  }
  return new NleError(code, `Cannot listen on ${where}: ${errno ?? (cause as Error | undefined)?.message ?? String(cause)}.`, {...rest, cause, details})
}

const TLS_CERT_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

/** The TLS certificate error code (DEPTH_ZERO_SELF_SIGNED_CERT, …) somewhere in a cause chain, if any. */
export function tlsCertificateError(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as {cause?: unknown}).cause, depth++) {
    const code = (e as {code?: unknown}).code
    if (typeof code === 'string' && TLS_CERT_ERRORS.has(code)) return code
  }
  return undefined
}

