/**
 * Typed wrappers over nitro-cli. Output shapes follow aws-nitro-enclaves-cli
 * `src/common/json_output.rs` (EnclaveRunInfo, EnclaveDescribeInfo, EnclaveTerminateInfo,
 * EnclaveBuildInfo, EifDescribeInfo), printed with serde_json's pretty printer on stdout.
 *
 * Failures: nitro-cli exits with the E-number of its error and prints `[ Exx ] text` blocks on
 * stderr (`src/common/document_errors.rs`). When the enclave process fails during run-enclave,
 * its own `[ Exx ]` (the root cause) comes first and the CLI's `[ E39 ]` last, so the first code
 * printed is the one mapped to a hint.
 */
import {z} from 'zod'

import {ToolError} from '../errors.js'
import type {HostErrorCode} from './errors.js'
import {type HostContext, type ToolResult, badShape, parseToolJson, runTool} from './exec.js'

const pcrHex = z.string().regex(/^[0-9a-fA-F]{96}$/)

const measurementsSchema = z.object({
  HashAlgorithm: z.string(),
  PCR0: pcrHex,
  PCR1: pcrHex,
  PCR2: pcrHex,
  PCR8: pcrHex.optional(),
})
export type NitroMeasurements = z.infer<typeof measurementsSchema>

const runInfoSchema = z.object({
  EnclaveName: z.string(),
  EnclaveID: z.string(),
  ProcessID: z.number().int(),
  EnclaveCID: z.number().int(),
  NumberOfCPUs: z.number().int(),
  CPUIDs: z.array(z.number().int()),
  MemoryMiB: z.number().int(),
})
/** `run-enclave` stdout (EnclaveRunInfo). MemoryMiB is what was really allocated (may exceed the request). */
export type EnclaveRunInfo = z.infer<typeof runInfoSchema>

const describeInfoSchema = runInfoSchema.extend({
  EnclaveName: z.string().optional(),
  State: z.string(),
  Flags: z.string(),
  Measurements: measurementsSchema.optional(),
})
/** One element of `describe-enclaves` (EnclaveDescribeInfo; Measurements are the EIF's, even in debug mode). */
export type EnclaveDescribeInfo = z.infer<typeof describeInfoSchema>

const terminateInfoSchema = z.object({EnclaveName: z.string().optional(), EnclaveID: z.string(), Terminated: z.boolean()})
export type EnclaveTerminateInfo = z.infer<typeof terminateInfoSchema>

const describeEifSchema = z.object({
  EifVersion: z.number().int(),
  Measurements: measurementsSchema,
  IsSigned: z.boolean(),
  CheckCRC: z.boolean(),
  SignatureCheck: z.boolean().optional(),
  ImageName: z.string().optional(),
  ImageVersion: z.string().optional(),
  Metadata: z.record(z.string(), z.unknown()).optional(),
})
export type EifDescribeInfo = z.infer<typeof describeEifSchema>

/** One `[ Exx ] …` block from nitro-cli's stderr. */
export interface NitroErrorBlock {
  code: string
  text: string
}

/** Every `[ Exx ]` block in stderr, in order. A block runs until the next blank line. */
export function parseNitroErrors(stderr: string): NitroErrorBlock[] {
  const out: NitroErrorBlock[] = []
  for (const m of stderr.matchAll(/\[ (E\d{2}) \] ([^\n]*(?:\n(?!\n|\[ E\d{2} \])[^\n]*)*)/g)) {
    out.push({code: m[1]!, text: m[2]!.trim()})
  }
  return out
}

interface NitroMapping {
  code: HostErrorCode
  hint: (text: string) => string
}

