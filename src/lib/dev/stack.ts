/**
 * `nle dev`: the whole enclave flow on one machine with simulated Nitro parts.
 *
 *   model (generated when the config says synth) → native EIF + lockfile (when absent)
 *   → enclave server (child process, NSM simulator with the lockfile's PCRs, Unix socket)
 *   → local KMS endpoint (in this process: key + alias, policy applied from the lockfile)
 *   → parent proxy (child process, self-signed TLS on 127.0.0.1)
 *
 * Everything listens on loopback or Unix sockets. `stop()` ends it all; the endpoints are
 * published in .nle/dev/endpoints.json for `nle chat` while the stack runs.
 */
import {access, mkdir, readFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {CreateAliasCommand, CreateKeyCommand, KMSClient, ListAliasesCommand} from '@aws-sdk/client-kms'

import {insecureDevRoot} from '../attestation/roots.js'
import {type LoadedConfig, loadConfig} from '../config/load.js'
import {ExitCode, NleError} from '../errors.js'
import {buildProject} from '../host/build.js'
import {defaultHostContext} from '../host/exec.js'
import {type RunningLocalKms, startLocalKms} from '../kms/local/server.js'
import {loadState} from '../kms/local/state.js'
import {type ApplyReport, applyPolicy} from '../kms/service.js'
import {MANIFEST_FILE, recordManifest, synthModel} from '../model/index.js'
import {RUNTIME_DIR} from '../paths.js'
import {removeEndpoints, writeEndpoints, type DevEndpoints} from './endpoints.js'
import {Supervisor} from './supervisor.js'

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
  kms: {url: string; keyArn: string; region: string; admin: {accessKeyId: string; secretAccessKey: string}; hostRoleArn: string}
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
  const {config, dir} = loaded
  const modelDir = resolve(dir, config.model.path)
  const lockfile = resolve(dir, config.build.lockfile)
  if (options.rebuild || !(await exists(join(modelDir, MANIFEST_FILE)))) {
    if (config.model.source !== 'synth') {
      throw new NleError('DEV_MODEL_MISSING', `No saved model in ${modelDir}.`, {exitCode: ExitCode.IO, hint: 'Run `nle model save` first.'})
    }
    options.onStep?.(`generating the ${config.model.preset} test model`)
    const synth = await synthModel({preset: config.model.preset, outDir: modelDir, ...(options.seed === undefined ? {} : {seed: options.seed})})
    await recordManifest(modelDir, 'fp32', {kind: 'synth', preset: config.model.preset, seed: synth.seed})
  }
  if (options.rebuild || !(await exists(lockfile))) {
    options.onStep?.('building the dev EIF (native builder) and the lockfile')
    await buildProject({loaded, ctx: defaultHostContext(), builder: 'native'})
    return {lockfile, built: true}
  }
  return {lockfile, built: false}
}

export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const step = options.onStep ?? (() => undefined)
  const loaded = await loadConfig(options.configFile)
  const {config, dir} = loaded
  const {lockfile} = await prepareArtifacts(loaded, {rebuild: options.rebuild, onStep: step})
  const devDir = join(dir, '.nle', 'dev')
  await mkdir(devDir, {recursive: true, mode: 0o700})
  const socket = join(devDir, 'enclave.sock')
  const devRootFile = join(devDir, 'sim-root.pem')

  const sup = new Supervisor()
  let kms: RunningLocalKms | undefined
  const stop = async (): Promise<void> => {
    await sup.stopAll()
    await kms?.close()
    await removeEndpoints(dir)
  }
  try {
    step('starting the enclave server (NSM simulator, Unix socket)')
    await sup.start({
      name: 'enclave-server',
      command: process.execPath,
      args: [join(RUNTIME_DIR, 'enclave-server', 'index.js'), '--socket', socket, '--config', loaded.file, '--nsm', 'simulator', '--lockfile', lockfile, '--sim-root-out', devRootFile],
      readyWhen: (m) => m.event === 'listening',
      readyTimeoutMs: 60_000,
      ...(options.onLog ? {onLog: options.onLog} : {}),
    })
    const rootPem = await readFile(devRootFile, 'utf8')
    const root = insecureDevRoot(rootPem)

    step('starting the local KMS endpoint and applying the key policy')
    const {state} = await loadState(join(devDir, 'kms-state.json'), {region: config.kms.region ?? 'us-east-1'})
    kms = await startLocalKms({host: '127.0.0.1', port: 0, state, statePath: join(devDir, 'kms-state.json'), root})
    const admin = state.identities.find((i) => i.arn.endsWith(':role/nle-dev-admin'))!
    const host = state.identities.find((i) => i.arn.endsWith(':role/nle-dev-host'))!
    const credentials = {accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey}
    const region = state.region
    const client = new KMSClient({endpoint: kms.url, region, credentials, maxAttempts: 1})
    const alias = `alias/${config.name}`
    let keyArn = (await client.send(new ListAliasesCommand({}))).Aliases?.find((a) => a.AliasName === alias)?.TargetKeyId
    if (!keyArn) {
      // Not KMS's default policy (account root may do kms:*, which would make the PCR gate moot):
      // the admin may do everything except the operations the enclave is gated on.
      const adminPolicy = {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'nle-dev-admin',
            Effect: 'Allow',
            Principal: {AWS: admin.arn},
            NotAction: config.kms.operations.map((op) => `kms:${op}`),
            Resource: '*',
          },
        ],
      }
      const created = await client.send(new CreateKeyCommand({Description: `nle dev key of ${config.name}`, Policy: JSON.stringify(adminPolicy)}))
      keyArn = created.KeyMetadata!.Arn!
      await client.send(new CreateAliasCommand({AliasName: alias, TargetKeyId: created.KeyMetadata!.KeyId!}))
    }
    client.destroy()
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

    step('starting the parent proxy (self-signed TLS on 127.0.0.1)')
    const proxy = await sup.start({
      name: 'parent-proxy',
      command: process.execPath,
      args: [
        join(RUNTIME_DIR, 'parent-proxy', 'index.js'),
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
      ],
      readyWhen: (m) => m.event === 'listening',
      ...(options.onLog ? {onLog: options.onLog} : {}),
    })
    const https = String(proxy.ready.https ?? '')
    const endpoints: DevEndpoints = {
      proxyUrl: `https://${https}`,
      enclaveSocket: socket,
      kmsUrl: kms.url,
      devRootFile,
      devRootSha256: root.sha256,
      caFile: join(devDir, 'tls', 'cert.pem'),
      lockfile,
      pid: process.pid,
    }
    await writeEndpoints(dir, endpoints)
    return {
      endpoints,
      kms: {url: kms.url, keyArn, region, admin: credentials, hostRoleArn: host.arn},
      policy,
      exited: sup.exited,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}
