/**
 * The enclave server process: flags, config, model load, NSM, the socket, signals and exit codes.
 * runtime/enclave-server/index.js (the enclave's entry) only calls `runEnclaveServer(argv)`.
 *
 * This module is part of the enclave runtime package (runtime/enclave-server, see
 * src/lib/runtime/packages.ts): it must not import the NSM simulator, the YAML project config or
 * anything else of the CLI. Development runs add those through ServerExtensions
 * (src/lib/dev/enclave-server.ts, the entry `nle dev` and the tests start).
 *
 * PID-1 friendly: it installs its own SIGTERM/SIGINT handlers (PID 1 gets no default ones), drains
 * in-flight streams before exiting 0, and exits with the NleError's exit code when start-up fails
 * (model missing → 6, model digest mismatch → 5, bad config → 3, NSM unavailable → 6).
 */
import {readFile, rm} from 'node:fs/promises'
import {dirname, isAbsolute, resolve} from 'node:path'
import {parseArgs} from 'node:util'

import {z} from 'zod'

import type {AttestationRequest} from '../attestation/nsm-client.js'
import {ServerKeyRing} from '../channel/index.js'
import {KmsRequestOpener} from '../channel/kms-request.js'
import type {EnclaveKmsOptions, KmsDecryptInput, KmsDecryptOutput} from '../kms/enclave-aws.js'
import {ExitCode, NleError, isNleError} from '../errors.js'
import {EnclaveServer} from './app.js'
import {type ChatEngine, type RuntimeDefaults, echoChat} from './chat.js'
import {serverError} from './errors.js'
import {type LogLevel, type Logger, jsonLogger} from '../net/log.js'
import {kmsRecipientDecrypt, limitUnwrap, recipientUnwrap} from './kms-mode.js'
import {type ModelSpec, loadServingModel} from './model.js'
import {loadSealedServingModel} from './sealed-model.js'
import {DTYPES} from '../model/layout.js'
import {untilStopSignal} from '../net/signals.js'

/** nle.runtime.json, written by the image build next to the server. */
export const runtimeConfigSchema = z.strictObject({
  model: z.strictObject({
    path: z.string().min(1),
    /** Absent: the saved model's manifest says (fp32 without one). */
    dtype: z.enum(DTYPES).optional(),
    digest: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional(),
    // A sealed model (src/lib/model/seal/): the weights are not in the image; `manifest` (nle-sealed.json,
    // in the image) lists them and `weightsSocket` reaches the parent's weights server (in the enclave a
    // socat to vsock 3:<vsockPort>, which start.sh starts when vsockPort is set). Needs model.digest and KMS.
    sealed: z
      .strictObject({
        manifest: z.string().min(1),
        weightsSocket: z.string().min(1),
        vsockPort: z.number().int().min(1).max(4294967295).optional(),
      })
      .optional(),
  }),
  runtime: z
    .strictObject({
      threads: z.union([z.literal('auto'), z.number().int().positive()]).default('auto'),
      maxTokens: z.number().int().positive().max(32_768).default(256),
      sampling: z
        .strictObject({temperature: z.number().min(0).max(2).default(0.7), topP: z.number().gt(0).max(1).default(0.95), topK: z.number().int().min(0).default(50)})
        .prefault({}),
    })
    .prefault({}),
  server: z
    .strictObject({
      // The batch limit: sequences decoded together. auto: from the memory left once the model
      // loaded, the vCPUs and the model's per-token KV size (./kv-budget.ts); 1 for the echo engine.
      generationConcurrency: z.union([z.literal('auto'), z.number().int().positive()]).default('auto'),
      generationQueue: z.number().int().min(0).default(64),
      // The KV-cache budget in MiB (auto: half of what is free once the model loaded, less 256 MiB).
      kvCacheMiB: z.union([z.literal('auto'), z.number().positive()]).default('auto'),
      drainTimeoutMs: z.number().int().min(0).default(10_000),
      keyLifetimeMs: z.number().int().positive().default(3_600_000),
      // KMS mode: how often the enclave may ask KMS to unwrap a request key (./kms-mode.ts limitUnwrap).
      kmsOpensPerSecond: z.number().positive().default(5),
      kmsOpenBurst: z.number().int().positive().default(20),
      kmsConcurrency: z.number().int().positive().default(4),
    })
    .prefault({}),
  // KMS mode (src/lib/kms/enclave-aws.ts EnclaveKmsOptions, plus the key). `nle build` writes it when
  // nle.yaml has kms.keyId and kms.region; `vsock` makes the image's start.sh bridge `via` and
  // `credentialsSocket` to the parent (CID 3) on those vsock ports.
  kms: z
    .strictObject({
      region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/),
      keyId: z.string().min(1),
      endpoint: z.url({protocol: /^https?$/}).optional(),
      via: z.string().min(1).optional(),
      credentialsSocket: z.string().min(1).optional(),
      vsock: z.strictObject({kmsPort: z.number().int().min(1).max(4294967295), credentialsPort: z.number().int().min(1).max(4294967295)}).optional(),
    })
    .refine((k) => !k.vsock || [k.via, k.credentialsSocket].every((p) => p !== undefined && /^\/[\w./-]+$/.test(p)), {
      message: 'with vsock, via and credentialsSocket must be absolute socket paths of letters, digits, . _ - and /',
    })
    .optional(),
})
export type RuntimeConfig = z.output<typeof runtimeConfigSchema>

