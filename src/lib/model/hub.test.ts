// The hub download path against a local HTTP server on 127.0.0.1 that serves a model folder the
// way the Hugging Face Hub does: the revision API with LFS oids, resolve URLs that redirect LFS
// files to a "CDN" path, Range requests, bearer-token auth. Loopback only.
import {createHash} from 'node:crypto'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {type DownloadProgress} from './hub.js'
import {readManifest} from './manifest.js'
import {saveModel} from './save.js'
import {synthModel} from './synth.js'
import {expectCode} from '../../test-support/rejection.js'

const REPO = 'nle-test/tiny-gpt2'
const COMMIT = 'c0ffee0000000000000000000000000000000001'
const TOKEN = 'hf_test_token'

interface FakeHub {
  server: Server
  endpoint: string
  requests: {url: string; range: string | undefined; auth: boolean}[]
  /** Paths whose next full download is cut in the middle. */
  cut: Set<string>
  /** Paths whose listed LFS oid is wrong. */
  wrongOid: Set<string>
}

let root: string
let modelDir: string
let files: Map<string, Buffer>
let hub: FakeHub

async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, {withFileTypes: true})) {
      const full = join(d, e.name)
      if (e.isDirectory()) await walk(full)
      else out.set(relative(dir, full), await readFile(full))
    }
  }
  await walk(dir)
  return out
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const isLfs = (path: string): boolean => path.endsWith('.onnx') || path === 'tokenizer.json'

function sendBytes(req: IncomingMessage, res: ServerResponse, body: Buffer, cutHalf: boolean): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  const start = range ? Number(range[1]) : 0
  const slice = body.subarray(start)
  res.writeHead(range ? 206 : 200, {
    'content-length': String(slice.length),
    'accept-ranges': 'bytes',
    ...(range ? {'content-range': `bytes ${start}-${body.length - 1}/${body.length}`} : {}),
  })
  if (cutHalf) {
    res.write(slice.subarray(0, Math.floor(slice.length / 2)), () => res.destroy())
    return
  }
  res.end(slice)
}

async function startHub(): Promise<FakeHub> {
  const state: Omit<FakeHub, 'server' | 'endpoint'> = {requests: [], cut: new Set(), wrongOid: new Set()}
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const auth = req.headers.authorization === `Bearer ${TOKEN}`
    state.requests.push({url: url.pathname, range: req.headers.range, auth})
    if (!auth && !url.pathname.startsWith('/cdn/')) {
      res.writeHead(401).end('{"error":"Invalid credentials"}')
      return
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname)
    if (api) {
      if (api[1] !== REPO || url.searchParams.get('blobs') !== 'true') {
        res.writeHead(404).end('{"error":"Repository not found"}')
        return
      }
      const siblings = [...files].map(([path, body]) => ({
        rfilename: path,
        size: body.length,
        ...(isLfs(path) ? {lfs: {sha256: state.wrongOid.has(path) ? sha256(Buffer.from('other')) : sha256(body), size: body.length, pointerSize: 134}} : {}),
      }))
      res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({id: REPO, sha: COMMIT, siblings}))
      return
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname)
    if (resolve) {
      const path = decodeURIComponent(resolve[3] as string)
      const body = files.get(path)
      if (resolve[1] !== REPO || resolve[2] !== COMMIT || body === undefined) {
        res.writeHead(404).end('Entry not found')
        return
      }
      if (isLfs(path)) {
        res.writeHead(302, {location: `/cdn/${sha256(body)}?path=${encodeURIComponent(path)}`}).end()
        return
      }
      sendBytes(req, res, body, false)
      return
    }
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname)
    const path = url.searchParams.get('path') ?? ''
    const body = files.get(path)
    if (cdn && body !== undefined && sha256(body) === cdn[1]) {
      const cutHalf = state.cut.has(path) && req.headers.range === undefined
      if (cutHalf) state.cut.delete(path)
      sendBytes(req, res, body, cutHalf)
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const {port} = server.address() as AddressInfo
  return {server, endpoint: `http://127.0.0.1:${port}`, ...state}
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nle-hub-'))
  modelDir = join(root, 'repo')
  await synthModel({preset: 'tiny', outDir: modelDir, seed: 3})
  files = await readTree(modelDir)
  hub = await startHub()
})

afterAll(async () => {
  await new Promise((r) => hub?.server.close(r))
  await rm(root, {recursive: true, force: true})
})

