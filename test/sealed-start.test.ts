// A sealed model end to end, as real processes: the enclave server (child process, NSM simulator)
// opens a model sealed under the local KMS (Decrypt with a Recipient, the host role's credentials
// from a Unix socket), streamed from the parent's weights server, and answers an attested chat; each
// way the sealed files or the key policy can be wrong stops its start-up with its own code. A canary
// planted in the weight file itself never shows up in the sealed files, the weights traffic or any
// log. Loopback and Unix sockets only.
import {createHash, randomBytes} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {appendFile, cp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CreateKeyCommand, KMSClient} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {NleClient} from '../src/lib/client/index.js'
import {type RunningLocalKms, startLocalKms} from '../src/lib/kms/local/server.js'
import {type LocalIdentity, DEV_CLIENT_ROLE, DEV_HOST_ROLE, newState} from '../src/lib/kms/local/state.js'
import {type MeasurementSet, serializePolicy, starterPolicy} from '../src/lib/kms/policy.js'
import {writeLockfile} from '../src/lib/lockfile.js'
import {recordManifest} from '../src/lib/model/save.js'
import {SEALED_MANIFEST_FILE, TAG_BYTES, parseSealedManifest} from '../src/lib/model/seal/format.js'
import {kmsGenerateDataKey} from '../src/lib/model/seal/project.js'
import {type SealResult, sealModel} from '../src/lib/model/seal/seal.js'
import {synthModel} from '../src/lib/model/synth.js'
import {type CredentialsServer, startCredentialsServer} from '../src/lib/proxy/credentials.js'
import {type WeightsServer, startWeightsServer} from '../src/lib/proxy/weights.js'
import {jsonLogger} from '../src/lib/net/log.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type Child, startRuntime} from './e2e-support.js'

const CHUNK = 64 << 10
const CANARY = Buffer.from(`NLE-CANARY-${randomBytes(8).toString('hex')}`)
const digest384 = (label: string): string => createHash('sha384').update(label).digest('hex')
const measurements = (label: string): MeasurementSet => ({PCR0: digest384(`${label}0`), PCR1: digest384(`${label}1`), PCR2: digest384(`${label}2`)})

let dir: string
let cleanup: () => void
let kms: RunningLocalKms
let keyArn: string
let host: LocalIdentity
let asker: LocalIdentity
let credentials: CredentialsServer
let sealed: SealResult
let other: SealResult
/** The simulator root file of the server being started (each simulated enclave has its own root). */
let currentRoot = ''
const logs: string[] = []
const children: Child[] = []
const lock = {good: '', bad: ''}

/** A saved tiny model whose ONNX file carries the canary (a doc_string field appended to the ModelProto). */
async function cannedModel(out: string, seed: number): Promise<void> {
  await synthModel({preset: 'tiny', outDir: out, seed})
  // Field 6 (doc_string), length-delimited: a valid ONNX file that now holds the canary's bytes.
  await appendFile(join(out, 'onnx', 'model.onnx'), Buffer.concat([Buffer.from([0x32, CANARY.length]), CANARY]))
  await recordManifest(out, 'fp32', {kind: 'synth', preset: 'tiny', seed})
}

async function seal(modelDir: string, outDir: string): Promise<SealResult> {
  const client = new KMSClient({endpoint: kms.url, region: 'us-east-1', credentials: {accessKeyId: asker.accessKeyId, secretAccessKey: asker.secretAccessKey}, maxAttempts: 1})
  try {
    return await sealModel({modelDir, outDir, generateDataKey: kmsGenerateDataKey(client, keyArn), chunkBytes: CHUNK})
  } finally {
    client.destroy()
  }
}

interface Started {
  child: Child
  weights: WeightsServer
  socket: string
}

/** The weights server on `sealedDir` and an enclave server opening the model through it. */
async function start(name: string, sealedDir: string, o: {lockfile?: string; manifest?: string; digest?: string} = {}): Promise<Started> {
  const weightsSocket = join(dir, `${name}.weights.sock`)
  const weights = await startWeightsServer({dir: sealedDir, socketPath: weightsSocket, logger: jsonLogger({component: 'weights', write: (l) => logs.push(l)})})
  currentRoot = join(dir, `${name}.pem`)
  const socket = join(dir, `${name}.sock`)
  const child = startRuntime('enclave-server', [
    '--socket', socket,
    '--nsm', 'simulator',
    '--lockfile', o.lockfile ?? lock.good,
    '--sim-root-out', currentRoot,
    '--kms-endpoint', kms.url,
    '--kms-region', 'us-east-1',
    '--credentials-socket', credentials.socketPath,
    '--sealed-manifest', o.manifest ?? join(sealedDir, SEALED_MANIFEST_FILE),
    '--weights-socket', weightsSocket,
    '--model-digest', o.digest ?? sealed.modelDigest,
    '--max-tokens', '8',
  ])
  children.push(child)
  return {child, weights, socket}
}