type KMSClientLike = {decrypt(input: KmsDecryptInput): Promise<KmsDecryptOutput>}

type Nsm = {attestation(request?: AttestationRequest): Promise<Uint8Array>; close(): Promise<void>}

/**
 * What a development entry adds to the server; the enclave's entry adds nothing, so inside the image
 * `--nsm simulator` and an nle.yaml config are refused (SERVER_USAGE).
 */
export interface ServerExtensions {
  /** `--nsm simulator`: a simulated NSM (--eif / --lockfile PCRs, --sim-debug, --sim-root-out). */
  simulator?: (o: {eif?: string; lockfile?: string; debug: boolean; rootOut?: string}, logger: Logger) => Promise<Nsm>
  /** `--config nle.yaml`: the runtime config's input (model, runtime) from a project config. */
  readProjectConfig?: (path: string) => Promise<unknown>
}

/** Read nle.runtime.json (JSON), or an nle.yaml through `ext`. Relative model paths resolve against the file. */
export async function readRuntimeConfig(path: string, ext: ServerExtensions = {}): Promise<RuntimeConfig> {
  if (/\.ya?ml$/i.test(path)) {
    if (!ext.readProjectConfig) throw new NleError('SERVER_USAGE', `${path}: the enclave server reads nle.runtime.json; an nle.yaml is read only by the development entry (\`nle dev\`).`)
    return runtimeConfigSchema.parse(await ext.readProjectConfig(path))
  }
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(path, 'utf8'))
  } catch (cause) {
    throw serverError('SERVER_CONFIG_INVALID', `Cannot read the runtime config ${path}.`, {cause, details: {path}})
  }
  const parsed = runtimeConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw serverError('SERVER_CONFIG_INVALID', `${path}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}.`, {details: {path}})
  }
  const cfg = parsed.data
  if (!isAbsolute(cfg.model.path)) cfg.model.path = resolve(dirname(path), cfg.model.path)
  if (cfg.model.sealed && !isAbsolute(cfg.model.sealed.manifest)) cfg.model.sealed.manifest = resolve(dirname(path), cfg.model.sealed.manifest)
  return cfg
}

const FLAGS = {
  socket: {type: 'string'},
  config: {type: 'string'},
  model: {type: 'string'},
  engine: {type: 'string', default: 'onnx'},
  nsm: {type: 'string', default: 'device'},
  lockfile: {type: 'string'},
  eif: {type: 'string'},
  'sim-root-out': {type: 'string'},
  'sim-debug': {type: 'boolean', default: false},
  'token-delay-ms': {type: 'string'},
  'max-tokens': {type: 'string'},
  'log-level': {type: 'string', default: 'info'},
  // KMS mode (override the runtime config's kms block).
  'kms-region': {type: 'string'},
  'kms-key-id': {type: 'string'},
  'kms-endpoint': {type: 'string'},
  'kms-via': {type: 'string'},
  'credentials-socket': {type: 'string'},
  // A sealed model (override the runtime config's model.sealed / model.digest).
  'sealed-manifest': {type: 'string'},
  'weights-socket': {type: 'string'},
  'model-digest': {type: 'string'},
  // How long start-up waits for the parent's weights server and KMS path (ms, default 120000).
  'sealed-wait-ms': {type: 'string'},
} as const

