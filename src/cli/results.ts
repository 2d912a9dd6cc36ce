/**
 * The schema of every command's `--json` output: the one source of schema/json/*.schema.json
 * (written by `npm run build`, compared by test/sync.test.ts) and of the checks in
 * test/json-output.test.ts, which run the commands and validate what they print.
 *
 * `RESULTS` holds the `result` of each command that prints one envelope; `EVENTS` the `result` of
 * each event line of the long-running ones. The compiler holds each schema to its command: the
 * type the command returns (or emits) must fit the schema (checked by `npm run typecheck` in src/cli/results.test.ts). Objects are
 * closed (`additionalProperties: false`): a new field is added here, in the same change.
 *
 * Not imported by the commands at run time (zod stays out of their start-up): only by the build
 * step and the tests.
 */
import {z} from 'zod'

import {JSON_SCHEMA_VERSION} from './json.js'

// ---------------------------------------------------------------------------------------------
// Pieces several results share.

const hex = z.string().describe('lowercase hex')
const measurementSet = z.strictObject({PCR0: hex, PCR1: hex, PCR2: hex, PCR8: hex.optional()})
const measurements = z.strictObject({HashAlgorithm: z.string(), PCR0: hex, PCR1: hex, PCR2: hex, PCR8: hex.optional()})
const stages = z.array(z.strictObject({stage: z.string(), label: z.string(), ms: z.number()})).describe('each stage with how long it took, in order')
const nextSteps = z.array(z.strictObject({command: z.string(), why: z.string()}))
const stringOrList = z.union([z.string(), z.array(z.string())])
/** A KMS key policy statement, as AWS reads it (its principals and conditions are open-ended). */
const policyStatement = z.strictObject({
  Sid: z.string().optional(),
  Effect: z.enum(['Allow', 'Deny']),
  Principal: z.unknown().optional(),
  NotPrincipal: z.unknown().optional(),
  Action: stringOrList.optional(),
  NotAction: stringOrList.optional(),
  Resource: stringOrList.optional(),
  NotResource: stringOrList.optional(),
  Condition: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
})
/** Which key an entry is about (a sealed model's separate key, kms.modelKeyId, next to the project key), and where its policy came from. */
const keyRef = z.strictObject({purpose: z.enum(['project', 'model']), source: z.string()})
const exposure = z.strictObject({
  key: keyRef.optional(),
  kind: z.enum(['unconditioned-access', 'debug-pin', 'unrecorded-measurements', 'partial-pin', 'stale-set']),
  index: z.number(),
  sid: z.string().nullable(),
  owned: z.boolean(),
  via: z.enum(['role', 'account', 'everyone']),
  actions: z.array(z.string()),
  set: measurementSet.partial().optional(),
  message: z.string(),
  proposed: policyStatement.nullable(),
  fix: z.string(),
})
/** An enclave as `nitro-cli describe-enclaves` reports it: nitro-cli's fields, which it may extend. */
const describedEnclave = z.looseObject({
  EnclaveID: z.string(),
  ProcessID: z.number(),
  EnclaveCID: z.number(),
  NumberOfCPUs: z.number(),
  CPUIDs: z.array(z.number()),
  MemoryMiB: z.number(),
  State: z.string(),
  Flags: z.string(),
  EnclaveName: z.string().optional(),
  Measurements: measurements.optional(),
})
const memoryPlan = {
  eifBytes: z.number(),
  eifRuleMiB: z.number(),
  runtimeMiB: z.number(),
  memoryMiB: z.number(),
  source: z.enum(['auto', 'config']),
}
const layoutFigure = z.strictObject({eifBytes: z.number(), estimated: z.boolean(), eifRuleMiB: z.number(), runtimeMiB: z.number(), memoryMiB: z.number()})
/** The enclave memory nle plans: 4x the EIF or the runtime's need (the model, its KV cache, overhead), whichever is more. */
const enclaveMemory = z.strictObject({
  runtime: z
    .strictObject({
      kvCache: z
        .strictObject({numLayers: z.number(), kvHeads: z.number(), headDim: z.number(), contextTokens: z.number(), sequences: z.number(), bytesPerValue: z.number().optional(), bytesPerToken: z.number()})
        .optional(),
      modelBytes: z.number(),
      kvCacheBytes: z.number(),
    })
    .optional(),
  ...memoryPlan,
  /** The model embedded in the EIF against sealed (model.sealed): the built EIF's figure and the other layout's, derived from it. */
  layouts: z
    .strictObject({
      built: z.enum(['embedded', 'sealed']),
      embedded: layoutFigure,
      sealed: layoutFigure,
      ratio: z.strictObject({eif: z.number(), memory: z.number()}),
      swap: z.strictObject({modelEntryBytes: z.number(), sealedManifestBytes: z.number(), sealedManifestEstimated: z.boolean()}),
    })
    .optional(),
})
const managed = {pid: z.number().optional(), unit: z.string().optional()}
const doctorCheckId = z.enum(['node', 'config', 'docker', 'docker-daemon', 'nitro-cli', 'nitro-device', 'allocator', 'vsock-proxy', 'socat', 'aws-credentials', 'aws-region'])