/** Start on a broken sealed folder: resolves with the code of the failed start-up. */
async function failedStart(name: string, sealedDir: string, o: Parameters<typeof start>[2] = {}): Promise<{code: unknown; exit: number | null}> {
  const s = await start(name, sealedDir, o)
  const [failed, exit] = await Promise.all([s.child.waitFor('start_failed').catch(() => ({code: 'none'})), s.child.exited])
  await s.weights.close()
  expect(s.child.output()).not.toContain('"event":"listening"')
  return {code: failed.code, exit}
}

/** A copy of the sealed folder with `edit` applied to it. */
async function brokenCopy(name: string, edit: (dir: string) => Promise<void>): Promise<string> {
  const copy = join(dir, `sealed-${name}`)
  await cp(sealed.outDir, copy, {recursive: true})
  await edit(copy)
  return copy
}

const manifestOf = async (d: string) => parseSealedManifest(await readFile(join(d, SEALED_MANIFEST_FILE)))
const fileOf = async (d: string, path: string): Promise<string> => join(d, (await manifestOf(d)).files.find((f) => f.path === path)!.sealed)

beforeAll(async () => {
  ;({dir, cleanup} = tempDir('nle-sealed-start-'))
  lock.good = join(dir, 'good.lock.json')
  lock.bad = join(dir, 'bad.lock.json')
  for (const which of ['good', 'bad'] as const) {
    await writeLockfile(lock[which], {version: 1, measurements: measurements(which), eif: {sha384: digest384(which), size: 1, version: 4, signed: false}, builder: {name: 'e2e', version: '0'}, inputs: {}})
  }
  const state = newState()
  host = state.identities.find((i) => i.arn.endsWith(`/${DEV_HOST_ROLE}`))!
  asker = state.identities.find((i) => i.arn.endsWith(`/${DEV_CLIENT_ROLE}`))!
  // The simulator root of the server being started; it is written before its first Recipient call.
  kms = await startLocalKms({state, root: () => insecureDevRoot(readFileSync(currentRoot, 'utf8')), log: (line) => logs.push(line)})
  const admin = new KMSClient({endpoint: kms.url, region: 'us-east-1', credentials: {accessKeyId: asker.accessKeyId, secretAccessKey: asker.secretAccessKey}, maxAttempts: 1})
  // Only the host role with the good image's PCRs may Decrypt; the others may GenerateDataKey (the operator seals).
  const policy = starterPolicy(state.accountId, {project: 'sealed', roleArn: host.arn, measurements: measurements('good'), keepPrevious: 0, operations: ['Decrypt']})
  keyArn = (await admin.send(new CreateKeyCommand({Policy: serializePolicy(policy)}))).KeyMetadata!.Arn!
  admin.destroy()
  credentials = await startCredentialsServer({
    socketPath: join(dir, 'credentials.sock'),
    source: 'env',
    provider: async () => ({accessKeyId: host.accessKeyId, secretAccessKey: host.secretAccessKey}),
    logger: jsonLogger({component: 'credentials', write: (l) => logs.push(l)}),
  })
  await cannedModel(join(dir, 'model'), 11)
  await cannedModel(join(dir, 'other-model'), 12)
  sealed = await seal(join(dir, 'model'), join(dir, 'sealed'))
  other = await seal(join(dir, 'other-model'), join(dir, 'other-sealed'))
}, 120_000)

afterAll(async () => {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
  await credentials?.close()
  await kms?.close()
  cleanup?.()
})