/** KMS mode's settings: the runtime config's kms block, flags on top. Undefined: KMS mode off. */
function kmsModeSettings(values: Record<string, string | boolean | undefined>, config: RuntimeConfig): (EnclaveKmsOptions & {keyId?: string}) | undefined {
  const flag = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined)
  const base = config.kms
  const merged = {
    region: flag('kms-region') ?? base?.region,
    keyId: flag('kms-key-id') ?? base?.keyId,
    endpoint: flag('kms-endpoint') ?? base?.endpoint,
    via: flag('kms-via') ?? base?.via,
    credentialsSocket: flag('credentials-socket') ?? base?.credentialsSocket,
  }
  if (Object.values(merged).every((v) => v === undefined)) return undefined
  if (!merged.region || !merged.credentialsSocket) {
    throw new NleError('SERVER_USAGE', 'KMS mode needs a region and the credentials socket (--kms-region, --credentials-socket, or the runtime config\'s kms block).')
  }
  return {
    region: merged.region,
    credentialsSocket: merged.credentialsSocket,
    ...(merged.keyId ? {keyId: merged.keyId} : {}),
    ...(merged.endpoint ? {endpoint: merged.endpoint} : {}),
    ...(merged.via ? {via: merged.via} : {}),
  }
}

export interface ServerHandle {
  server: EnclaveServer
  socket: string
  stop(): Promise<void>
}

/** Parse argv, start, and keep running until a signal. Resolves with the exit code. */
export async function runEnclaveServer(argv: string[], ext: ServerExtensions = {}): Promise<number> {
  const logger = jsonLogger({component: 'enclave-server', level: 'info'})
  // Listening for signals first: as PID 1 the process has no default SIGTERM action, so a stop
  // requested while the model is still loading would otherwise be ignored.
  let handle: ServerHandle | null = null
  let stopping = false
  const done = untilStopSignal().then(async (signal) => {
    stopping = true
    logger.log('info', 'shutdown', {signal, started: handle !== null})
    if (handle === null) return ExitCode.OK
    return handle.stop().then(
      () => ExitCode.OK,
      () => ExitCode.INTERNAL,
    )
  })
  try {
    const started = await Promise.race([startEnclaveServer(argv, logger, ext), done.then(() => null)])
    if (started === null) return await done
    handle = started
    if (stopping) {
      await handle.stop()
      return ExitCode.OK
    }
    return await done
  } catch (error) {
    const e = isNleError(error) ? error : new NleError('SERVER_INTERNAL', (error as Error)?.message ?? String(error))
    // What lay under it (onnxruntime's message, an I/O error): start-up handles no question yet, so
    // there is nothing of a user's in it; one line, bounded.
    const under = rootCause(e)
    logger.log('error', 'start_failed', {code: e.code, message: e.message, hint: e.hint, exitCode: e.exitCode, ...(under ? {cause: under} : {})})
    return e.exitCode
  }
}

/**
 * The enclave's own PCR0/1/2 as its NSM reports them, on its console (`nle console` in debug
 * mode; the QEMU boot test compares them with the lockfile). Not secret; a failure to read them
 * is logged and the server goes on (attestation documents carry them anyway).
 */
async function logMeasurements(nsm: {describePcr(index: number): Promise<{lock: boolean; data: Uint8Array}>}, logger: Logger): Promise<void> {
  try {
    const pcrs: Record<string, string> = {}
    for (const i of [0, 1, 2]) pcrs[`PCR${i}`] = Buffer.from((await nsm.describePcr(i)).data).toString('hex')
    logger.log('info', 'measurements', pcrs)
  } catch (error) {
    logger.log('warn', 'measurements_unavailable', {error: error instanceof Error ? error.message : String(error)})
  }
}

