// KMS mode end to end: client (its own KMS identity) → parent proxy (child process; also serves the
// host role's credentials on a Unix socket) → byte tap → enclave server (child process, NSM
// simulator) → local KMS endpoint (Decrypt with a Recipient) and back. Loopback and Unix sockets only.
import {createHash, randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {request} from 'node:http'
import {join} from 'node:path'

import {CreateKeyCommand, DecryptCommand, KMSClient, PutKeyPolicyCommand} from '@aws-sdk/client-kms'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {type TrustedRoot, insecureDevRoot} from '../src/lib/attestation/roots.js'
import {type KeyConfig, decodeKeyConfig} from '../src/lib/channel/index.js'
import {parseKmsRequest, sealKmsRequest} from '../src/lib/channel/kms-request.js'
import {KMS_REQUEST_TYPE} from '../src/lib/protocol/routes.js'
import {type ChatCompletionChunk, NleClient, type NleClientOptions} from '../src/lib/client/index.js'
import {clientKms} from '../src/lib/client/kms.js'
import {type RunningLocalKms, startLocalKms} from '../src/lib/kms/local/server.js'
import {type LocalIdentity, DEV_CLIENT_ROLE, DEV_HOST_ROLE, newState} from '../src/lib/kms/local/state.js'
import {type MeasurementSet, patchPolicy, serializePolicy, starterPolicy} from '../src/lib/kms/policy.js'
import {writeLockfile} from '../src/lib/lockfile.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type Child, Tap, startRuntime} from './e2e-support.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const measurements = (label: string): MeasurementSet => ({PCR0: digest(`${label}0`), PCR1: digest(`${label}1`), PCR2: digest(`${label}2`)})
const CANARY = `CANARY-${randomBytes(8).toString('hex')}`

let dir: string
let cleanup: () => void
let kms: RunningLocalKms
const kmsLog: string[] = []
let keyArn: string
let host: LocalIdentity
let asker: LocalIdentity
let server: Child
let proxy: Child
let tap: Tap
let proxyUrl: string
const roots: Record<string, TrustedRoot> = {}
const lock = {good: '', prev: ''}
let accountId: string
let kmsFlags: string[]
/**
 * The simulator root the local KMS trusts. Each simulated enclave has its own root, where AWS has
 * one for all: a test that has KMS serve another enclave points it at that one's root meanwhile.
 */
let kmsTrusts: 'good' | 'prev' = 'good'

/** Admit `image` (and `previous` too: a rollout that keeps the last image admitted). */
async function putPolicy(image: string, previous?: string): Promise<void> {
  const admin = new KMSClient({endpoint: kms.url, region: 'us-east-1', credentials: {accessKeyId: asker.accessKeyId, secretAccessKey: asker.secretAccessKey}, maxAttempts: 1})
  const options = {project: 'e2e', roleArn: host.arn, measurements: measurements(image), keepPrevious: previous ? 1 : 0, operations: ['Decrypt' as const]}
  // The lockfile records the previous image as the last build (as `nle build` does), so the rollout keeps it.
  const policy = previous ? patchPolicy(starterPolicy(accountId, {...options, measurements: measurements(previous)}), {...options, recordedPrevious: [measurements(previous)]}).policy : starterPolicy(accountId, options)
  await admin.send(new PutKeyPolicyCommand({KeyId: keyArn, PolicyName: 'default', Policy: serializePolicy(policy)}))
  admin.destroy()
}
const closers: (() => void)[] = []

function kmsClientFor(target: string, which: 'good' | 'prev' | 'other', root: 'good' | 'prev' | 'lone' = 'good', extra: Partial<NleClientOptions> = {}): NleClient {
  const wrap = askerWrap()
  const client = new NleClient({target, expectedPcrs: measurements(which), insecureDevRoot: roots[root]!, kms: {wrap: wrap.wrap}, ...extra})
  closers.push(() => client.close())
  return client
}

function askerWrap(): ReturnType<typeof clientKms> {
  const wrap = clientKms({keyId: keyArn, region: 'us-east-1', endpointUrl: kms.url, credentials: {accessKeyId: asker.accessKeyId, secretAccessKey: asker.secretAccessKey}, source: 'dev'})
  closers.push(() => wrap.close())
  return wrap
}

/** The key configuration of the verified attestation of the enclave behind `socket`. */
async function attestedKey(socket: string, which: 'good' | 'prev'): Promise<KeyConfig> {
  return decodeKeyConfig((await kmsClientFor(`unix:${socket}`, which, which).attest()).publicKey)
}

const chatPosts = (): number => Buffer.concat(tap.toEnclave).toString('latin1').split('POST /v1/chat/completions').length - 1

function post(socketPath: string, body: Uint8Array): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath, method: 'POST', path: '/v1/chat/completions', headers: {'content-type': KMS_REQUEST_TYPE, 'content-length': body.length}}, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString('latin1')))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: text}))
    })
    req.on('error', reject)
    req.end(Buffer.from(body))
  })
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<string> {
  let text = ''
  for await (const c of stream) text += c.choices[0]?.delta.content ?? ''
  return text
}

