/** Flags shared by several commands, so one concept has one name and one syntax everywhere. */
import {Flags, type Interfaces} from '@oclif/core'

import {formatDuration, parseDuration} from '../lib/duration.js'
import type {EnclaveClientFlags, EnclaveMode} from '../lib/client/open.js'
import type {ProxyFlag} from '../lib/proxy/flags.js'

/**
 * A duration flag: `1500ms`, `90s`, `5m`, `3h`, `1d` or a bare number of seconds; the command
 * gets milliseconds. `defaultMs` is shown in --help in the same syntax.
 */
export function durationFlag(options: {description: string; defaultMs?: number}) {
  const base = {
    description: `${options.description} (e.g. 1500ms, 90s, 5m; a bare number is seconds)`,
    helpValue: 'DURATION',
    parse: async (text: string, _context: unknown, flag: {name: string}) => parseDuration(text, `--${flag.name}`),
  }
  const make = Flags.custom<number>(base)
  return options.defaultMs === undefined ? make() : make({default: options.defaultMs, defaultHelp: async () => formatDuration(options.defaultMs!)})
}

/** oclif flags for a table of text flags that the lib parses itself (the proxy's, shared with its runtime entry). */
export function textFlags<T extends Record<string, ProxyFlag>>(table: T): {[K in keyof T]: Interfaces.OptionFlag<string | string[] | undefined>} {
  const out: Record<string, unknown> = {}
  for (const [name, flag] of Object.entries(table)) {
    const common = {
      description: flag.kind === 'duration' ? `${flag.description} (e.g. 1500ms, 90s, 5m)` : flag.description,
      helpValue: {file: 'FILE', directory: 'DIR', string: 'VALUE', strings: 'VALUE', count: 'N', port: 'PORT', duration: 'DURATION'}[flag.kind],
      ...(flag.char ? {char: flag.char} : {}),
      ...(flag.options ? {options: [...flag.options]} : {}),
      ...(flag.dependsOn ? {dependsOn: [...flag.dependsOn]} : {}),
    }
    out[name] = flag.kind === 'strings' ? Flags.string({...common, multiple: true}) : Flags.string(common)
  }
  return out as {[K in keyof T]: Interfaces.OptionFlag<string | string[] | undefined>}
}

/** What to trust when reaching an enclave: `nle chat`, `nle gateway` and `nle attest verify`. */
export const enclaveTrustFlags = {
  lockfile: Flags.file({description: 'Measurements the enclave must attest to (default: build.lockfile of ./nle.yaml, else nle.lock.json).'}),
  'dev-root': Flags.file({aliases: ['root'], description: 'INSECURE, development only: trust this PEM root (the NSM simulator\'s) instead of AWS\'s.'}),
  ca: Flags.file({description: 'PEM certificate to trust for the proxy\'s TLS (e.g. nle dev\'s self-signed one).'}),
  'allow-debug': Flags.boolean({description: 'INSECURE: accept a debug-mode enclave (all-zero PCRs; its code is not measured, its memory readable by the host).', default: false}),
}

/** How requests are protected, and KMS mode's key: `nle chat` and `nle gateway`. */
export const enclaveModeFlags = {
  mode: Flags.string({description: 'How requests are protected: sealed to the attested key, or also gated by the KMS key policy.', options: ['attested', 'kms'], default: 'attested'}),
  'kms-key-id': Flags.string({description: 'KMS mode: the key (ARN, id or alias). Default: kms.keyId of nle.yaml, or the dev stack\'s key.'}),
  'kms-region': Flags.string({description: 'KMS mode: the key\'s region. Default: kms.region of nle.yaml.'}),
  profile: Flags.string({description: 'KMS mode: the AWS profile to sign KMS Encrypt with.'}),
}

/** The parsed values of those flags. */
export interface EnclaveFlagValues {
  lockfile?: string | undefined
  'dev-root'?: string | undefined
  ca?: string | undefined
  'allow-debug'?: boolean | undefined
  mode?: string | undefined
  'kms-key-id'?: string | undefined
  'kms-region'?: string | undefined
  profile?: string | undefined
}

/** Those flags' values as `openEnclaveClient` takes them. */
export function enclaveClientFlags(target: string | undefined, f: EnclaveFlagValues): EnclaveClientFlags {
  return {
    target,
    lockfile: f.lockfile,
    devRoot: f['dev-root'],
    ca: f.ca,
    allowDebug: f['allow-debug'] === true,
    ...(f.mode === undefined ? {} : {mode: f.mode as EnclaveMode}),
    kmsKeyId: f['kms-key-id'],
    kmsRegion: f['kms-region'],
    profile: f.profile,
  }
}