/** One key's patch (`policy apply`): the project key's, and a separate model key's in `model`. */
const applyReport = z.strictObject({
  key: z.enum(['project', 'model']),
  source: z.string(),
  changed: z.boolean(),
  written: z.string().nullable(),
  diff: z.string(),
  sets: z.array(z.strictObject({sid: z.string(), set: measurementSet, current: z.boolean()})),
  removed: z.array(measurementSet),
  /** The same sets, per statement, with why apply drops each (an nle statement pinning a set the lockfile does not record: `unrecorded`). */
  dropped: z.array(z.strictObject({sid: z.string(), set: measurementSet, reason: z.enum(['unrecorded', 'outside-window', 'debug', 'same-image']), message: z.string()})),
  exposures: z.array(exposure),
  lockout: z.strictObject({caller: z.string(), before: z.boolean(), after: z.boolean(), lost: z.boolean()}).nullable(),
})
/** One key's policy as `policy show` reads it. */
const showReport = z.strictObject({
  key: z.enum(['project', 'model']),
  source: z.string(),
  project: z.string(),
  roleArn: z.string().nullable(),
  current: measurementSet.nullable(),
  statements: z.array(
    z.strictObject({
      index: z.number(),
      sid: z.string().nullable(),
      effect: z.enum(['Allow', 'Deny']),
      owned: z.boolean(),
      principals: z.array(z.string()),
      actions: z.array(z.string()),
      notAction: z.boolean(),
      measurements: measurementSet.nullable(),
      status: z.enum(['current', 'other']).nullable(),
    }),
  ),
  exposures: z.array(exposure),
})

// ---------------------------------------------------------------------------------------------
// The result of each command that prints one envelope.