describe('nle model save from the hub', () => {
  it('downloads a revision, resumes a dropped transfer with Range, checks LFS oids and writes the manifest', async () => {
    const out = join(root, 'out-1')
    hub.cut.add('onnx/model.onnx')
    hub.requests.length = 0
    const progress: DownloadProgress[] = []
    const r = await saveModel({source: REPO, outDir: out, hub: {endpoint: hub.endpoint, token: TOKEN}, onProgress: (p) => progress.push(p)})
    expect(r.manifest.source).toEqual({kind: 'hub', endpoint: hub.endpoint, repo: REPO, revision: 'main', commit: COMMIT})
    for (const f of r.manifest.files) {
      const original = files.get(f.path) as Buffer
      expect(f.sha256).toBe(sha256(original))
      expect(f.size).toBe(original.length)
      expect(sha256(await readFile(join(out, f.path)))).toBe(sha256(original))
    }
    expect(r.manifest.files.map((f) => f.path)).toContain('onnx/model.onnx')
    // The first transfer of model.onnx was cut; the retry asked for the rest only.
    const onnxSize = (files.get('onnx/model.onnx') as Buffer).length
    const ranged = hub.requests.filter((q) => q.url.startsWith('/cdn/') && q.range !== undefined)
    expect(ranged).toHaveLength(1)
    const from = Number(/bytes=(\d+)-/.exec(ranged[0]!.range!)![1])
    expect(from).toBeGreaterThan(0)
    expect(from).toBeLessThan(onnxSize)
    expect(progress.some((p) => p.file === 'onnx/model.onnx' && p.resumedFrom === from)).toBe(true)
    expect(progress.at(-1)?.received).toBe(progress.at(-1)?.total)
    // Every file was fetched at the resolved commit, with the token.
    expect(hub.requests.filter((q) => q.url.includes('/resolve/')).every((q) => q.url.includes(`/resolve/${COMMIT}/`) && q.auth)).toBe(true)
    expect((await readManifest(out)).files).toEqual(r.manifest.files)
  })

  it('resumes a download left by an earlier run, and takes HF_ENDPOINT and HF_TOKEN from the environment', async () => {
    const out = join(root, 'out-2')
    const onnx = files.get('onnx/model.onnx') as Buffer
    await mkdir(join(out, 'onnx'), {recursive: true})
    await writeFile(join(out, 'onnx', 'model.onnx.incomplete'), onnx.subarray(0, 1000))
    hub.requests.length = 0
    const saved = {endpoint: process.env.HF_ENDPOINT, token: process.env.HF_TOKEN}
    process.env.HF_ENDPOINT = hub.endpoint
    process.env.HF_TOKEN = TOKEN
    try {
      await saveModel({source: REPO, outDir: out})
    } finally {
      if (saved.endpoint === undefined) delete process.env.HF_ENDPOINT
      else process.env.HF_ENDPOINT = saved.endpoint
      if (saved.token === undefined) delete process.env.HF_TOKEN
      else process.env.HF_TOKEN = saved.token
    }
    expect(hub.requests.find((q) => q.url.startsWith('/cdn/') && q.range !== undefined)?.range).toBe('bytes=1000-')
    expect(sha256(await readFile(join(out, 'onnx', 'model.onnx')))).toBe(sha256(onnx))
    await expect(stat(join(out, 'onnx', 'model.onnx.incomplete'))).rejects.toThrow()
  })

  it('rejects a file whose content does not match its LFS oid, and keeps nothing of it', async () => {
    const out = join(root, 'out-3')
    hub.wrongOid.add('onnx/model.onnx')
    try {
      await expectCode(saveModel({source: REPO, outDir: out, hub: {endpoint: hub.endpoint, token: TOKEN}}), 'MODEL_HASH_MISMATCH')
    } finally {
      hub.wrongOid.clear()
    }
    await expect(stat(join(out, 'onnx', 'model.onnx'))).rejects.toThrow()
    await expect(stat(join(out, 'onnx', 'model.onnx.incomplete'))).rejects.toThrow()
  })

  it('gives distinct codes for a missing token, an unknown repo, a missing dtype and an unreachable hub', async () => {
    const out = join(root, 'out-4')
    await expectCode(saveModel({source: REPO, outDir: out, hub: {endpoint: hub.endpoint, token: 'wrong'}}), 'MODEL_HUB_UNAUTHORIZED')
    await expectCode(saveModel({source: 'nle-test/absent', outDir: out, hub: {endpoint: hub.endpoint, token: TOKEN}}), 'MODEL_HUB_NOT_FOUND')
    await expectCode(saveModel({source: REPO, dtype: 'q8', outDir: out, hub: {endpoint: hub.endpoint, token: TOKEN}}), 'MODEL_DTYPE_UNAVAILABLE')
    // A port that was just closed: nothing listens there.
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const {port} = closed.address() as AddressInfo
    await new Promise((r) => closed.close(r))
    await expectCode(saveModel({source: REPO, outDir: out, hub: {endpoint: `http://127.0.0.1:${port}`, token: TOKEN}}), 'MODEL_HUB_UNREACHABLE')
  })
})
