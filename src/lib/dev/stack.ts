/**
 * `nle dev`: the whole enclave flow on one machine with simulated Nitro parts.
 *
 *   model (generated when the config says synth) → native EIF + lockfile (when absent)
 *   → the EIF and the model checked against the lockfile (the PCRs attested are the EIF's own)
 *   → enclave server (child process, NSM simulator with the EIF's PCRs, Unix socket)
 *   → local KMS endpoint (in this process: key + alias, policy applied from the lockfile)
 *   → parent proxy (child process, self-signed TLS on 127.0.0.1)
 *
 * Everything listens on loopback or Unix sockets. `stop()` ends it all; the endpoints are
 * published in .nle/dev/endpoints.json for `nle chat` while the stack runs.
 */
import {existsSync, readFileSync} from 'node:fs'
import {access, mkdir, readFile, realpath, rm} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {CreateAliasCommand, CreateKeyCommand, DescribeKeyCommand, GetKeyPolicyCommand, KMSClient, ListAliasesCommand, PutKeyPolicyCommand} from '@aws-sdk/client-kms'

import {type TrustedRoot, insecureDevRoot} from '../attestation/roots.js'
import {type LoadedConfig, loadConfig} from '../config/load.js'
import {assertTrusted, readEif} from '../eif/reader.js'
import {buildProject, differingPcrs} from '../host/build.js'
import {defaultHostContext} from '../host/exec.js'
import {projectPaths} from '../host/project.js'
import {type RunningLocalKms, startLocalKms} from '../kms/local/server.js'
import {DEV_ADMIN_ROLE, DEV_CLIENT_ROLE, DEV_HOST_ROLE, type LocalIdentity, loadState, newIdentity, saveState} from '../kms/local/state.js'
import {type ApplyReport, applyPolicy} from '../kms/service.js'
import {readLockfile} from '../lockfile.js'
import {MANIFEST_FILE, readManifest, recordManifest, synthModel} from '../model/index.js'
import {checkManifestFiles, sha256File} from '../model/manifest.js'
import {SEALED_MANIFEST_FILE, parseSealedManifest} from '../model/seal/format.js'
import {kmsGenerateDataKey} from '../model/seal/project.js'
import {sealModel} from '../model/seal/seal.js'
import {PACKAGE_ROOT, RUNTIME_DIR} from '../paths.js'
import {type CredentialsServer, startCredentialsServer} from '../proxy/credentials.js'
import {type WeightsServer, startWeightsServer} from '../proxy/weights.js'
import {removeEndpoints, writeEndpoints, type DevEndpoints} from './endpoints.js'
import {devError} from './errors.js'
import {acquireDevLock} from './lock.js'
import {Supervisor, nodeChild} from './supervisor.js'

export interface DevStackOptions {
  configFile: string
  /** HTTPS port of the proxy (0 = any free port). */
  port?: number
  /** Rebuild the model/EIF/lockfile even when present. */
  rebuild?: boolean
  onStep?: (message: string) => void
  /** Content-free JSON log lines of the children. */
  onLog?: (name: string, message: Record<string, unknown>) => void
}

export interface DevStack {
  endpoints: DevEndpoints
  /** The project's lockfile the stack was built and attested against (not published in endpoints). */
  lockfile: string
  kms: {url: string; keyArn: string; region: string; admin: {accessKeyId: string; secretAccessKey: string}; hostRoleArn: string; clientRoleArn: string}
  policy: ApplyReport
  /** Rejects when a child dies while the stack runs. */
  exited: Promise<never>
  stop(): Promise<void>
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}

/** Make sure the model and the lockfile exist (generated model, native dev EIF). */
export async function prepareArtifacts(loaded: LoadedConfig, options: {rebuild?: boolean; seed?: number; onStep?: (m: string) => void}): Promise<{lockfile: string; built: boolean}> {
  await prepareModel(loaded, options)
  return prepareImage(loaded, options)
}