const MAPPINGS: Record<string, NitroMapping> = {
  E19: {
    code: 'NITRO_DEVICE_MISSING',
    hint: (text) => {
      const file = /File: '([^']*)'/.exec(text)?.[1]
      const device = file === undefined || file.includes('nitro_enclaves') || file.includes('ne_cpus')
      return device
        ? `${file ? `${file}: ` : ''}the Nitro Enclaves device or driver is missing or not accessible. Use an instance type that supports Nitro Enclaves, launched with enclaves enabled (--enclave-options Enabled=true); install aws-nitro-enclaves-cli (it loads the nitro_enclaves driver) and add your user to the \`ne\` group. \`nle doctor --for run\` checks all of it.`
        : `nitro-cli could not use ${file}: check that it exists and is readable (for the EIF: run \`nle build\` first).`
    },
  },
  E22: {
    code: 'NITRO_CPU_POOL_TOO_SMALL',
    hint: () =>
      'The allocator reserved fewer CPUs than enclave.cpuCount. `nle allocator` shows the cpu_count needed and `nle allocator --apply` writes /etc/nitro_enclaves/allocator.yaml and restarts nitro-enclaves-allocator.service.',
  },
  E26: {
    code: 'NITRO_MEMORY_BELOW_EIF_RULE',
    hint: (text) => {
      const min = /minimum memory should be (\d+) MB/.exec(text)?.[1]
      return `Enclave memory must be at least 4x the EIF file size${min ? ` (nitro-cli wants >= ${min} MiB)` : ''}. Set enclave.memoryMiB to auto (or larger) in nle.yaml and run \`nle allocator --apply\` so the allocator reserves it.`
    },
  },
  E27: {
    code: 'NITRO_MEMORY_POOL_TOO_SMALL',
    hint: () =>
      'The enclave asks for more memory than the allocator reserved as hugepages (memory_mib). `nle allocator` shows the memory_mib needed; `nle allocator --apply` writes it and restarts nitro-enclaves-allocator.service.',
  },
  E35: {
    code: 'NITRO_HUGEPAGES_UNAVAILABLE',
    hint: () => HUGEPAGES_HINT,
  },
  E39: {
    code: 'NITRO_HUGEPAGES_UNAVAILABLE',
    hint: () => `${HUGEPAGES_HINT} E39 alone also appears when an enclave process died; \`nitro-cli describe-enclaves\` and /var/log/nitro_enclaves/ show more.`,
  },
  E36: {
    code: 'NITRO_ENCLAVE_BOOT_FAILED',
    hint: () =>
      'The enclave did not signal that it booted. Check the EIF (`nle eif describe`), give it more memory, or start it with enclave.debug: true and read its output with `nle console`.',
  },
  E44: {
    code: 'NITRO_CONSOLE_NEEDS_DEBUG',
    hint: () => 'The console exists only for enclaves started in debug mode: set enclave.debug: true and `nle run` again (a debug enclave attests all-zero PCRs, so PCR-gated KMS calls are denied).',
  },
  E49: {
    code: 'NITRO_DOCKER_BUILD_FAILED',
    hint: () => 'nitro-cli could not build the docker image; run `docker build` on the context to see why, or let `nle build` build it first.',
  },
  E50: {
    code: 'NITRO_DOCKER_PULL_FAILED',
    hint: () =>
      'nitro-cli could not find the image locally and could not pull it. Build it first (`nle build` runs docker build with build.imageTag), or check the tag; for private registries nitro-cli reads only `auths` credentials in ~/.docker/config.json, not credential helpers.',
  },
  E51: {code: 'NITRO_BLOBS_MISSING', hint: () => BLOBS_HINT},
  E52: {code: 'NITRO_BLOBS_MISSING', hint: () => BLOBS_HINT},
  E58: {
    code: 'NITRO_ENCLAVE_NOT_FOUND',
    hint: () => 'No running enclave has that name or id; `nle status` lists what runs.',
  },
  E59: {
    code: 'NITRO_SIGNING_CERT_INVALID',
    hint: () =>
      'The EIF signing certificate is invalid or expired (nitro-cli checks it before launch). Renew the certificate in build.signing.certificate and `nle build` again.',
  },
  E60: {
    code: 'NITRO_SIGNING_FAILED',
    hint: () => 'Signing failed: check build.signing.certificate and build.signing.privateKey (paths, matching key, PEM EC key), or refresh AWS credentials for a KMS key.',
  },
}

const HUGEPAGES_HINT =
  'The enclave memory could not be backed by hugepages: the allocator reservation is missing or in use. Check `systemctl status nitro-enclaves-allocator.service`, then `nle allocator --apply` (or restart the service); inside containers, hugepages must be mounted.'
const BLOBS_HINT =
  'nitro-cli cannot find its blobs or artifacts folder: install aws-nitro-enclaves-cli-devel (blobs in /usr/share/nitro_enclaves/blobs) or set NITRO_CLI_BLOBS, and make sure NITRO_CLI_ARTIFACTS (default ~/.nitro_cli) is writable.'

/** A nitro-cli failure, classified by its root cause (the first `[ Exx ]`). */
export class NitroCliError extends ToolError<HostErrorCode> {
  /** The root-cause E-code, e.g. "E26", when one was printed. */
  readonly nitroError: string | undefined
  /** Every E-code printed, in order (e.g. ["E26", "E39"]). */
  readonly nitroErrors: string[]

  constructor(args: readonly string[], r: ToolResult) {
    const blocks = parseNitroErrors(r.stderr)
    const root = blocks[0]
    const mapping = root ? MAPPINGS[root.code] : undefined
    const what = `nitro-cli ${args[0] ?? ''}`.trim()
    const message = root ? `${what} failed: [${root.code}] ${root.text.split('\n')[0]}` : `${what} failed with exit status ${r.exitCode}.`
    super(mapping?.code ?? 'NITRO_CLI_FAILED', message, {
      tool: 'nitro-cli',
      argv: args,
      toolExitCode: r.exitCode,
      stderr: r.stderr,
      hint: mapping
        ? mapping.hint(root!.text)
        : root
          ? `See https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#${root.code} or \`nitro-cli explain --error-code ${root.code}\`.`
          : undefined,
    })
    this.name = 'NitroCliError'
    this.nitroError = root?.code
    this.nitroErrors = blocks.map((b) => b.code)
    Object.assign(this.details ?? {}, {nitroError: this.nitroError, nitroErrors: this.nitroErrors})
  }
}