export const RESULTS = {
  allocator: z.strictObject({
    file: z.string(),
    eif: z.strictObject({path: z.string(), bytes: z.number(), bootable: z.boolean().optional(), reason: z.string().optional()}),
    memory: enclaveMemory,
    cpus: z.strictObject({requested: z.number(), cpuCount: z.number(), threadsPerCore: z.number(), available: z.number(), pool: z.array(z.number())}),
    host: z.strictObject({memTotalMiB: z.number(), capacityMiB: z.number(), onlineCpus: z.number()}),
    current: z.strictObject({memory_mib: z.number().optional(), cpu_count: z.number().optional(), cpu_pool: z.string().optional()}),
    proposed: z.strictObject({memory_mib: z.number(), cpu_count: z.number()}),
    changed: z.boolean(),
    diff: z.string(),
    applied: z.strictObject({written: z.boolean(), backup: z.string().optional(), restarted: z.boolean()}).optional(),
  }),

  'attest verify': z.strictObject({
    verified: z.literal(true),
    source: z.string(),
    lockfile: z.string().nullable(),
    moduleId: z.string(),
    timestamp: z.string(),
    verifiedAt: z.string(),
    ageMs: z.number(),
    digest: z.string(),
    debug: z.boolean(),
    root: z.string(),
    nonce: hex.nullable(),
    nonceChecked: z.boolean(),
    publicKey: z.string().nullable(),
    userData: z.string().nullable(),
    pcrs: z.array(z.strictObject({index: z.number(), value: hex.nullable(), expected: hex.nullable(), status: z.enum(['match', 'mismatch', 'missing', 'debug-zero', 'unchecked'])})),
    chain: z.array(z.strictObject({role: z.enum(['root', 'intermediate', 'leaf']), subject: z.string(), issuer: z.string(), notBefore: z.string(), notAfter: z.string(), sha256: hex})),
  }),

  build: z.strictObject({
    builder: z.enum(['docker', 'native']),
    eif: z.strictObject({path: z.string(), size: z.number(), sha384: hex, signed: z.boolean(), version: z.number(), bootable: z.boolean(), reason: z.string().optional()}),
    measurements: measurementSet,
    /** native builder: where the kernel, init and nsm.ko came from. */
    blobs: z.strictObject({kind: z.enum(['nitro', 'qemu', 'placeholder', 'folder']), source: z.string()}).optional(),
    crossCheck: z.strictObject({against: z.enum(['nitro-cli', 'nle-writer']), match: z.literal(true)}),
    memory: enclaveMemory,
    lockfile: z.string(),
    inputs: z.record(z.string(), z.string()),
    context: z.string(),
    image: z.strictObject({tag: z.string(), id: z.string()}).optional(),
    runtime: z.strictObject({packages: z.number(), files: z.number(), bytes: z.number(), names: z.array(z.string())}).optional(),
    warnings: z.array(z.string()),
    stages,
    nextSteps: z.array(z.string()),
  }),

  chat: z.strictObject({
    answer: z.string(),
    mode: z.enum(['attested', 'kms']),
    attestation: z.strictObject({moduleId: z.string(), pcr0: hex, debug: z.boolean(), timestamp: z.string(), root: z.string()}),
    target: z.string(),
  }),

  console: z.strictObject({attached: z.literal(true)}),

  demo: z.strictObject({
    ok: z.boolean(),
    workdir: z.string(),
    kept: z.boolean(),
    steps: z.array(z.strictObject({name: z.string(), ok: z.boolean(), ms: z.number(), detail: z.string()})),
    pcr0: z.strictObject({first: hex.optional(), second: hex.optional()}),
  }),

  doctor: z.strictObject({
    workflow: z.enum(['dev', 'build', 'run', 'policy', 'host']),
    auto: z.strictObject({note: z.string()}).optional(),
    ok: z.boolean(),
    missing: z.array(doctorCheckId),
    checks: z.array(
      z.strictObject({
        id: doctorCheckId,
        name: z.string(),
        status: z.enum(['ok', 'missing', 'error']),
        version: z.string().optional(),
        detail: z.string().optional(),
        hint: z.string().optional(),
        required: z.boolean(),
      }),
    ),
    exitCode: z.number(),
  }),

  'eif build': z.strictObject({
    Measurements: measurements,
    Eif: z.strictObject({path: z.string(), size: z.number(), sha384: hex, version: z.number(), signed: z.boolean()}),
    Lockfile: z.string().optional(),
  }),

  'eif describe': z.strictObject({
    EifVersion: z.number(),
    Measurements: measurements,
    IsSigned: z.boolean(),
    SigningCertificate: z.strictObject({IssuerName: z.record(z.string(), z.string()), Algorithm: z.string(), NotBefore: z.string(), NotAfter: z.string(), Signature: z.string()}).optional(),
    CheckCRC: z.boolean(),
    SignatureCheck: z.boolean().optional(),
    ImageName: z.string().optional(),
    ImageVersion: z.string().optional(),
    /** The image's metadata section: whatever its builder wrote. */
    Metadata: z.record(z.string(), z.unknown()).optional(),
  }),

  init: z.strictObject({
    dir: z.string(),
    name: z.string(),
    files: z.array(z.strictObject({path: z.string(), bytes: z.number(), action: z.enum(['created', 'overwritten', 'merged', 'unchanged']), added: z.array(z.string()).optional()})),
    place: z.enum(['nitro-host', 'dev']),
    nextSteps,
    note: z.string(),
  }),

  'model quantize': z.strictObject({
    dir: z.string(),
    dtype: z.enum(['q8', 'q4']),
    onnxFile: z.string(),
    dataFile: z.string().nullable(),
    bits: z.union([z.literal(4), z.literal(8)]),
    blockSize: z.number(),
    symmetric: z.boolean(),
    accuracyLevel: z.number(),
    quantized: z.number(),
    kept: z.array(z.strictObject({node: z.string(), opType: z.string(), reason: z.string()})),
    bytes: z.strictObject({fileBefore: z.number(), fileAfter: z.number(), weightsBefore: z.number(), weightsAfter: z.number()}),
    quality: z.strictObject({cosine: z.array(z.number()), min: z.number(), sameArgmax: z.number()}).nullable(),
    ms: z.number(),
    manifest: z.string(),
    manifestDigest: z.string(),
  }),

  'model run': z.strictObject({
    model: z.strictObject({
      dir: z.string(),
      dtype: z.enum(['fp32', 'fp16', 'q8', 'int8', 'uint8', 'q4', 'q4f16', 'bnb4']),
      onnxFile: z.string(),
      lastLogitsOnly: z.boolean(),
      fullHeadReason: z.string().optional(),
    }),
    promptIds: z.array(z.number()),
    tokenIds: z.array(z.number()),
    text: z.string(),
    finishReason: z.enum(['stop', 'length', 'cancelled']),
    seed: z.number(),
    metrics: z.strictObject({
      promptTokens: z.number(),
      generatedTokens: z.number(),
      ttftMs: z.number(),
      prefillMs: z.number(),
      decodeMs: z.number(),
      totalMs: z.number(),
      prefillTokensPerSecond: z.number(),
      decodeTokensPerSecond: z.number(),
      interTokenMs: z.number(),
    }),
  }),

  'model save': z.strictObject({
    dir: z.string(),
    manifest: z.string(),
    manifestDigest: z.string(),
    source: z.discriminatedUnion('kind', [
      z.strictObject({kind: z.literal('local'), path: z.string()}),
      z.strictObject({kind: z.literal('hub'), endpoint: z.string(), repo: z.string(), revision: z.string(), commit: z.string()}),
      z.strictObject({kind: z.literal('synth'), preset: z.string(), seed: z.number()}),
    ]),
    files: z.number(),
    totalBytes: z.number(),
  }),

  'model seal': z.strictObject({
    status: z.literal('ok'),
    modelDir: z.string(),
    outDir: z.string(),
    manifest: z.string(),
    modelDigest: z.string(),
    sealedManifestDigest: z.string(),
    keyId: z.string(),
    files: z.number(),
    chunks: z.number(),
    plainBytes: z.number(),
    sealedBytes: z.number(),
  }),

  'model synth': z.strictObject({
    dir: z.string(),
    preset: z.string(),
    arch: z.string(),
    seed: z.number(),
    parameters: z.number(),
    onnxBytes: z.number(),
    dataBytes: z.number(),
    files: z.array(z.string()),
    manifest: z.string(),
    manifestDigest: z.string(),
    stages,
  }),

  pcr: z.union([z.strictObject({PCR: hex}), z.strictObject({PCR8: hex})]),

  'policy apply': applyReport.extend({model: applyReport.nullable()}),

  'policy check': z.strictObject({
    source: z.string(),
    verdict: z.enum(['ok', 'unsafe', 'drift', 'partial', 'stale']),
    headline: z.string(),
    exitCode: z.union([z.literal(0), z.literal(1), z.literal(2)]),
    current: measurementSet,
    operations: z.array(z.strictObject({key: keyRef.optional(), operation: z.enum(['Decrypt', 'GenerateDataKey', 'GenerateRandom']), admitted: z.boolean()})),
    sets: z.array(z.strictObject({key: keyRef.optional(), index: z.number(), sid: z.string().nullable(), owned: z.boolean(), set: measurementSet, actions: z.array(z.string()), status: z.enum(['current', 'stale', 'previous', 'debug', 'unrecorded'])})),
    findings: z.array(
      z.strictObject({
        key: keyRef.optional(),
        severity: z.enum(['error', 'warning']),
        kind: z.enum(['unconditioned-access', 'debug-pin', 'unrecorded-measurements', 'partial-pin', 'stale-set', 'not-admitted', 'debug-measurements', 'grants-unread', 'outdated-statements']),
        message: z.string(),
        sid: z.string().nullable().optional(),
        fix: z.string().optional(),
        proposed: policyStatement.nullable().optional(),
      }),
    ),
    exposures: z.array(exposure),
    /** The keys checked, when a sealed model's separate key is checked with the project key. */
    keys: z.array(keyRef).optional(),
  }),

  'policy show': showReport.extend({model: showReport.nullable()}),

  run: z.strictObject({
    enclave: z.strictObject({id: z.string(), name: z.string(), cid: z.number(), processId: z.number(), cpuIds: z.array(z.number()), requestedMemoryMiB: z.number(), memoryMiB: z.number(), debug: z.boolean()}),
    measurements: z.record(z.string(), z.string()),
    eif: z.strictObject({path: z.string(), size: z.number(), bootable: z.boolean(), reason: z.string().optional()}),
    mode: z.enum(['managed', 'systemd']),
    bridge: z.strictObject({socket: z.string(), ...managed}),
    proxy: z.strictObject({started: z.boolean(), ...managed, url: z.string().optional(), reason: z.string().optional()}),
    kms: z.strictObject({endpoint: z.string(), vsockProxy: z.strictObject(managed), credentials: z.strictObject({socket: z.string(), ...managed}).optional()}).optional(),
    health: z.enum(['ok', 'not-checked']),
    warnings: z.array(z.string()),
  }),

  status: z.strictObject({
    name: z.string(),
    running: z.boolean(),
    enclave: describedEnclave.optional(),
    debug: z.boolean(),
    mode: z.enum(['managed', 'systemd']).optional(),
    bridge: z.strictObject({socket: z.string(), alive: z.boolean(), ...managed, unitState: z.string().optional()}).optional(),
    proxy: z.strictObject({alive: z.boolean(), ...managed, unitState: z.string().optional(), listening: z.boolean(), url: z.string()}).optional(),
    kms: z
      .strictObject({
        vsockProxy: z.strictObject({alive: z.boolean(), ...managed}),
        credentialsBridge: z.strictObject({alive: z.boolean(), socket: z.string(), ...managed}).optional(),
      })
      .optional(),
    health: z.enum(['ok', 'unhealthy', 'unreachable', 'not-running']),
    healthDetail: z.string().optional(),
    others: z.array(describedEnclave),
    startedAt: z.string().optional(),
    warnings: z.array(z.string()),
  }),

  stop: z.strictObject({
    terminated: z.array(z.string()),
    stopped: z.strictObject({pids: z.array(z.number()), units: z.array(z.string())}),
    wasRunning: z.boolean(),
    warnings: z.array(z.string()),
  }),
} as const

