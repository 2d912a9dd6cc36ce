/**
 * Enclave memory with the model embedded in the EIF and with it sealed (model.sealed, issue 24):
 * the rule (4 x EIF + model + KV cache + runtime overhead, over each layout's EIF), the EIF swap
 * estimate checked against EIFs nle's writer really builds, and the gpt2-medium figures computed
 * from its manifest's sizes (no 1.4 GB file is written).
 */
import {mkdirSync, statSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {loadConfig} from '../config/load.js'
import {buildEifFromFiles} from '../eif/build.js'
import {cpioBuffer, cpioEntryBytes} from '../eif/cpio.js'
import {tempDir} from '../../test-support/tmp.js'
import {
  IMAGE_MODEL_DIR,
  MIB,
  RUNTIME_OVERHEAD_MIB,
  SEALED_MANIFEST_NAME,
  compareLayouts,
  embeddedModelEntryBytes,
  estimateSealedManifestBytes,
  kvCacheBytes,
  layoutRows,
  planEnclaveMemory,
} from './memory.js'
import {enclaveMemoryFor} from './resources.js'

const tmp = tempDir('nle-layouts-')
afterAll(() => tmp.cleanup())

function write(path: string, bytes: number | string): void {
  mkdirSync(dirname(path), {recursive: true})
  writeFileSync(path, typeof bytes === 'string' ? bytes : Buffer.alloc(bytes, 7))
}

describe('cpio entry sizes', () => {
  it('match the bytes the writer adds for a file or a folder, at every name and size alignment', async () => {
    const base = (await cpioBuffer([], {blockSize: 1})).length
    for (const name of ['a', 'ab', 'abc', 'abcd', 'rootfs/app/model/onnx/model.onnx']) {
      for (const size of [0, 1, 2, 3, 4, 5, 1023]) {
        const one = await cpioBuffer([{name, type: 'file', data: Buffer.alloc(size)}], {blockSize: 1})
        expect(one.length - base).toBe(cpioEntryBytes(name, size))
      }
      const dir = await cpioBuffer([{name, type: 'dir'}], {blockSize: 1})
      expect(dir.length - base).toBe(cpioEntryBytes(name))
    }
  })
})

describe('the rule', () => {
  const files = [
    {path: 'config.json', size: 500},
    {path: 'onnx/model.onnx', size: 1000 * MIB},
  ]
  const runtime = {modelBytes: 1000 * MIB + 500, kvCacheBytes: 300 * MIB}

  it('both layouts are 4 x their EIF + the model once + KV cache + runtime overhead; only the EIF differs', () => {
    const eifBytes = 1200 * MIB
    const c = compareLayouts({eifBytes, built: 'embedded', files, runtime, sealedManifestBytes: 10_000})
    expect(c.embedded).toEqual({eifBytes, estimated: false, eifRuleMiB: 4800, runtimeMiB: 1001 + 300 + RUNTIME_OVERHEAD_MIB, memoryMiB: 6358})
    // 4800 + 1001 + 300 + 256 = 6357, rounded up to 2 MiB hugepages.
    const sealedEif = eifBytes - embeddedModelEntryBytes(files) + cpioEntryBytes(`${IMAGE_MODEL_DIR}/${SEALED_MANIFEST_NAME}`, 10_000)
    expect(c.sealed).toMatchObject({eifBytes: sealedEif, estimated: true, runtimeMiB: c.embedded.runtimeMiB})
    // ~200 MiB of runtime left in the EIF: 4 x 200 MiB, not 4 x 1200 MiB.
    expect(c.sealed.eifRuleMiB).toBe(Math.ceil((4 * sealedEif) / MIB))
    expect(c.sealed.memoryMiB).toBe(planEnclaveMemory(sealedEif, runtime).memoryMiB)
    expect(c.embedded.memoryMiB - c.sealed.memoryMiB).toBeGreaterThanOrEqual(4 * 1000 - 2)
    expect(c.ratio).toEqual({eif: Math.round((sealedEif / eifBytes) * 1000) / 1000, memory: Math.round((c.sealed.memoryMiB / c.embedded.memoryMiB) * 1000) / 1000})
  })

  it('the estimate is the same from either side: a sealed build gives back the embedded figures', () => {
    const fromEmbedded = compareLayouts({eifBytes: 1200 * MIB, built: 'embedded', files, runtime})
    const fromSealed = compareLayouts({eifBytes: fromEmbedded.sealed.eifBytes, built: 'sealed', files, runtime})
    expect(fromSealed.embedded).toEqual({...fromEmbedded.embedded, estimated: true})
    expect(fromSealed.sealed).toEqual({...fromEmbedded.sealed, estimated: false})
    expect(layoutRows(fromSealed).map(([label]) => label)).toEqual(['model embedded', 'model sealed (this EIF)', 'sealed / embedded'])
  })

  it('the sealed manifest estimate grows with the chunks (about 40 bytes per MiB) and stays small', () => {
    const one = estimateSealedManifestBytes([{path: 'onnx/model.onnx', size: 4 * MIB}])
    const big = estimateSealedManifestBytes([{path: 'onnx/model.onnx', size: 1024 * 4 * MIB}])
    expect(big - one).toBe(1023 * 160)
    expect(big).toBeLessThan(256 * 1024)
  })
})

describe('the swap estimate against EIFs nle builds', () => {
  it('an embedded EIF minus the model entries plus the sealed manifest is the sealed EIF, to the ramdisk padding', async () => {
    const dir = join(tmp.dir, 'swap')
    for (const f of ['bzImage', 'init', 'nsm.ko']) write(join(dir, 'blobs', f), `placeholder ${f}\n`)
    const files = [
      {path: 'config.json', size: 503},
      {path: 'generation_config.json', size: 53},
      {path: 'onnx/model.onnx', size: 777_777},
      {path: 'tokenizer.json', size: 135_537},
    ]
    const sealedManifestBytes = estimateSealedManifestBytes(files)
    for (const layout of ['embedded', 'sealed'] as const) {
      const root = join(dir, layout)
      write(join(root, 'app', 'nle', 'server.js'), 40_000)
      write(join(root, 'app', 'start.sh'), '#!/bin/sh\n')
      write(join(root, 'app', 'model', 'nle-model.json'), 4_220)
      if (layout === 'embedded') for (const f of files) write(join(root, 'app', 'model', f.path), f.size)
      else write(join(root, 'app', 'model', SEALED_MANIFEST_NAME), sealedManifestBytes)
      await buildEifFromFiles({kernel: join(dir, 'blobs', 'bzImage'), cmdline: 'console=ttyS0', init: join(dir, 'blobs', 'init'), nsmKo: join(dir, 'blobs', 'nsm.ko'), rootfs: root, cmd: ['/bin/sh', '/app/start.sh'], env: [], output: join(dir, `${layout}.eif`), toolVersion: 'test'})
    }
    const embedded = statSync(join(dir, 'embedded.eif')).size
    const sealed = statSync(join(dir, 'sealed.eif')).size
    const runtime = {modelBytes: files.reduce((a, f) => a + f.size, 0), kvCacheBytes: 0}
    const fromEmbedded = compareLayouts({eifBytes: embedded, built: 'embedded', files, runtime, sealedManifestBytes})
    const fromSealed = compareLayouts({eifBytes: sealed, built: 'sealed', files, runtime, sealedManifestBytes})
    // The customer ramdisk is padded to 512 bytes; the estimate leaves that padding out.
    expect(Math.abs(fromEmbedded.sealed.eifBytes - sealed)).toBeLessThan(512)
    expect(Math.abs(fromSealed.embedded.eifBytes - embedded)).toBeLessThan(512)
    expect(embedded - sealed).toBeGreaterThan(900_000)
  })
})

/**
 * gpt2-medium as `nle model synth --preset gpt2-medium` writes it (the manifest's sizes, seed 1);
 * its config.json as written there (the KV cache's shape).
 */
const GPT2_MEDIUM_FILES = [
  {path: 'config.json', size: 503},
  {path: 'generation_config.json', size: 53},
  {path: 'onnx/model.onnx', size: 1_419_400_730},
  {path: 'special_tokens_map.json', size: 99},
  {path: 'tokenizer.json', size: 1_355_366},
  {path: 'tokenizer_config.json', size: 425},
]
const GPT2_MEDIUM_CONFIG = {model_type: 'gpt2', n_ctx: 1024, n_embd: 1024, n_head: 16, n_layer: 24, n_positions: 1024, vocab_size: 50257, tie_word_embeddings: true, use_cache: true}
/**
 * The EIF without the model's files, measured here: `nle build --builder native --json` of an
 * `nle init` project with `nle model synth --preset tiny` gave an EIF of NATIVE_TINY_EIF_BYTES
 * (pinned Node 24 binary, the enclave runtime package's dist files, placeholder kernel, init and
 * nsm.ko), of which the tiny model's files are TINY_FILES (its manifest). That dev image has no
 * node_modules; a bootable one also carries the runtime closure, which the same build reports
 * (`runtime`: 4,008 files, 74,956,473 bytes, pruned). The figures add it, each file with a cpio
 * header for a name of ~70 characters: the runtime part of a bootable EIF, less its real kernel.
 */
const NATIVE_TINY_EIF_BYTES = 131_966_108
const TINY_FILES = [
  {path: 'config.json', size: 496},
  {path: 'generation_config.json', size: 53},
  {path: 'onnx/model.onnx', size: 3_270_513},
  {path: 'special_tokens_map.json', size: 99},
  {path: 'tokenizer.json', size: 1_355_366},
  {path: 'tokenizer_config.json', size: 424},
]
const RUNTIME_CLOSURE = {files: 4_008, bytes: 74_956_473}
const closureEntryBytes = RUNTIME_CLOSURE.files * cpioEntryBytes(`rootfs/app/nle/node_modules/${'x'.repeat(42)}`) + RUNTIME_CLOSURE.bytes

describe('gpt2-medium, sealed vs embedded (from the manifest sizes)', () => {
  it('allocator figures through enclaveMemoryFor: memory and EIF targets of issue 24', async () => {
    const dir = join(tmp.dir, 'gpt2-medium')
    write(join(dir, 'nle.yaml'), 'version: 1\nname: medium\nmodel:\n  source: synth\n  preset: gpt2-medium\n')
    const totalBytes = GPT2_MEDIUM_FILES.reduce((a, f) => a + f.size, 0)
    write(join(dir, 'model', 'nle-model.json'), JSON.stringify({schemaVersion: 1, dtype: 'fp32', files: GPT2_MEDIUM_FILES.map((f) => ({...f, sha256: '0'.repeat(64)})), totalBytes}))
    write(join(dir, 'model', 'config.json'), JSON.stringify(GPT2_MEDIUM_CONFIG))
    const runtimeEifBytes = NATIVE_TINY_EIF_BYTES - embeddedModelEntryBytes(TINY_FILES) + closureEntryBytes
    const embeddedEif = runtimeEifBytes + embeddedModelEntryBytes(GPT2_MEDIUM_FILES)

    const memory = await enclaveMemoryFor(await loadConfig(join(dir, 'nle.yaml')), embeddedEif)
    // KV cache: proxy.concurrency 4 sequences x 1024 tokens x 24 layers x 2 x 16 heads x 64 x 4 bytes.
    expect(memory.runtime).toMatchObject({modelBytes: totalBytes, kvCacheBytes: kvCacheBytes({numLayers: 24, kvHeads: 16, headDim: 64, contextTokens: 1024, sequences: 4})})
    const c = memory.layouts!
    expect(c.built).toBe('embedded')
    expect(c.embedded.memoryMiB).toBe(memory.memoryMiB)
    console.log(`gpt2-medium (fp32, ${totalBytes} bytes of files; runtime part of the EIF ${runtimeEifBytes} bytes):`)
    for (const [label, value] of layoutRows(c)) console.log(`  ${label}: ${value}`)
    console.log(`  sealed manifest (estimated) ${c.swap.sealedManifestBytes} bytes; model entries ${c.swap.modelEntryBytes} bytes`)
    expect(c.ratio.eif).toBeLessThanOrEqual(0.15)
    expect(c.ratio.memory).toBeLessThanOrEqual(0.4)

    // The same project built sealed: its EIF is the sealed figure, and the embedded one comes back.
    write(join(dir, 'nle.yaml'), 'version: 1\nname: medium\nmodel:\n  source: synth\n  preset: gpt2-medium\n  sealed: true\n')
    const sealed = await enclaveMemoryFor(await loadConfig(join(dir, 'nle.yaml')), c.sealed.eifBytes)
    expect(sealed.memoryMiB).toBe(c.sealed.memoryMiB)
    expect(sealed.layouts).toMatchObject({built: 'sealed', ratio: c.ratio, embedded: {eifBytes: embeddedEif, memoryMiB: c.embedded.memoryMiB, estimated: true}})
  })
})