/** Make sure the saved model exists (generated when the config says synth). */
export async function prepareModel(loaded: LoadedConfig, options: {rebuild?: boolean; seed?: number; onStep?: (m: string) => void}): Promise<void> {
  const {config, dir} = loaded
  const modelDir = resolve(dir, config.model.path)
  if (options.rebuild || !(await exists(join(modelDir, MANIFEST_FILE)))) {
    if (config.model.source !== 'synth') {
      throw devError('DEV_MODEL_MISSING', `No saved model in ${modelDir}.`, {hint: 'Run `nle model save` first.', details: {modelDir}})
    }
    options.onStep?.(`generating the ${config.model.preset} test model`)
    const synth = await synthModel({preset: config.model.preset, outDir: modelDir, ...(options.seed === undefined ? {} : {seed: options.seed})})
    await recordManifest(modelDir, 'fp32', {kind: 'synth', preset: config.model.preset, seed: synth.seed})
  }
}

/** Make sure the EIF and its lockfile exist (the native dev builder). */
export async function prepareImage(loaded: LoadedConfig, options: {rebuild?: boolean; onStep?: (m: string) => void}): Promise<{lockfile: string; built: boolean}> {
  const lockfile = resolve(loaded.dir, loaded.config.build.lockfile)
  if (options.rebuild || !(await exists(lockfile))) {
    options.onStep?.('building the dev EIF (native builder) and the lockfile')
    await buildProject({loaded, ctx: defaultHostContext(), builder: 'native', ...(options.onStep ? {onStep: (m: string) => options.onStep!(`  build: ${m}`)} : {})})
    return {lockfile, built: true}
  }
  return {lockfile, built: false}
}

export interface VerifiedArtifacts {
  /** The EIF the simulator measures its PCRs from. */
  eifPath: string
  /** What nle's reader measured in it (equal to the lockfile's, or the check failed). */
  measurements: {PCR0: string; PCR1: string; PCR2: string; PCR8?: string}
}

/**
 * What `nle dev` is about to attest must be what it runs: the EIF must be whole and trusted
 * (EIF_* codes), measure exactly the lockfile's PCRs and file digest (DEV_LOCKFILE_MISMATCH), and
 * the model the dev server loads must be the one the lockfile pins (its manifest digest) with
 * every file as the manifest lists it (DEV_MODEL_CHANGED). Fails closed: a lockfile that pins no
 * model is refused too.
 */
export async function verifyDevArtifacts(loaded: LoadedConfig, lockfile: string): Promise<VerifiedArtifacts> {
  const paths = projectPaths(loaded)
  const lock = await readLockfile(lockfile)
  const rebuild = 'Rebuild both with `nle dev --rebuild` (or `nle build --builder native`), or restore the files the lockfile pins.'
  const info = await readEif(paths.eifPath, {fileDigest: true})
  assertTrusted(info)
  const differ = differingPcrs(lock.measurements, info.measurements)
  if (differ.length > 0 || info.fileSha384 !== lock.eif.sha384 || info.layout.fileSize !== lock.eif.size) {
    throw devError('DEV_LOCKFILE_MISMATCH', `${paths.eifPath} is not the image ${lockfile} pins (${differ.length > 0 ? `${differ.join(', ')} differ` : 'its file digest differs'}); the simulator would attest an image that does not run.`, {
      hint: rebuild,
      details: {eifPath: paths.eifPath, lockfile, differ, measured: info.measurements, locked: lock.measurements},
    })
  }
  const pinned = lock.inputs.modelManifest
  const manifestPath = join(paths.modelDir, MANIFEST_FILE)
  const actual = `sha256:${await sha256File(manifestPath).catch(() => 'missing')}`
  if (pinned === undefined || actual !== pinned) {
    throw devError('DEV_MODEL_CHANGED', pinned === undefined ? `${lockfile} pins no model (the EIF was built from --rootfs): nle dev cannot show that the model it serves is the image's.` : `The model in ${paths.modelDir} is not the one ${lockfile} pins (its ${MANIFEST_FILE} changed).`, {
      hint: rebuild,
      details: {modelDir: paths.modelDir, lockfile, pinned: pinned ?? null, actual},
    })
  }
  const mismatch = await checkManifestFiles(paths.modelDir, await readManifest(paths.modelDir))
  if (mismatch !== undefined) {
    throw devError('DEV_MODEL_CHANGED', `The model file ${mismatch.file} ${mismatch.problem === 'missing' ? 'is missing' : 'changed'} since ${MANIFEST_FILE} (which the lockfile pins) was written.`, {
      hint: rebuild,
      details: {modelDir: paths.modelDir, ...mismatch},
    })
  }
  if (loaded.config.model.sealed) {
    // The image carries nle-sealed.json (PCR2 pins it); the dev server reads the host's copy, which must be that one.
    const sealedPath = join(resolve(loaded.dir, loaded.config.model.sealedPath), SEALED_MANIFEST_FILE)
    const sealed = `sha256:${await sha256File(sealedPath).catch(() => 'missing')}`
    if (lock.inputs.sealedManifest === undefined || sealed !== lock.inputs.sealedManifest) {
      throw devError('DEV_MODEL_CHANGED', `The sealed model in ${sealedPath} is not the one ${lockfile} pins.`, {hint: rebuild, details: {sealedPath, lockfile, pinned: lock.inputs.sealedManifest ?? null, actual: sealed}})
    }
  }
  const {PCR0, PCR1, PCR2, PCR8} = info.measurements
  return {eifPath: paths.eifPath, measurements: {PCR0, PCR1, PCR2, ...(PCR8 ? {PCR8} : {})}}
}