// ---------------------------------------------------------------------------------------------
// The event lines of each long-running command (`result` of each line, by `event`).

const address = z.string().describe('host:port')

export const EVENTS = {
  dev: {
    ready: z.strictObject({
      projectDir: z.string(),
      proxyUrl: z.string(),
      enclaveSocket: z.string(),
      kmsUrl: z.string(),
      kms: z.strictObject({keyArn: z.string(), region: z.string(), stateFile: z.string(), identitiesFile: z.string().optional()}).optional(),
      devRootFile: z.string(),
      devRootSha256: hex,
      caFile: z.string(),
      pid: z.number(),
      lockfile: z.string(),
      kmsKeyArn: z.string(),
      policyChanged: z.boolean(),
    }),
    stopped: z.strictObject({}),
  },
  gateway: {
    listening: z.strictObject({
      url: z.string(),
      openaiBaseUrl: z.string(),
      mode: z.enum(['attested', 'kms']),
      token: z.union([z.strictObject({required: z.literal(true), file: z.string()}), z.strictObject({required: z.literal(true), env: z.string()}), z.strictObject({required: z.literal(false)})]),
      attestation: z.union([
        z.strictObject({status: z.literal('verified'), pcr0: hex.optional(), moduleId: z.string().optional(), root: z.string().optional(), debug: z.boolean().optional(), verifiedAt: z.string().optional()}),
        z.strictObject({
          status: z.enum(['pending', 'failed']),
          error: z.strictObject({message: z.string(), type: z.string(), code: z.string(), param: z.string().nullable()}).optional(),
        }),
      ]),
    }),
    stopped: z.strictObject({url: z.string()}),
  },
  'kms serve': {
    listening: z.strictObject({
      url: z.string(),
      state: z.string(),
      created: z.boolean(),
      root: z.strictObject({name: z.string(), sha256: hex.optional()}),
      identities: z.array(z.strictObject({arn: z.string(), accessKeyId: z.string()})),
    }),
    stopped: z.strictObject({url: z.string()}),
  },
  proxy: {
    listening: z.strictObject({
      https: address.optional(),
      http: address.optional(),
      upstreams: z.number(),
      credentials: z.strictObject({socket: z.string(), source: z.enum(['imds', 'env'])}).optional(),
    }),
    stopped: z.strictObject({}),
  },
} as const