describe('a sealed model at start-up', () => {
  it('is opened from the weights server and answers an attested chat; no canary byte in the sealed files, the traffic or the logs', async () => {
    expect(readFileSync(join(dir, 'model', 'onnx', 'model.onnx')).includes(CANARY)).toBe(true)
    for (const name of await readdir(sealed.outDir)) expect(readFileSync(join(sealed.outDir, name)).includes(CANARY), name).toBe(false)
    const s = await start('good', sealed.outDir)
    await s.child.waitFor('listening', 90_000)
    const unsealed = await s.child.waitFor('model_unsealed')
    expect(unsealed).toMatchObject({files: sealed.files, bytes: sealed.plainBytes, chunks: sealed.chunks})
    // Everything the weights server sent is the sealed files: their sizes exactly (they hold no canary).
    expect(s.weights.bytesServed()).toBe(sealed.sealedBytes)
    const client = new NleClient({target: `unix:${s.socket}`, expectedPcrs: measurements('good'), insecureDevRoot: insecureDevRoot(readFileSync(currentRoot, 'utf8'))})
    try {
      const answer = await client.chat({messages: [{role: 'user', content: 'Is the model sealed?'}], max_tokens: 6})
      expect(answer.choices[0]?.message.content?.length).toBeGreaterThan(0)
    } finally {
      client.close()
    }
    s.child.proc.kill('SIGTERM')
    expect(await s.child.exited).toBe(0)
    await s.weights.close()
    for (const text of [s.child.output(), logs.join('')]) expect(text.includes(CANARY.toString())).toBe(false)
    // No plaintext model file appeared anywhere in the test's folder but the source.
    const leaked: string[] = []
    for (const e of await readdir(dir, {recursive: true, withFileTypes: true})) {
      if (!e.isFile() || e.parentPath.includes('model')) continue
      if (readFileSync(join(e.parentPath, e.name)).includes(CANARY)) leaked.push(join(e.parentPath, e.name))
    }
    expect(leaked).toEqual([])
  }, 120_000)

  it('waits for a weights server that is not up yet (nle run starts the parent side after the enclave)', async () => {
    const weightsSocket = join(dir, 'late.weights.sock')
    currentRoot = join(dir, 'late.pem')
    const child = startRuntime('enclave-server', [
      '--socket', join(dir, 'late.sock'), '--nsm', 'simulator', '--lockfile', lock.good, '--sim-root-out', currentRoot,
      '--kms-endpoint', kms.url, '--kms-region', 'us-east-1', '--credentials-socket', credentials.socketPath,
      '--sealed-manifest', join(sealed.outDir, SEALED_MANIFEST_FILE), '--weights-socket', weightsSocket, '--model-digest', sealed.modelDigest,
    ])
    children.push(child)
    expect(await child.waitFor('model_waiting')).toMatchObject({code: 'SEAL_WEIGHTS_UNAVAILABLE'})
    const weights = await startWeightsServer({dir: sealed.outDir, socketPath: weightsSocket, logger: jsonLogger({component: 'weights', write: (l) => logs.push(l)})})
    try {
      await child.waitFor('listening', 90_000)
    } finally {
      child.proc.kill('SIGTERM')
      await child.exited
      await weights.close()
    }
  }, 120_000)

  it('a key policy that does not admit the PCRs: SEAL_KEY_REFUSED (exit 5)', async () => {
    expect(await failedStart('bad-pcrs', sealed.outDir, {lockfile: lock.bad})).toEqual({code: 'SEAL_KEY_REFUSED', exit: 5})
  }, 60_000)

  it('a sealed manifest of another model: SEAL_MODEL_MISMATCH', async () => {
    expect(await failedStart('other', other.outDir)).toEqual({code: 'SEAL_MODEL_MISMATCH', exit: 5})
  }, 60_000)

  it('a tampered chunk: SEAL_CHUNK_TAMPERED', async () => {
    const broken = await brokenCopy('tampered', async (d) => {
      const path = await fileOf(d, 'onnx/model.onnx')
      const bytes = await readFile(path)
      bytes.writeUInt8(bytes.readUInt8(CHUNK + 100) ^ 1, CHUNK + 100)
      await writeFile(path, bytes)
    })
    expect(await failedStart('tampered', broken)).toEqual({code: 'SEAL_CHUNK_TAMPERED', exit: 5})
  }, 60_000)

  it('chunks reordered: SEAL_CHUNK_REORDERED', async () => {
    const broken = await brokenCopy('reordered', async (d) => {
      const path = await fileOf(d, 'onnx/model.onnx')
      const bytes = await readFile(path)
      const step = CHUNK + TAG_BYTES
      const a = Buffer.from(bytes.subarray(step, 2 * step))
      bytes.copy(bytes, step, 2 * step, 3 * step)
      a.copy(bytes, 2 * step)
      await writeFile(path, bytes)
    })
    expect(await failedStart('reordered', broken)).toEqual({code: 'SEAL_CHUNK_REORDERED', exit: 5})
  }, 60_000)

  it('a chunk of another file in its place: SEAL_CHUNK_SWAPPED', async () => {
    const broken = await brokenCopy('swapped', async (d) => {
      const onnx = await readFile(await fileOf(d, 'onnx/model.onnx'))
      const tokenizerPath = await fileOf(d, 'tokenizer.json')
      const tokenizer = await readFile(tokenizerPath)
      onnx.copy(tokenizer, 0, 0, CHUNK + TAG_BYTES)
      await writeFile(tokenizerPath, tokenizer)
    })
    expect(await failedStart('swapped', broken)).toEqual({code: 'SEAL_CHUNK_SWAPPED', exit: 5})
  }, 60_000)

  it('a sealed file cut short: SEAL_TRUNCATED; the weights missing on the host: SEAL_WEIGHTS_UNAVAILABLE', async () => {
    const cut = await brokenCopy('truncated', async (d) => {
      const path = await fileOf(d, 'onnx/model.onnx')
      const bytes = await readFile(path)
      await writeFile(path, bytes.subarray(0, bytes.length - 1))
    })
    expect(await failedStart('truncated', cut)).toEqual({code: 'SEAL_TRUNCATED', exit: 5})
    const gone = await brokenCopy('gone', async (d) => rm(await fileOf(d, 'onnx/model.onnx')))
    expect(existsSync(join(gone, SEALED_MANIFEST_FILE))).toBe(true)
    expect(await failedStart('gone', gone)).toEqual({code: 'SEAL_WEIGHTS_UNAVAILABLE', exit: 6})
  }, 60_000)
})