beforeAll(async () => {
  ;({dir, cleanup} = tempDir('nle-e2e-kms-'))
  lock.good = join(dir, 'good.lock.json')
  lock.prev = join(dir, 'prev.lock.json')
  for (const which of ['good', 'prev'] as const) {
    await writeLockfile(lock[which], {version: 1, measurements: measurements(which), eif: {sha384: digest(which), size: 1, version: 4, signed: false}, builder: {name: 'e2e', version: '0'}, inputs: {}})
  }
  // The local KMS, up before the enclave servers; it asks for the simulator's root lazily.
  const state = newState()
  accountId = state.accountId
  host = state.identities.find((i) => i.arn.endsWith(`/${DEV_HOST_ROLE}`))!
  asker = state.identities.find((i) => i.arn.endsWith(`/${DEV_CLIENT_ROLE}`))!
  kms = await startLocalKms({state, root: () => roots[kmsTrusts]!, log: (line) => kmsLog.push(line)})
  const admin = new KMSClient({endpoint: kms.url, region: 'us-east-1', credentials: {accessKeyId: asker.accessKeyId, secretAccessKey: asker.secretAccessKey}, maxAttempts: 1})
  // The account may do everything but Decrypt (IAM-style delegation: here, every local identity may
  // Encrypt); only the host role with the good image's PCRs may Decrypt.
  const policy = starterPolicy(state.accountId, {project: 'e2e', roleArn: host.arn, measurements: measurements('good'), keepPrevious: 0, operations: ['Decrypt']})
  keyArn = (await admin.send(new CreateKeyCommand({Policy: serializePolicy(policy)}))).KeyMetadata!.Arn!
  admin.destroy()

  const credentialsSocket = join(dir, 'credentials.sock')
  kmsFlags = ['--kms-endpoint', kms.url, '--kms-region', 'us-east-1', '--kms-key-id', keyArn, '--credentials-socket', credentialsSocket]
  server = startRuntime('enclave-server', ['--socket', join(dir, 'good.sock'), '--engine', 'echo', '--nsm', 'simulator', '--lockfile', lock.good, '--sim-root-out', join(dir, 'good.pem'), ...kmsFlags])
  tap = new Tap(join(dir, 'tap.sock'), join(dir, 'good.sock'))
  await tap.start()
  proxy = startRuntime(
    'parent-proxy',
    ['--upstream', `unix:${join(dir, 'tap.sock')}`, '--host', '127.0.0.1', '--http-port', '0', '--port', '0', '--self-signed', join(dir, 'tls'), '--credentials-socket', credentialsSocket, '--credentials-source', 'env'],
    {AWS_ACCESS_KEY_ID: host.accessKeyId, AWS_SECRET_ACCESS_KEY: host.secretAccessKey},
  )
  proxyUrl = `http://${String((await proxy.waitFor('listening')).http)}`
  await server.waitFor('listening')
  roots.good = insecureDevRoot(await readFile(join(dir, 'good.pem'), 'utf8'))
}, 90_000)

afterAll(async () => {
  for (const close of closers) close()
  for (const child of [server, proxy]) if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL')
  await tap?.stop()
  await kms?.close()
  cleanup?.()
})