/**
 * The dev key (created with its alias on first use) and its base statements: the admin may do
 * everything except the operations the enclave is gated on (not KMS's default "account root may do
 * kms:*", which would make the PCR gate moot), and the client identity may Encrypt (KMS mode).
 * Statements are added to an existing key's policy when missing. Returns the key ARN.
 */
async function ensureDevKey(o: {url: string; region: string; credentials: {accessKeyId: string; secretAccessKey: string}; alias: string; description: string; adminArn: string; clientArn: string; gated: readonly string[]}): Promise<string> {
  const client = new KMSClient({endpoint: o.url, region: o.region, credentials: o.credentials, maxAttempts: 1})
  try {
    const base = [
      {Sid: 'nle-dev-admin', Effect: 'Allow', Principal: {AWS: o.adminArn}, NotAction: o.gated.map((op) => `kms:${op}`), Resource: '*'},
      {Sid: 'nle-dev-client', Effect: 'Allow', Principal: {AWS: o.clientArn}, Action: ['kms:Encrypt', 'kms:DescribeKey'], Resource: '*'},
    ]
    const target = (await client.send(new ListAliasesCommand({}))).Aliases?.find((a) => a.AliasName === o.alias)?.TargetKeyId
    if (!target) {
      const created = await client.send(new CreateKeyCommand({Description: o.description, Policy: JSON.stringify({Version: '2012-10-17', Statement: base})}))
      await client.send(new CreateAliasCommand({AliasName: o.alias, TargetKeyId: created.KeyMetadata!.KeyId!}))
      return created.KeyMetadata!.Arn!
    }
    const keyArn = (await client.send(new DescribeKeyCommand({KeyId: target}))).KeyMetadata!.Arn!
    const policy = JSON.parse((await client.send(new GetKeyPolicyCommand({KeyId: keyArn, PolicyName: 'default'}))).Policy!) as {Statement: {Sid?: string}[]}
    const missing = base.filter((b) => !policy.Statement.some((s) => s.Sid === b.Sid))
    if (missing.length > 0) {
      policy.Statement.unshift(...missing)
      await client.send(new PutKeyPolicyCommand({KeyId: keyArn, PolicyName: 'default', Policy: JSON.stringify(policy)}))
    }
    return keyArn
  } finally {
    client.destroy()
  }
}

/**
 * Seal the dev model under the dev key unless model.sealedPath already holds this model sealed under
 * it. Returns whether it sealed (the image must then be rebuilt: it carries the sealed manifest).
 */
async function ensureSealed(loaded: LoadedConfig, o: {url: string; region: string; credentials: {accessKeyId: string; secretAccessKey: string}; keyArn: string; rebuild: boolean; onStep: (m: string) => void}): Promise<boolean> {
  const {config, dir} = loaded
  const modelDir = resolve(dir, config.model.path)
  const sealedDir = resolve(dir, config.model.sealedPath)
  const current = `sha256:${await sha256File(join(modelDir, MANIFEST_FILE))}`
  const existing = await readFile(join(sealedDir, SEALED_MANIFEST_FILE)).then(
    (b) => parseSealedManifest(b),
    () => undefined,
  )
  if (!o.rebuild && existing?.model.manifestDigest === current && existing.key.keyId === o.keyArn) return false
  o.onStep('sealing the model under the dev key')
  const client = new KMSClient({endpoint: o.url, region: o.region, credentials: o.credentials, maxAttempts: 1})
  try {
    await sealModel({modelDir, outDir: sealedDir, generateDataKey: kmsGenerateDataKey(client, o.keyArn), force: true})
  } finally {
    client.destroy()
  }
  return true
}

