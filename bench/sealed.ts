// Sealed models (issue 24's figures), on the gpt2-medium synth (NLE_BENCH_SEALED_PRESET=tiny for a
// quick run): the EIF size sealed vs embedded (native builder, same project); start-up to "listening"
// of the enclave server sealed (KMS Decrypt with a Recipient against the local KMS, the sealed files
// streamed from the weights server, checked and decrypted into memory) vs embedded (the model's files
// re-hashed from disk); and the chunk decryption throughput against `openssl speed -evp aes-256-gcm`
// at the same chunk size (`openssl enc` refuses AEAD ciphers, so speed is OpenSSL's own AES-GCM figure).
import {execFile} from 'node:child_process'
import {createCipheriv, createDecipheriv, randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {CreateKeyCommand, KMSClient, PutKeyPolicyCommand} from '@aws-sdk/client-kms'

import type {BenchRow} from '../scripts/bench.js'
import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {loadConfig} from '../src/lib/config/load.js'
import {buildProject} from '../src/lib/host/build.js'
import {defaultHostContext} from '../src/lib/host/exec.js'
import {initProject} from '../src/lib/init.js'
import {startLocalKms} from '../src/lib/kms/local/server.js'
import {DEV_CLIENT_ROLE, DEV_HOST_ROLE, newState} from '../src/lib/kms/local/state.js'
import {serializePolicy, starterPolicy} from '../src/lib/kms/policy.js'
import {readLockfile} from '../src/lib/lockfile.js'
import {jsonLogger} from '../src/lib/net/log.js'
import {recordManifest} from '../src/lib/model/save.js'
import {DEFAULT_CHUNK_BYTES, SEALED_MANIFEST_FILE, TAG_BYTES, chunkAad, chunkNonce} from '../src/lib/model/seal/format.js'
import {kmsGenerateDataKey} from '../src/lib/model/seal/project.js'
import {sealModel} from '../src/lib/model/seal/seal.js'
import {synthModel} from '../src/lib/model/synth.js'
import type {PresetName} from '../src/lib/model/synth-presets.js'
import {startCredentialsServer} from '../src/lib/proxy/credentials.js'
import {startWeightsServer} from '../src/lib/proxy/weights.js'
import {startRuntime} from '../test/e2e-support.js'

const run = promisify(execFile)
const PRESET = (process.env.NLE_BENCH_SEALED_PRESET ?? 'gpt2-medium') as PresetName
const MIB = 1024 * 1024

/** openssl's own AES-256-GCM decryption throughput (MB/s) at this block size. */
async function opensslGcm(bytes: number): Promise<number> {
  const {stdout} = await run('openssl', ['speed', '-decrypt', '-evp', 'aes-256-gcm', '-bytes', String(bytes), '-seconds', '3'], {maxBuffer: 1 << 20})
  const line = stdout.split('\n').find((l) => /^AES-256-GCM\s/i.test(l.trim()))
  const k = Number(line?.trim().split(/\s+/).at(-1)?.replace(/k$/, ''))
  return (k * 1000) / 1e6
}

/** Node's AES-256-GCM decryption of `total` bytes in chunks, with the sealed format's nonces and AAD (MB/s). */
function nodeGcmDecrypt(total: number, chunk: number): number {
  const key = randomBytes(32)
  const plain = randomBytes(chunk)
  const sealed: Buffer[] = []
  const n = Math.ceil(total / chunk)
  const aad = (i: number): Buffer => chunkAad(`sha256:${'0'.repeat(64)}`, 1, 'onnx/model.onnx', i, i === n - 1)
  for (let i = 0; i < Math.min(n, 16); i++) {
    const x = createCipheriv('aes-256-gcm', key, chunkNonce(1, i), {authTagLength: TAG_BYTES}).setAAD(aad(i))
    sealed.push(Buffer.concat([x.update(plain), x.final(), x.getAuthTag()]))
  }
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const s = sealed[i % sealed.length]!
    const d = createDecipheriv('aes-256-gcm', key, chunkNonce(1, i % sealed.length), {authTagLength: TAG_BYTES})
    d.setAAD(aad(i % sealed.length))
    d.setAuthTag(s.subarray(chunk))
    d.update(s.subarray(0, chunk))
    d.final()
  }
  return (n * chunk) / 1e6 / ((performance.now() - t0) / 1000)
}

