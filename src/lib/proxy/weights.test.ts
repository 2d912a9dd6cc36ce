// The parent's weights server: serves only the sealed files nle-sealed.json lists, on a 0600 Unix
// socket, within its limits; what crosses it (and its log) holds no plaintext byte of the weights.
import {request} from 'node:http'
import {stat, truncate, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {SEALED_MANIFEST_FILE, parseSealedManifest} from '../model/seal/format.js'
import {type FetchSealed, openSealedModel} from '../model/seal/open.js'
import {sealModel} from '../model/seal/seal.js'
import {weightsFromSocket} from '../model/seal/weights-client.js'
import {jsonLogger} from '../net/log.js'
import {expectCode} from '../../test-support/rejection.js'
import {CANARY, fakeKms, writeFakeModel} from '../../test-support/sealed.js'
import {tempDir} from '../../test-support/tmp.js'
import {type WeightsServer, startWeightsServer} from './weights.js'

let tmp: ReturnType<typeof tempDir>
let server: WeightsServer | undefined
let socketPath: string
let sealedDir: string
let log: string
let kms: ReturnType<typeof fakeKms>
let digest: string

beforeEach(async () => {
  tmp = tempDir('nle-weights-')
  kms = fakeKms()
  // Weights larger than the socket buffers: a reader that stops reading holds its stream.
  await writeFakeModel(join(tmp.dir, 'model'), {weightBytes: 3_000_000})
  sealedDir = join(tmp.dir, 'sealed')
  digest = (await sealModel({modelDir: join(tmp.dir, 'model'), outDir: sealedDir, generateDataKey: kms.generate, chunkBytes: 64 << 10})).modelDigest
  // Something else in the folder, and next to it, that must never be served.
  await writeFile(join(sealedDir, 'secret.txt'), CANARY)
  await writeFile(join(tmp.dir, 'outside.txt'), CANARY)
  socketPath = join(tmp.dir, 'weights.sock')
  log = ''
  server = await startWeightsServer({dir: sealedDir, socketPath, logger: jsonLogger({component: 'weights', write: (l) => (log += l)}), maxStreams: 2})
})
afterEach(async () => {
  await server?.close()
  tmp.cleanup()
})

function get(path: string, method = 'GET'): Promise<{status: number; body: Buffer}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath, path, method}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(parts)}))
    })
    req.on('error', reject)
    req.end()
  })
}

const sealed = async () => parseSealedManifest(await import('node:fs/promises').then((fs) => fs.readFile(join(sealedDir, SEALED_MANIFEST_FILE))))

describe('the weights server', () => {
  it('streams every listed file to the opener; the traffic and the log hold no canary byte', async () => {
    const manifest = await sealed()
    const traffic: Buffer[] = []
    const through = weightsFromSocket(socketPath)
    const recording: FetchSealed = async (f, i) => {
      const stream = await through(f, i)
      return (async function* () {
        for await (const piece of stream) {
          traffic.push(Buffer.from(piece))
          yield piece
        }
      })()
    }
    const opened = await openSealedModel({sealed: manifest, expectedModelDigest: digest, unwrap: kms.unwrap, fetch: recording})
    expect(opened.files.get('onnx/model.onnx_data')!.includes(CANARY)).toBe(true)
    const all = Buffer.concat(traffic)
    expect(all.length).toBe(manifest.files.reduce((s, f) => s + f.size + 16 * f.chunks.length, 0))
    expect(all.includes(CANARY)).toBe(false)
    expect(all.includes(CANARY.subarray(0, 10))).toBe(false)
    expect(log).toContain('"event":"weights"')
    expect(log.includes(CANARY.toString())).toBe(false)
    expect(server!.bytesServed()).toBe(all.length)
  })

  it('is a 0600 socket and serves nothing but the listed sealed files', async () => {
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600)
    for (const path of ['/v1/sealed/secret.txt', '/v1/sealed/../outside.txt', '/v1/sealed/%2e%2e%2foutside.txt', '/v1/sealed/nle-sealed.json', '/v1/sealed/', '/v1/sealed/0000.sealed/', '/v1/sealed/9999.sealed', '/secret.txt', '/']) {
      const r = await get(path)
      expect(r.status, path).toBe(404)
      expect(r.body.includes(CANARY), path).toBe(false)
    }
    expect((await get('/v1/sealed/0000.sealed', 'POST')).status).toBe(405)
    expect((await get('/v1/sealed/0000.sealed')).status).toBe(200)
  })

  it('streams at most maxStreams files at once (429 beyond)', async () => {
    // A reader that takes the headers and then reads nothing holds its stream open.
    const hold = (): Promise<import('node:http').IncomingMessage> =>
      new Promise((resolve, reject) => {
        const req = request({socketPath, path: '/v1/sealed/0002.sealed'}, resolve)
        req.on('error', reject)
        req.end()
      })
    const held = [await hold(), await hold()]
    expect(held.map((r) => r.statusCode)).toEqual([200, 200])
    expect((await get('/v1/sealed/0001.sealed')).status).toBe(429)
    for (const r of held) r.destroy()
  })

  it('a sealed file cut short on the host: SEAL_TRUNCATED; no server: SEAL_WEIGHTS_UNAVAILABLE', async () => {
    const manifest = await sealed()
    await truncate(join(sealedDir, '0002.sealed'), 5000)
    await expectCode(openSealedModel({sealed: manifest, expectedModelDigest: digest, unwrap: kms.unwrap, fetch: weightsFromSocket(socketPath)}), 'SEAL_TRUNCATED')
    await server!.close()
    server = undefined
    await expectCode(openSealedModel({sealed: manifest, expectedModelDigest: digest, unwrap: kms.unwrap, fetch: weightsFromSocket(socketPath)}), 'SEAL_WEIGHTS_UNAVAILABLE')
  })

  it('refuses to start on a folder without a valid sealed manifest', async () => {
    await expectCode(startWeightsServer({dir: tmp.dir, socketPath: join(tmp.dir, 'other.sock'), logger: jsonLogger({component: 'w', write: () => undefined})}), 'SEAL_MANIFEST_INVALID')
  })
})