export async function startEnclaveServer(argv: string[], logger: Logger, ext: ServerExtensions = {}): Promise<ServerHandle> {
  let values
  try {
    values = parseArgs({args: argv, options: FLAGS, strict: true, allowPositionals: false}).values
  } catch (cause) {
    throw new NleError('SERVER_USAGE', (cause as Error).message)
  }
  const level = values['log-level'] as LogLevel
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new NleError('SERVER_USAGE', '--log-level is debug, info, warn or error.')
  const socket = values.socket ?? process.env.NLE_SOCKET
  if (!socket) throw new NleError('SERVER_USAGE', 'Give the Unix socket to listen on with --socket (or NLE_SOCKET).')

  const config: RuntimeConfig = values.config
    ? await readRuntimeConfig(values.config, ext)
    : runtimeConfigSchema.parse({model: {path: values.model ?? 'model'}})
  if (values.model) config.model.path = resolve(values.model)
  if (values['max-tokens']) config.runtime.maxTokens = Number(values['max-tokens'])
  if (values['model-digest']) {
    if (!/^sha256:[0-9a-f]{64}$/.test(values['model-digest'])) throw new NleError('SERVER_USAGE', '--model-digest is "sha256:<64 hex>".')
    config.model.digest = values['model-digest']
  }
  if (values['sealed-manifest'] || values['weights-socket']) {
    const manifest = values['sealed-manifest'] ?? config.model.sealed?.manifest
    const weightsSocket = values['weights-socket'] ?? config.model.sealed?.weightsSocket
    if (!manifest || !weightsSocket) throw new NleError('SERVER_USAGE', 'A sealed model needs both --sealed-manifest and --weights-socket (or the runtime config\'s model.sealed).')
    config.model.sealed = {manifest: resolve(manifest), weightsSocket}
  }

  // The NSM: the device inside an enclave; the simulator (a dev root nobody else trusts) elsewhere.
  let nsm: Nsm
  if (values.nsm === 'simulator') {
    if (!ext.simulator) throw new NleError('SERVER_USAGE', 'This is the enclave\'s server entry: it has no NSM simulator. Outside an enclave, `nle dev` runs the development entry (dist/lib/dev/enclave-server.js).')
    if (values.eif && values.lockfile) throw new NleError('SERVER_USAGE', 'Give the simulator\'s PCRs with --eif (measured from the image) or --lockfile, not both.')
    const o = {debug: values['sim-debug'], ...(values.eif ? {eif: values.eif} : {}), ...(values.lockfile ? {lockfile: values.lockfile} : {}), ...(values['sim-root-out'] ? {rootOut: values['sim-root-out']} : {})}
    nsm = await ext.simulator(o, logger)
  } else if (values.nsm === 'device') {
    try {
      const {NsmDevice} = await import('../attestation/nsm-device.js')
      const device = NsmDevice.open()
      nsm = device
      await logMeasurements(device, logger)
    } catch (cause) {
      throw serverError('SERVER_NSM_FAILED', 'The NSM device could not be opened.', {cause, hint: 'Outside an enclave, run with --nsm simulator.'})
    }
  } else {
    throw new NleError('SERVER_USAGE', '--nsm is device or simulator.')
  }

  const kms = kmsModeSettings(values, config)
  let kmsClient: (KMSClientLike & {destroy(): void}) | undefined
  const kmsClientFor = async (settings: EnclaveKmsOptions): Promise<KMSClientLike & {destroy(): void}> => {
    if (kmsClient) return kmsClient
    const {enclaveKmsClient} = await import('../kms/enclave-aws.js')
    kmsClient = enclaveKmsClient(settings)
    return kmsClient
  }

  let chat: ChatEngine
  let concurrency: number
  let kvBudgetBytes: number | undefined
  if (config.model.sealed && values.engine === 'onnx') {
    if (!kms) throw new NleError('SERVER_USAGE', 'A sealed model is opened with KMS: give the kms block (region, credentials socket) in the runtime config or --kms-region and --credentials-socket.')
    if (!config.model.digest) throw new NleError('SERVER_USAGE', 'A sealed model needs the pinned model digest (model.digest, or --model-digest).')
    const decrypt = kmsRecipientDecrypt(await kmsClientFor(kms))
    const served = await loadSealedServingModel(
      {sealed: config.model.sealed, digest: config.model.digest, ...(values['sealed-wait-ms'] ? {waitMs: Number(values['sealed-wait-ms'])} : {}), ...(config.model.dtype ? {dtype: config.model.dtype} : {}), ...(config.runtime.threads === 'auto' ? {} : {threads: config.runtime.threads})},
      (keyId) => recipientUnwrap({nsm, decrypt, keyId}),
      {concurrency: config.server.generationConcurrency, kvCacheMiB: config.server.kvCacheMiB, maxTokens: config.runtime.maxTokens},
      logger,
    )
    chat = served.chat
    concurrency = served.concurrency
    kvBudgetBytes = served.kvBudgetBytes
    logger.log('info', 'model_loaded', {model: chat.model, sealed: true})
  } else if (values.engine === 'echo') {
    logger.log('warn', 'echo_engine', {note: 'test engine: answers echo the question'})
    chat = echoChat({tokenDelayMs: values['token-delay-ms'] ? Number(values['token-delay-ms']) : 0})
    concurrency = config.server.generationConcurrency === 'auto' ? 1 : config.server.generationConcurrency
  } else if (values.engine === 'onnx') {
    const spec: ModelSpec = {path: config.model.path, ...(config.model.dtype ? {dtype: config.model.dtype} : {}), ...(config.model.digest ? {digest: config.model.digest} : {})}
    if (config.runtime.threads !== 'auto') spec.threads = config.runtime.threads
    const served = await loadServingModel(spec, {concurrency: config.server.generationConcurrency, kvCacheMiB: config.server.kvCacheMiB, maxTokens: config.runtime.maxTokens}, logger)
    chat = served.chat
    concurrency = served.concurrency
    kvBudgetBytes = served.kvBudgetBytes
    logger.log('info', 'model_loaded', {model: chat.model})
  } else {
    throw new NleError('SERVER_USAGE', '--engine is onnx or echo.')
  }

  const keyRing = await ServerKeyRing.create({lifetimeMs: config.server.keyLifetimeMs})
  const defaults: RuntimeDefaults = {maxTokens: config.runtime.maxTokens, sampling: config.runtime.sampling}
  let kmsOpener: KmsRequestOpener | undefined
  if (kms) {
    const client = await kmsClientFor(kms)
    const unwrap = recipientUnwrap({nsm, decrypt: kmsRecipientDecrypt(client), ...(kms.keyId ? {keyId: kms.keyId} : {})})
    kmsOpener = new KmsRequestOpener({
      keys: keyRing,
      unwrap: limitUnwrap(unwrap, {perSecond: config.server.kmsOpensPerSecond, burst: config.server.kmsOpenBurst, concurrency: config.server.kmsConcurrency}),
    })
    logger.log('info', 'kms_mode', {
      region: kms.region,
      endpoint: kms.endpoint ?? 'default',
      via: kms.via ?? 'direct',
      keyPinned: kms.keyId !== undefined,
      opensPerSecond: config.server.kmsOpensPerSecond,
      openBurst: config.server.kmsOpenBurst,
      kmsConcurrency: config.server.kmsConcurrency,
    })
  }
  const server = new EnclaveServer({
    chat,
    nsm,
    keyRing,
    ...(kmsOpener ? {kms: kmsOpener} : {}),
    defaults,
    logger,
    generation: {concurrency, queue: config.server.generationQueue, ...(kvBudgetBytes === undefined ? {} : {kvBudgetBytes})},
  })
  await rm(socket, {force: true})
  await server.listen(socket) // SERVER_LISTEN_FAILED, or ADDRESS_IN_USE
  logger.log('info', 'listening', {socket, model: chat.model})
  return {
    server,
    socket,
    async stop() {
      const {forced} = await server.drain(config.server.drainTimeoutMs)
      logger.log('info', 'drained', {forced})
      await chat.close()
      kmsClient?.destroy()
      await nsm.close()
      await rm(socket, {force: true})
    },
  }
}

/** The innermost cause of `error` as "Name: first line" (at most 300 characters), if it has one. */
function rootCause(error: Error): string | undefined {
  let c: unknown = error.cause
  let last: unknown
  for (let depth = 0; c !== undefined && c !== null && depth < 8; depth++) {
    last = c
    c = (c as {cause?: unknown}).cause
  }
  if (last === undefined) return undefined
  const text = last instanceof Error ? `${last.name}: ${last.message}` : String(last)
  return text.split('\n')[0]!.slice(0, 300)
}