async function nitro(ctx: HostContext, args: string[]): Promise<ToolResult> {
  const r = await runTool(ctx, 'nitro-cli', args)
  if (r.exitCode !== 0) throw new NitroCliError(args, r)
  return r
}

function parsed<T>(schema: z.ZodType<T>, args: string[], r: ToolResult): T {
  const result = schema.safeParse(parseToolJson('nitro-cli', args, r))
  if (!result.success) throw badShape('nitro-cli', args, r, result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '))
  return result.data
}

/** Lowercase the PCR values (nitro-cli prints lowercase; never compare case-sensitively on trust). */
function normalise(m: NitroMeasurements): NitroMeasurements {
  return {
    HashAlgorithm: m.HashAlgorithm,
    PCR0: m.PCR0.toLowerCase(),
    PCR1: m.PCR1.toLowerCase(),
    PCR2: m.PCR2.toLowerCase(),
    ...(m.PCR8 ? {PCR8: m.PCR8.toLowerCase()} : {}),
  }
}

/** `nitro-cli --version` → "1.4.2". */
export async function nitroCliVersion(ctx: HostContext): Promise<string> {
  const r = await nitro(ctx, ['--version'])
  return /Nitro CLI ([\w.+-]+)/.exec(r.stdout)?.[1] ?? (r.stdout.trim() || 'unknown')
}

export interface BuildEnclaveOptions {
  dockerUri: string
  outputFile: string
  signingCertificate?: string
  privateKey?: string
  name?: string
  version?: string
}

export function buildEnclaveArgs(o: BuildEnclaveOptions): string[] {
  const args = ['build-enclave', '--docker-uri', o.dockerUri, '--output-file', o.outputFile]
  if (o.signingCertificate !== undefined || o.privateKey !== undefined) {
    args.push('--signing-certificate', o.signingCertificate ?? '', '--private-key', o.privateKey ?? '')
  }
  if (o.name) args.push('--name', o.name)
  if (o.version) args.push('--version', o.version)
  return args
}

/** `build-enclave`: the EIF is written to outputFile; stdout is `{"Measurements": {…}}`. */
export async function buildEnclave(ctx: HostContext, o: BuildEnclaveOptions): Promise<{measurements: NitroMeasurements; argv: string[]}> {
  const args = buildEnclaveArgs(o)
  const r = await nitro(ctx, args)
  return {measurements: normalise(parsed(z.object({Measurements: measurementsSchema}), args, r).Measurements), argv: args}
}

export interface RunEnclaveOptions {
  eifPath: string
  cpuCount: number
  memoryMiB: number
  cid: number
  debug: boolean
  name?: string
}

export function runEnclaveArgs(o: RunEnclaveOptions): string[] {
  const args = ['run-enclave', '--cpu-count', String(o.cpuCount), '--memory', String(o.memoryMiB), '--enclave-cid', String(o.cid), '--eif-path', o.eifPath]
  if (o.debug) args.push('--debug-mode')
  if (o.name) args.push('--enclave-name', o.name)
  return args
}

export async function runEnclave(ctx: HostContext, o: RunEnclaveOptions): Promise<EnclaveRunInfo> {
  const args = runEnclaveArgs(o)
  return parsed(runInfoSchema, args, await nitro(ctx, args))
}

/** `describe-enclaves`: always an array, `[]` when nothing runs. */
export async function describeEnclaves(ctx: HostContext): Promise<EnclaveDescribeInfo[]> {
  const args = ['describe-enclaves']
  const list = parsed(z.array(describeInfoSchema), args, await nitro(ctx, args))
  return list.map((e) => (e.Measurements ? {...e, Measurements: normalise(e.Measurements)} : e))
}

export async function terminateEnclave(ctx: HostContext, enclaveId: string): Promise<EnclaveTerminateInfo> {
  const args = ['terminate-enclave', '--enclave-id', enclaveId]
  return parsed(terminateInfoSchema, args, await nitro(ctx, args))
}

export async function describeEif(ctx: HostContext, eifPath: string): Promise<EifDescribeInfo> {
  const args = ['describe-eif', '--eif-path', eifPath]
  const info = parsed(describeEifSchema, args, await nitro(ctx, args))
  return {...info, Measurements: normalise(info.Measurements)}
}

/** `console`: attaches the terminal to a debug-mode enclave's console until it disconnects. */
export async function attachConsole(ctx: HostContext, enclaveId: string, disconnectTimeoutSec?: number): Promise<void> {
  const args = ['console', '--enclave-id', enclaveId]
  if (disconnectTimeoutSec !== undefined) args.push('--disconnect-timeout', String(disconnectTimeoutSec))
  const r = await runTool(ctx, 'nitro-cli', args, {inherit: true})
  if (r.exitCode !== 0) throw new NitroCliError(args, r)
}
