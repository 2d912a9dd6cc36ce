import {createCipheriv} from 'node:crypto'
import {readFile, readdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {expectCode} from '../../../test-support/rejection.js'
import {CANARY, fakeKms, fetchFromDir, writeFakeModel} from '../../../test-support/sealed.js'
import {tempDir} from '../../../test-support/tmp.js'
import {MANIFEST_FILE} from '../manifest.js'
import {SEALED_MANIFEST_FILE, type SealedManifest, TAG_BYTES, chunkAad, chunkNonce, parseSealedManifest, sha256} from './format.js'
import {type FetchSealed, openSealedModel} from './open.js'
import {sealModel} from './seal.js'

const CHUNK = 4096

let tmp: ReturnType<typeof tempDir>
let modelDir: string
let outDir: string
let kms: ReturnType<typeof fakeKms>

beforeEach(async () => {
  tmp = tempDir('nle-seal-')
  modelDir = join(tmp.dir, 'model')
  outDir = join(tmp.dir, 'model.sealed')
  kms = fakeKms()
  await writeFakeModel(modelDir)
})
afterEach(() => tmp.cleanup())

async function seal(): Promise<{sealed: SealedManifest; digest: string}> {
  const r = await sealModel({modelDir, outDir, generateDataKey: kms.generate, chunkBytes: CHUNK})
  const sealed = parseSealedManifest(await readFile(r.manifestPath))
  return {sealed, digest: r.modelDigest}
}

const open = (sealed: SealedManifest, digest: string, fetch: FetchSealed = fetchFromDir(outDir), unwrap = kms.unwrap) =>
  openSealedModel({sealed, expectedModelDigest: digest, unwrap, fetch})

/** Serve the sealed files with some chunks replaced: `edit(fileIndex, chunks)` returns the chunks to send. */
function editedFetch(sealed: SealedManifest, edit: (file: number, chunks: Buffer[], all: Buffer[][]) => Buffer[]): FetchSealed {
  return async (_file, index) => {
    const all: Buffer[][] = []
    for (const f of sealed.files) {
      const bytes = await readFile(join(outDir, f.sealed))
      const chunks: Buffer[] = []
      for (let at = 0; at < bytes.length; at += CHUNK + TAG_BYTES) chunks.push(bytes.subarray(at, Math.min(bytes.length, at + CHUNK + TAG_BYTES)))
      all.push(chunks)
    }
    const chunks = edit(index, all[index]!, all)
    return (async function* () {
      for (const c of chunks) yield c
    })()
  }
}

const weights = (s: SealedManifest): number => s.files.findIndex((f) => f.path === 'onnx/model.onnx_data')

describe('sealModel / openSealedModel', () => {
  it('round-trips every file, and the sealed folder holds no canary byte', async () => {
    const {sealed, digest} = await seal()
    expect(sealed.files.map((f) => f.path)).toEqual(['config.json', 'onnx/model.onnx', 'onnx/model.onnx_data', 'tokenizer.json', 'tokenizer_config.json'])
    expect(sealed.files[weights(sealed)]!.chunks.length).toBe(Math.ceil(50_000 / CHUNK))
    expect(sealed.key.encryptionContext).toEqual({'nle:model-manifest': digest})
    for (const name of await readdir(outDir)) {
      const bytes = await readFile(join(outDir, name))
      expect(bytes.includes(CANARY), name).toBe(false)
      expect(bytes.includes(CANARY.subarray(0, 12)), name).toBe(false)
    }
    const opened = await open(sealed, digest)
    for (const f of opened.manifest.files) expect(opened.files.get(f.path)!.equals(await readFile(join(modelDir, f.path)))).toBe(true)
    expect(opened.manifestBytes.equals(await readFile(join(modelDir, MANIFEST_FILE)))).toBe(true)
    expect(kms.calls).toEqual({generate: 1, decrypt: 1})
  })

  it('writes nothing when the source changed since it was saved (SEAL_SOURCE_INVALID), and refuses an occupied output', async () => {
    const w = join(modelDir, 'onnx', 'model.onnx')
    const bytes = await readFile(w)
    bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100)
    await writeFile(w, bytes)
    await expectCode(sealModel({modelDir, outDir, generateDataKey: kms.generate, chunkBytes: CHUNK}), 'SEAL_SOURCE_INVALID')
    await expect(readdir(outDir)).rejects.toThrow()
    expect((await readdir(tmp.dir)).filter((n) => n.includes('sealing'))).toEqual([])
    bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100)
    await writeFile(w, bytes)
    await seal()
    await expectCode(sealModel({modelDir, outDir, generateDataKey: kms.generate, chunkBytes: CHUNK}), 'SEAL_OUTPUT_EXISTS')
    await sealModel({modelDir, outDir, generateDataKey: kms.generate, chunkBytes: CHUNK, force: true})
  })

  it('refuses a model folder without a manifest and an output inside the model', async () => {
    const empty = tempDir('nle-seal-empty-')
    try {
      await expectCode(sealModel({modelDir: empty.dir, outDir, generateDataKey: kms.generate}), 'SEAL_SOURCE_INVALID')
    } finally {
      empty.cleanup()
    }
    await expectCode(sealModel({modelDir, outDir: join(modelDir, 'sealed'), generateDataKey: kms.generate}), 'SEAL_OUTPUT_EXISTS')
  })

  it('a changed byte in a chunk: SEAL_CHUNK_TAMPERED', async () => {
    const {sealed, digest} = await seal()
    const w = weights(sealed)
    await expectCode(
      open(sealed, digest, editedFetch(sealed, (i, chunks) => (i === w ? chunks.map((c, k) => (k === 3 ? Buffer.from(c).fill(c[0]! ^ 1, 0, 1) : c)) : chunks))),
      'SEAL_CHUNK_TAMPERED',
    )
    // On disk, too (a flipped tag byte).
    const path = join(outDir, sealed.files[w]!.sealed)
    const bytes = await readFile(path)
    bytes.writeUInt8(bytes.readUInt8(CHUNK + 3) ^ 0x80, CHUNK + 3)
    await writeFile(path, bytes)
    await expectCode(open(sealed, digest), 'SEAL_CHUNK_TAMPERED')
  })

  it('a forged chunk whose digest the manifest lists still does not authenticate: SEAL_CHUNK_TAMPERED', async () => {
    const {sealed, digest} = await seal()
    const w = weights(sealed)
    const forged = Buffer.alloc(CHUNK + TAG_BYTES, 7)
    const edited = structuredClone(sealed)
    edited.files[w]!.chunks[2] = sha256(forged)
    await expectCode(open(edited, digest, editedFetch(sealed, (i, chunks) => (i === w ? chunks.map((c, k) => (k === 2 ? forged : c)) : chunks))), 'SEAL_CHUNK_TAMPERED')
  })

  it('chunks reordered or one dropped: SEAL_CHUNK_REORDERED', async () => {
    const {sealed, digest} = await seal()
    const w = weights(sealed)
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c) => (i === w ? [c[0]!, c[2]!, c[1]!, ...c.slice(3)] : c))), 'SEAL_CHUNK_REORDERED')
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c) => (i === w ? [c[0]!, ...c.slice(2)] : c))), 'SEAL_CHUNK_REORDERED')
  })

  it('a chunk from another file, or the files swapped: SEAL_CHUNK_SWAPPED', async () => {
    const {sealed, digest} = await seal()
    const w = weights(sealed)
    const graph = sealed.files.findIndex((f) => f.path === 'onnx/model.onnx')
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c, all) => (i === graph ? [c[0]!, all[w]![1]!, ...c.slice(2)] : c))), 'SEAL_CHUNK_SWAPPED')
    const cfg = sealed.files.findIndex((f) => f.path === 'tokenizer.json')
    // Two files of the same size swapped whole.
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c, all) => (i === cfg ? all[cfg + 1]! : c))), 'SEAL_CHUNK_SWAPPED')
  })

  it('the last chunk dropped, the file cut inside a chunk, or bytes appended: SEAL_TRUNCATED', async () => {
    const {sealed, digest} = await seal()
    const w = weights(sealed)
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c) => (i === w ? c.slice(0, -1) : c))), 'SEAL_TRUNCATED')
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c) => (i === w ? [...c.slice(0, 2), c[2]!.subarray(0, 100)] : c))), 'SEAL_TRUNCATED')
    await expectCode(open(sealed, digest, editedFetch(sealed, (i, c) => (i === w ? [...c, Buffer.from([0])] : c))), 'SEAL_TRUNCATED')
  })

  it('a sealed manifest of another model: SEAL_MODEL_MISMATCH; one whose files or context were edited: SEAL_MANIFEST_INVALID', async () => {
    const {sealed, digest} = await seal()
    const other = tempDir('nle-seal-other-')
    try {
      await writeFakeModel(join(other.dir, 'model'), {seed: 2})
      const r = await sealModel({modelDir: join(other.dir, 'model'), outDir: join(other.dir, 'sealed'), generateDataKey: kms.generate, chunkBytes: CHUNK})
      const foreign = parseSealedManifest(await readFile(r.manifestPath))
      await expectCode(open(foreign, digest, fetchFromDir(join(other.dir, 'sealed'))), 'SEAL_MODEL_MISMATCH')
      // Its wrapped key under this model's context: KMS refuses it.
      const mixed = {...sealed, key: {...foreign.key, encryptionContext: sealed.key.encryptionContext}}
      await expectCode(open(mixed, digest), 'SEAL_KEY_REFUSED')
    } finally {
      other.cleanup()
    }
    const edited = structuredClone(sealed)
    edited.files[0]!.size += 1
    await expectCode(open(edited, digest), 'SEAL_MANIFEST_INVALID')
    const ctx = structuredClone(sealed)
    ctx.key.encryptionContext = {'nle:model-manifest': 'sha256:' + '0'.repeat(64)}
    await expectCode(open(ctx, digest), 'SEAL_MANIFEST_INVALID')
  })

  it('KMS refusing the attestation: SEAL_KEY_REFUSED; KMS unreachable: SEAL_KEY_UNAVAILABLE', async () => {
    const {sealed, digest} = await seal()
    await expectCode(open(sealed, digest, fetchFromDir(outDir), fakeKms({refuse: true}).unwrap), 'SEAL_KEY_REFUSED')
    await expectCode(open(sealed, digest, fetchFromDir(outDir), fakeKms().unwrap), 'SEAL_KEY_REFUSED')
    await expectCode(
      open(sealed, digest, fetchFromDir(outDir), () => Promise.reject(new Error('ECONNREFUSED'))),
      'SEAL_KEY_UNAVAILABLE',
    )
  })

  it('chunks that authenticate but open to bytes other than the manifest\'s: SEAL_FILE_DIGEST_MISMATCH', async () => {
    // A sealer that encrypted other bytes than the manifest lists for tokenizer.json (the key is the test's own).
    const {sealed, digest} = await seal()
    const key = Buffer.alloc(32, 9)
    const edited = structuredClone(sealed)
    const bodies: Buffer[][] = []
    for (const [i, f] of edited.files.entries()) {
      const plain = f.path === 'tokenizer.json' ? Buffer.from('[]') : await readFile(join(modelDir, f.path))
      const chunks: Buffer[] = []
      for (let k = 0; k < f.chunks.length; k++) {
        const c = createCipheriv('aes-256-gcm', key, chunkNonce(i, k), {authTagLength: 16}).setAAD(chunkAad(digest, i, f.path, k, k === f.chunks.length - 1))
        chunks.push(Buffer.concat([c.update(plain.subarray(k * CHUNK, (k + 1) * CHUNK)), c.final(), c.getAuthTag()]))
      }
      f.chunks = chunks.map((c) => sha256(c))
      bodies.push(chunks)
    }
    const fetch: FetchSealed = async (_f, index) =>
      (async function* () {
        yield* bodies[index]!
      })()
    await expectCode(openSealedModel({sealed: edited, expectedModelDigest: digest, unwrap: async () => Buffer.from(key), fetch}), 'SEAL_FILE_DIGEST_MISMATCH')
  })

  it('parseSealedManifest refuses what is not the format', () => {
    expect(() => parseSealedManifest(Buffer.from('nope'))).toThrow()
    expect(() => parseSealedManifest(Buffer.from('{"format":"nle-sealed-model","version":2}'))).toThrow()
  })

  it('the sealed manifest name is fixed', async () => {
    await seal()
    expect((await readdir(outDir)).sort()).toEqual(['0000.sealed', '0001.sealed', '0002.sealed', '0003.sealed', '0004.sealed', SEALED_MANIFEST_FILE])
  })
})