export default async function bench(): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'nle-bench-sealed-'))
  const rows: BenchRow[] = []
  try {
    // One project, one model; built embedded, then sealed (the same runtime and kernel).
    const project = join(dir, 'proj')
    await initProject({dir: project, name: 'bench-sealed'})
    const modelDir = join(project, 'model')
    const synth = await synthModel({preset: PRESET, outDir: modelDir, seed: 1})
    await recordManifest(modelDir, 'fp32', {kind: 'synth', preset: PRESET, seed: synth.seed})
    const yaml = join(project, 'nle.yaml')
    const plainYaml = (await readFile(yaml, 'utf8')).replace(/preset: tiny/, `preset: ${PRESET}`)
    await writeFile(yaml, plainYaml)
    const ctx = defaultHostContext()
    await buildProject({loaded: await loadConfig(yaml), ctx, builder: 'native'})
    const embeddedEif = (await stat(join(project, 'build', 'enclave.eif'))).size
    const embeddedLock = await readLockfile(join(project, 'nle.lock.json'))

    // The local KMS, a key only the host role with the bench's PCRs may Decrypt, and the model sealed under it.
    const state = newState()
    const host = state.identities.find((i) => i.arn.endsWith(`/${DEV_HOST_ROLE}`))!
    const operator = state.identities.find((i) => i.arn.endsWith(`/${DEV_CLIENT_ROLE}`))!
    let rootFile = ''
    const kms = await startLocalKms({state, root: () => insecureDevRoot(readFileSync(rootFile, 'utf8'))})
    const client = new KMSClient({endpoint: kms.url, region: 'us-east-1', credentials: {accessKeyId: operator.accessKeyId, secretAccessKey: operator.secretAccessKey}, maxAttempts: 1})
    const policy = starterPolicy(state.accountId, {project: 'bench', roleArn: host.arn, measurements: embeddedLock.measurements, keepPrevious: 0, operations: ['Decrypt']})
    const keyArn = (await client.send(new CreateKeyCommand({Policy: serializePolicy(policy)}))).KeyMetadata!.Arn!
    const sealedDir = join(project, 'model.sealed')
    const t0 = performance.now()
    const sealedResult = await sealModel({modelDir, outDir: sealedDir, generateDataKey: kmsGenerateDataKey(client, keyArn)})
    const sealMs = performance.now() - t0
    await writeFile(yaml, plainYaml.replace(/^ {2}# sealed: true.*$/m, '  sealed: true').replace(/^ {2}# keyId: .*$/m, `  keyId: ${keyArn}`).replace(/^ {2}# region: .*$/m, '  region: us-east-1'))
    await buildProject({loaded: await loadConfig(yaml), ctx, builder: 'native'})
    const sealedEif = (await stat(join(project, 'build', 'enclave.eif'))).size
    // Now the key policy admits the sealed image's PCRs (what the simulator attests below).
    const sealedLock = await readLockfile(join(project, 'nle.lock.json'))
    const admitted = starterPolicy(state.accountId, {project: 'bench', roleArn: host.arn, measurements: sealedLock.measurements, keepPrevious: 0, operations: ['Decrypt']})
    await client.send(new PutKeyPolicyCommand({KeyId: keyArn, PolicyName: 'default', Policy: serializePolicy(admitted)}))
    client.destroy()
    rows.push({name: `EIF of the ${PRESET} synth, sealed`, value: sealedEif / MIB, unit: 'MiB', peer: {name: 'embedded', value: embeddedEif / MIB}, target: '<= 0.15x embedded', pass: sealedEif <= 0.15 * embeddedEif})
    rows.push({name: `nle model seal of the ${PRESET} synth (${(sealedResult.plainBytes / MIB).toFixed(0)} MiB)`, value: sealMs, unit: 'ms'})

    // Start-up to "listening", best of 2 each: embedded (files re-hashed from disk) and sealed.
    const credentials = await startCredentialsServer({socketPath: join(dir, 'cred.sock'), source: 'env', provider: async () => ({accessKeyId: host.accessKeyId, secretAccessKey: host.secretAccessKey}), logger: jsonLogger({component: 'c', write: () => undefined})})
    const weights = await startWeightsServer({dir: sealedDir, socketPath: join(dir, 'weights.sock'), logger: jsonLogger({component: 'w', write: () => undefined})})
    const lockfile = join(project, 'nle.lock.json')
    const startup = async (sealed: boolean, i: number): Promise<number> => {
      rootFile = join(dir, `root-${sealed}-${i}.pem`)
      const args = ['--socket', join(dir, `s-${sealed}-${i}.sock`), '--nsm', 'simulator', '--lockfile', lockfile, '--sim-root-out', rootFile]
      const sealedArgs = ['--kms-endpoint', kms.url, '--kms-region', 'us-east-1', '--credentials-socket', credentials.socketPath, '--sealed-manifest', join(sealedDir, SEALED_MANIFEST_FILE), '--weights-socket', weights.socketPath, '--model-digest', sealedResult.modelDigest]
      const started = performance.now()
      const child = startRuntime('enclave-server', [...args, ...(sealed ? sealedArgs : ['--model', modelDir])])
      try {
        await child.waitFor('listening', 600_000)
        const ms = performance.now() - started
        // Where the time went: the server's own log (opening the sealed files, loading the engine).
        for (const event of ['model_unsealed', 'model_loaded']) {
          const line = child.output().split('\n').find((l) => l.includes(`"event":"${event}"`) && l.includes('"ms"'))
          if (line) parts[`${sealed ? 'sealed' : 'embedded'} ${event}`] = Math.min(parts[`${sealed ? 'sealed' : 'embedded'} ${event}`] ?? Infinity, (JSON.parse(line) as {ms: number}).ms)
        }
        return ms
      } finally {
        child.proc.kill('SIGTERM')
        await child.exited
      }
    }
    const parts: Record<string, number> = {}
    let embeddedMs = Infinity
    let sealedMs = Infinity
    for (let i = 0; i < 2; i++) {
      embeddedMs = Math.min(embeddedMs, await startup(false, i))
      sealedMs = Math.min(sealedMs, await startup(true, i))
    }
    rows.push({name: `start-up to ready, ${PRESET} synth, sealed (best of 2)`, value: sealedMs, unit: 'ms', peer: {name: 'embedded', value: embeddedMs}, target: '<= 1.3x embedded', pass: sealedMs <= 1.3 * embeddedMs})
    for (const [name, value] of Object.entries(parts)) rows.push({name: `  of which ${name} (server log)`, value, unit: 'ms'})
    await weights.close()
    await credentials.close()
    await kms.close()

    // Chunk decryption (4 MiB chunks, 1 GiB through): node's AES-256-GCM with the format's AAD vs OpenSSL's.
    const node = nodeGcmDecrypt(1024 * MIB, DEFAULT_CHUNK_BYTES)
    const openssl = await opensslGcm(DEFAULT_CHUNK_BYTES)
    rows.push({name: 'AES-256-GCM chunk decrypt (4 MiB chunks, 1 GiB, node:crypto)', value: node, unit: 'MB/s', peer: {name: 'openssl speed -decrypt -evp aes-256-gcm -bytes 4194304', value: openssl}, target: 'reported (the issue sets none)'})
    return rows
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}