export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const step = options.onStep ?? (() => undefined)
  const loaded = await loadConfig(options.configFile)
  const {config, dir} = loaded
  // One dev stack per folder, taken before anything in it is touched: a second `nle dev` refuses
  // with the first one's pid and leaves its model, EIF, sockets and endpoints alone.
  const lock = await acquireDevLock(dir)
  const devDir = join(dir, '.nle', 'dev')
  const socket = join(devDir, 'enclave.sock')
  const devRootFile = join(devDir, 'sim-root.pem')

  const sup = new Supervisor()
  let kms: RunningLocalKms | undefined
  let weights: WeightsServer | undefined
  let credentialsServer: CredentialsServer | undefined
  const stop = async (): Promise<void> => {
    try {
      await sup.stopAll()
      await weights?.close()
      await credentialsServer?.close()
      await kms?.close()
      await removeEndpoints(dir)
    } finally {
      await lock.release()
    }
  }
  try {
    await prepareModel(loaded, {rebuild: options.rebuild, onStep: step})
    await mkdir(devDir, {recursive: true, mode: 0o700})
    // The local KMS first: the enclave server needs its URL, and a sealed model its key before the
    // image (which carries the sealed manifest) is built. It asks for the simulator's root only
    // when a Recipient arrives, by which time the server has written it.
    step('starting the local KMS endpoint')
    const simulator: {root?: TrustedRoot} = {}
    const statePath = join(devDir, 'kms-state.json')
    const {state} = await loadState(statePath, {region: config.kms.region ?? 'us-east-1'})
    for (const role of [DEV_ADMIN_ROLE, DEV_HOST_ROLE, DEV_CLIENT_ROLE]) {
      if (!state.identities.some((i) => i.arn.endsWith(`:role/${role}`))) state.identities.push(newIdentity(state.accountId, role))
    }
    await saveState(statePath, state)
    kms = await startLocalKms({
      host: '127.0.0.1',
      port: 0,
      state,
      statePath,
      root: () => {
        // A sealed model asks during the server's start-up: the root file is written by then.
        if (!simulator.root && config.model.sealed && existsSync(devRootFile)) simulator.root = insecureDevRoot(readFileSync(devRootFile, 'utf8'))
        if (!simulator.root) throw new Error('the NSM simulator has not published its root yet')
        return simulator.root
      },
    })
    const role = (name: string): LocalIdentity => state.identities.find((i) => i.arn.endsWith(`:role/${name}`))!
    const admin = role(DEV_ADMIN_ROLE)
    const host = role(DEV_HOST_ROLE)
    const asker = role(DEV_CLIENT_ROLE)
    const credentials = {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}
    const region = state.region
    const keyArn = await ensureDevKey({url: kms.url, region, credentials, alias: `alias/${config.name}`, description: `nle dev key of ${config.name}`, adminArn: admin.arn, clientArn: asker.arn, gated: config.kms.operations})
    // A sealed model: sealed under the dev key (by the admin identity, as an operator would) when the
    // sealed folder is missing or of another model or key; the image is then rebuilt around it.
    const resealed = config.model.sealed ? await ensureSealed(loaded, {url: kms.url, region, credentials, keyArn, rebuild: options.rebuild === true, onStep: step}) : false
    // The image of a sealed model names the key that opens it (its runtime config's kms block): the dev key.
    const forImage = config.model.sealed ? {...loaded, config: {...config, kms: {...config.kms, keyId: keyArn, region}}} : loaded
    const {lockfile} = await prepareImage(forImage, {rebuild: options.rebuild || resealed, onStep: step})
    step('checking the EIF and the model against the lockfile')
    const verified = await verifyDevArtifacts(loaded, lockfile)
    step('applying the key policy')
    const policy = await applyPolicy({
      configFile: loaded.file,
      lockfile,
      keyId: keyArn,
      roleArn: host.arn,
      region,
      source: {kind: 'aws', aws: {endpointUrl: kms.url, region, credentials}},
      apply: true,
      allowDebug: false,
      force: false,
    })

    let sealedArgs: string[] = []
    if (config.model.sealed) {
      // The parent's weights server: ciphertext only, on a Unix socket (in the enclave: over vsock).
      step('starting the weights server (sealed model)')
      const sealedDir = resolve(dir, config.model.sealedPath)
      const weightsSocket = join(devDir, 'weights.sock')
      const lock = await readLockfile(lockfile)
      weights = await startWeightsServer({dir: sealedDir, socketPath: weightsSocket, logger: {log: (level, event, fields) => options.onLog?.('weights-server', {level, event, ...fields})}})
      sealedArgs = ['--sealed-manifest', join(sealedDir, SEALED_MANIFEST_FILE), '--weights-socket', weightsSocket, '--model-digest', lock.inputs.modelManifest!]
    }
    const credentialsSocket = join(devDir, 'credentials.sock')
    if (config.model.sealed) {
      // A sealed model is opened at start, before the proxy runs: the host role's credentials are
      // served from here then (the same endpoint as the proxy's, on the same socket).
      credentialsServer = await startCredentialsServer({
        socketPath: credentialsSocket,
        source: 'env',
        provider: async () => ({accessKeyId: host.accessKeyId, secretAccessKey: host.secretAccessKey}),
        logger: {log: (level, event, fields) => options.onLog?.('credentials', {level, event, ...fields})},
      })
      // The simulator's root is needed by the first Recipient, which now comes during start-up.
      await rm(devRootFile, {force: true})
    }
    step('starting the enclave server (NSM simulator, Unix socket)')
    await sup.start({
      name: 'enclave-server',
      // The development entry: the enclave server with the NSM simulator and nle.yaml support.
      ...nodeChild(join(PACKAGE_ROOT, 'dist', 'lib', 'dev', 'enclave-server.js'), [
        '--socket', socket,
        '--config', loaded.file,
        '--nsm', 'simulator',
        // The PCRs of the image itself, measured by nle's reader in the server (never the lockfile's).
        '--eif', verified.eifPath,
        '--sim-root-out', devRootFile,
        // KMS mode: the local endpoint, reached with the host role's credentials from the proxy.
        '--kms-endpoint', kms.url,
        '--kms-region', region,
        '--kms-key-id', keyArn,
        '--credentials-socket', credentialsSocket,
        ...sealedArgs,
      ]),
      readyWhen: (m) => m.event === 'listening',
      readyTimeoutMs: 60_000,
      ...(options.onLog ? {onLog: options.onLog} : {}),
    })
    const rootPem = await readFile(devRootFile, 'utf8')
    const root = insecureDevRoot(rootPem)
    simulator.root = root

    step('starting the parent proxy (self-signed TLS on 127.0.0.1)')
    const proxy = await sup.start({
      name: 'parent-proxy',
      ...nodeChild(join(RUNTIME_DIR, 'parent-proxy', 'index.js'), [
        '--config',
        loaded.file,
        '--upstream',
        `unix:${socket}`,
        '--self-signed',
        join(devDir, 'tls'),
        '--host',
        '127.0.0.1',
        '--port',
        String(options.port ?? 0),
        ...(credentialsServer ? [] : ['--credentials-socket', credentialsSocket, '--credentials-source', 'env']),
      ]),
      // The host role's credentials, served to the enclave on the credentials socket only (on a
      // real host they come from the instance role through IMDSv2).
      env: {AWS_ACCESS_KEY_ID: host.accessKeyId, AWS_SECRET_ACCESS_KEY: host.secretAccessKey, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined},
      readyWhen: (m) => m.event === 'listening',
      ...(options.onLog ? {onLog: options.onLog} : {}),
    })
    const https = String(proxy.ready.https ?? '')
    const endpoints: DevEndpoints = {
      projectDir: await realpath(dir),
      proxyUrl: `https://${https}`,
      enclaveSocket: socket,
      kmsUrl: kms.url,
      kms: {keyArn, region, stateFile: statePath},
      devRootFile,
      devRootSha256: root.sha256,
      caFile: join(devDir, 'tls', 'cert.pem'),
      pid: process.pid,
    }
    await writeEndpoints(dir, endpoints)
    return {
      endpoints,
      lockfile,
      kms: {url: kms.url, keyArn, region, admin: credentials, hostRoleArn: host.arn, clientRoleArn: asker.arn},
      policy,
      exited: sup.exited,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}