export type ResultCommand = keyof typeof RESULTS
export type EventCommand = keyof typeof EVENTS
/** The `result` of one event line, as its schema types it (a command checks its payload with `satisfies`). */
export type EventResult<C extends EventCommand, E extends keyof (typeof EVENTS)[C]> = (typeof EVENTS)[C][E] extends z.ZodType ? z.output<(typeof EVENTS)[C][E]> : never

// ---------------------------------------------------------------------------------------------
// The envelope around them (src/cli/json.ts).

const jsonError = z.strictObject({
  code: z.string().regex(/^[A-Z][A-Z0-9_]*$/).describe('a code of docs/errors.md'),
  message: z.string(),
  hint: z.string(),
  docs: z.string().regex(/^docs\/errors\.md#[a-z0-9_]+$/).describe('the code\'s section of docs/errors.md'),
  exitCode: z.number(),
  details: z.record(z.string(), z.unknown()).optional(),
})

const base = {
  schemaVersion: z.literal(JSON_SCHEMA_VERSION),
  exitCode: z.number().int().min(0),
}

function success(command: string, result: z.ZodType, event?: string) {
  return z.strictObject({ok: z.literal(true), command: z.literal(command), ...base, ...(event === undefined ? {} : {event: z.literal(event)}), result})
}

function failure(command: string | null, event?: string) {
  return z.strictObject({ok: z.literal(false), command: command === null ? z.null() : z.literal(command), ...base, ...(event === undefined ? {} : {event: z.literal(event)}), error: jsonError})
}

/** What `nle <command> --json` prints: its result's envelope, or its failure's. */
export function envelopeSchema(command: ResultCommand): z.ZodType {
  return z.union([success(command, RESULTS[command]), failure(command)])
}

/** One line of `nle <command> --json` of a long-running command: an event, or the failure. */
export function eventLineSchema(command: EventCommand): z.ZodType {
  const events = Object.entries(EVENTS[command] as Record<string, z.ZodType>).map(([event, result]) => success(command, result, event))
  return z.union([...events, failure(command, 'error')])
}

/** What any command (or none: an unknown command) prints when it fails. */
export const failureSchema = z.union([failure(null), z.strictObject({ok: z.literal(false), command: z.string(), ...base, event: z.literal('error').optional(), error: jsonError})])

/** The file name of a command's schema in schema/json/: `policy check` → `policy-check.schema.json`. */
export function schemaFile(command: string): string {
  return `${command.replaceAll(' ', '-')}.schema.json`
}

/** Every file of schema/json/ and its content, as `npm run build` writes them. */
export function jsonSchemaFiles(): Record<string, Record<string, unknown>> {
  const doc = (title: string, description: string, schema: z.ZodType): Record<string, unknown> => ({
    ...z.toJSONSchema(schema, {target: 'draft-2020-12', unrepresentable: 'any'}),
    title,
    description,
  })
  const out: Record<string, Record<string, unknown>> = {}
  for (const command of Object.keys(RESULTS) as ResultCommand[]) {
    out[schemaFile(command)] = doc(`nle ${command} --json`, `The one envelope \`nle ${command} --json\` prints on stdout: its result, or its failure (docs/json.md).`, envelopeSchema(command))
  }
  for (const command of Object.keys(EVENTS) as EventCommand[]) {
    out[schemaFile(command)] = doc(`nle ${command} --json (one line)`, `Each line \`nle ${command} --json\` prints on stdout: an event, or the failure (docs/json.md).`, eventLineSchema(command))
  }
  out['error.schema.json'] = doc('nle --json failure', 'What any nle command prints on stdout with --json when it fails (docs/json.md).', failureSchema)
  return out
}