describe('KMS mode end to end', () => {
  it('answers through the proxy, whole and streamed; no plaintext and no credential reaches any log or relayed byte', async () => {
    const client = kmsClientFor(proxyUrl, 'good')
    await client.attest()
    const whole = await client.chat({messages: [{role: 'user', content: `Does my plan cover ${CANARY}?`}]})
    expect(whole.choices[0]!.message.content).toBe(`Echo: Does my plan cover ${CANARY}?`)
    expect(await collect(client.chatStream({messages: [{role: 'user', content: `And ${CANARY} streamed?`}]}))).toBe(`Echo: And ${CANARY} streamed?`)

    const relayed = tap.bytes().toString('latin1')
    expect(relayed).toContain(KMS_REQUEST_TYPE)
    for (const visible of [relayed, proxy.output(), server.output(), kmsLog.join('\n')]) {
      expect(visible).not.toContain(CANARY)
      expect(visible).not.toContain('my plan cover')
      expect(visible).not.toContain(host.secretAccessKey)
      expect(visible).not.toContain(asker.secretAccessKey)
    }
    expect(server.output()).toContain('"event":"kms_mode"')
  })

  it('a client whose attestation fails, or that has nothing to verify it against, sends nothing in KMS mode', async () => {
    const before = chatPosts()
    const wrong = kmsClientFor(proxyUrl, 'other') // the lockfile names another image
    await expect(wrong.attest()).rejects.toMatchObject({code: 'ATTEST_PCR_MISMATCH'})
    await expect(wrong.chat({messages: [{role: 'user', content: CANARY}]})).rejects.toMatchObject({code: 'ATTEST_PCR_MISMATCH'})
    await expect(collect(wrong.chatStream({messages: [{role: 'user', content: CANARY}]}))).rejects.toMatchObject({code: 'ATTEST_PCR_MISMATCH'})
    const blind = new NleClient({target: proxyUrl, insecureDevRoot: roots.good!, kms: {wrap: askerWrap().wrap}})
    closers.push(() => blind.close())
    await expect(blind.chat({messages: [{role: 'user', content: CANARY}]})).rejects.toMatchObject({code: 'CLIENT_NO_MEASUREMENTS'})
    expect(chatPosts()).toBe(before)
  })

  it('a previous image the key policy still admits cannot open a request made for the verified one', async () => {
    await putPolicy('good', 'prev') // KMS now releases request keys to both images
    const prev = startRuntime('enclave-server', ['--socket', join(dir, 'prev.sock'), '--engine', 'echo', '--nsm', 'simulator', '--lockfile', lock.prev, '--sim-root-out', join(dir, 'prev.pem'), ...kmsFlags])
    try {
      await prev.waitFor('listening')
      roots.prev = insecureDevRoot(await readFile(join(dir, 'prev.pem'), 'utf8'))
      const wrap = askerWrap()
      const question = new TextEncoder().encode(JSON.stringify({messages: [{role: 'user', content: CANARY}]}))
      const forGood = await sealKmsRequest(await attestedKey(join(dir, 'good.sock'), 'good'), question, wrap.wrap)
      kmsTrusts = 'prev'
      // The policy does admit it: a request sealed to its own attested key opens there.
      const own = await sealKmsRequest(await attestedKey(join(dir, 'prev.sock'), 'prev'), question, wrap.wrap)
      const ownAnswer = await post(join(dir, "prev.sock"), own.message)
      expect(ownAnswer, ownAnswer.body).toMatchObject({status: 200})
      // A request the client sealed for the good enclave, relayed by the host to the previous one:
      // KMS releases the data key to it, and it still does not open.
      const relayed = await post(join(dir, 'prev.sock'), forGood.message)
      expect(relayed.status).toBe(400)
      expect(JSON.parse(relayed.body)).toMatchObject({error: {code: 'CHANNEL_REQUEST_AUTH_FAILED'}})
      expect(prev.output()).not.toContain(CANARY)
      // The good enclave opens that same request.
      kmsTrusts = 'good'
      expect((await post(join(dir, 'good.sock'), forGood.message)).status).toBe(200)
    } finally {
      prev.proc.kill('SIGKILL')
      kmsTrusts = 'good'
      await putPolicy('good')
    }
  })

  it('the host role cannot unwrap a relayed request key itself: KMS wants the enclave attestation', async () => {
    const wrap = askerWrap()
    const sealed = await sealKmsRequest(await attestedKey(join(dir, 'good.sock'), 'good'), new TextEncoder().encode('{}'), wrap.wrap)
    const parsed = parseKmsRequest(sealed.message)
    const asHost = new KMSClient({endpoint: kms.url, region: 'us-east-1', credentials: {accessKeyId: host.accessKeyId, secretAccessKey: host.secretAccessKey}, maxAttempts: 1})
    closers.push(() => asHost.destroy())
    await expect(asHost.send(new DecryptCommand({CiphertextBlob: parsed.wrapped, EncryptionContext: {'nle:purpose': 'chat-request', 'nle:request-id': parsed.requestId}}))).rejects.toMatchObject({name: 'AccessDeniedException'})
  })

  it('an enclave whose PCRs the key policy does not admit cannot read the question (403 CHANNEL_KMS_DENIED)', async () => {
    // The policy now admits another image only; the running enclave attests the good one.
    await putPolicy('other')
    try {
      const client = kmsClientFor(`unix:${join(dir, 'good.sock')}`, 'good')
      await expect(client.chat({messages: [{role: 'user', content: CANARY}]})).rejects.toMatchObject({code: 'CLIENT_REQUEST_REFUSED', details: {status: 403, serverCode: 'CHANNEL_KMS_DENIED'}})
      expect(server.output()).not.toContain(CANARY)
      expect(server.proc.exitCode).toBeNull()
    } finally {
      await putPolicy('good')
    }
  })

  it('a replayed request is refused, an altered one too, and the server keeps serving', async () => {
    const wrap = askerWrap()
    const socket = join(dir, 'good.sock')
    const config = await attestedKey(socket, 'good')
    const sealed = await sealKmsRequest(config, new TextEncoder().encode(JSON.stringify({messages: [{role: 'user', content: 'once'}]})), wrap.wrap)
    expect((await post(socket, sealed.message)).status).toBe(200)
    const again = await post(socket, sealed.message)
    expect(again.status).toBe(400)
    expect(JSON.parse(again.body)).toMatchObject({error: {code: 'CHANNEL_REPLAY'}})
    const altered = new Uint8Array((await sealKmsRequest(config, new TextEncoder().encode('{}'), wrap.wrap)).message)
    altered[altered.length - 20]! ^= 0x01
    expect(JSON.parse((await post(socket, altered)).body)).toMatchObject({error: {code: 'CHANNEL_REQUEST_AUTH_FAILED'}})
    const client = kmsClientFor(`unix:${socket}`, 'good')
    expect((await client.chat({messages: [{role: 'user', content: 'still there?'}]})).choices[0]!.message.content).toBe('Echo: still there?')
  })

  it('without the credentials endpoint the enclave says KMS is unavailable (503), not a crash', async () => {
    const lone = startRuntime('enclave-server', ['--socket', join(dir, 'lone.sock'), '--engine', 'echo', '--nsm', 'simulator', '--lockfile', lock.good, '--sim-root-out', join(dir, 'lone.pem'), '--kms-region', 'us-east-1', '--kms-endpoint', kms.url, '--credentials-socket', join(dir, 'absent.sock')])
    try {
      await lone.waitFor('listening')
      roots.lone = insecureDevRoot(await readFile(join(dir, 'lone.pem'), 'utf8'))
      const client = kmsClientFor(`unix:${join(dir, 'lone.sock')}`, 'good', 'lone')
      await expect(client.chat({messages: [{role: 'user', content: 'hello'}]})).rejects.toMatchObject({code: 'CLIENT_ENCLAVE_UNAVAILABLE', details: {status: 503, serverCode: 'CHANNEL_KMS_UNAVAILABLE'}})
      expect(lone.proc.exitCode).toBeNull()
    } finally {
      lone.proc.kill('SIGKILL')
    }
  })

  // Last: it empties the enclave's KMS token bucket.
  it('a flood of requests that pass the free checks reaches KMS only as fast as the rate limit allows', async () => {
    const socket = join(dir, 'good.sock')
    const config = await attestedKey(socket, 'good')
    const valid = (await sealKmsRequest(config, new TextEncoder().encode('{}'), askerWrap().wrap)).message
    const decrypts = (): number => kmsLog.filter((l) => l.startsWith('kms:Decrypt')).length
    const before = decrypts()
    const started = Date.now()
    const statuses: Record<number, number> = {}
    for (let i = 0; i < 200; i++) {
      // Right framing, the attested key id, now, a fresh request id; the rest is noise.
      const body = new Uint8Array(valid)
      body.set(randomBytes(16), 3)
      body.set(randomBytes(body.length - 29), 29)
      const {status} = await post(socket, body)
      statuses[status] = (statuses[status] ?? 0) + 1
    }
    const seconds = (Date.now() - started) / 1000
    const reached = decrypts() - before
    console.log(`e2e: 200 garbage KMS-mode requests in ${seconds.toFixed(1)} s -> ${reached} KMS Decrypt calls; statuses ${JSON.stringify(statuses)}`)
    // The defaults: a burst of 20, then 5 a second.
    expect(reached).toBeLessThanOrEqual(20 + Math.ceil(5 * seconds))
    expect(statuses[429]).toBeGreaterThan(0)
    expect(server.proc.exitCode).toBeNull()
  })
})
