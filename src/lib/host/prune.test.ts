import {existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {isForeignBinary, isRemovedByPrune, isUnusedPart, pruneForeignBinaries, verifyLoads} from './prune.js'

const linuxX64 = {platform: 'linux', arch: 'x64'}
let dir: string | undefined
afterEach(() => {
  if (dir) rmSync(dir, {recursive: true, force: true})
  dir = undefined
})

const file = (p: string, content = 'x'): void => {
  mkdirSync(join(p, '..'), {recursive: true})
  writeFileSync(p, content)
}

/** A node_modules with onnxruntime-node's and koffi's layouts (a few bytes per binary). */
function fakeNodeModules(ortPlatforms: string[], koffiTriplets: string[]): string {
  dir = mkdtempSync(join(tmpdir(), 'nle-prune-'))
  const nm = join(dir, 'node_modules')
  const ort = join(nm, 'onnxruntime-node')
  file(join(ort, 'package.json'), JSON.stringify({name: 'onnxruntime-node', main: 'index.js'}))
  file(join(ort, 'index.js'), 'module.exports = {ok: true}\n')
  for (const p of ortPlatforms) file(join(ort, 'bin', 'napi-v6', p, 'onnxruntime_binding.node'), 'binary')
  const koffi = join(nm, 'koffi')
  file(join(koffi, 'package.json'), JSON.stringify({name: 'koffi', main: 'index.js'}))
  file(join(koffi, 'index.js'), 'module.exports = {}\n')
  for (const t of koffiTriplets) file(join(koffi, 'build', 'koffi', t, 'koffi.node'), 'binary')
  return nm
}

describe('isForeignBinary', () => {
  it('is true only inside another platform binaries of onnxruntime-node and koffi', () => {
    const foreign = (p: string): boolean => isForeignBinary(p, linuxX64)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/bin/napi-v6/darwin')).toBe(true)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/bin/napi-v6/darwin/arm64/libonnxruntime.1.dylib')).toBe(true)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/bin/napi-v6/linux/arm64')).toBe(true)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/bin/napi-v6/win32/x64/onnxruntime.dll')).toBe(true)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/bin/napi-v6/linux')).toBe(false)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1')).toBe(false)
    expect(foreign('/app/nle/node_modules/onnxruntime-node/dist/binding.js')).toBe(false)
    expect(foreign('C:\\x\\node_modules\\koffi\\build\\koffi\\win32_x64\\koffi.node')).toBe(true)
    expect(foreign('/x/node_modules/koffi/build/koffi/linux_x64/koffi.node')).toBe(false)
    expect(foreign('/x/node_modules/koffi/build/koffi/musl_x64/koffi.node')).toBe(false)
    expect(foreign('/x/node_modules/koffi/build/koffi/linux_arm64')).toBe(true)
    // Nested installs count; look-alike paths outside node_modules do not.
    expect(foreign('/x/node_modules/@huggingface/transformers/node_modules/onnxruntime-node/bin/napi-v6/darwin')).toBe(true)
    expect(foreign('/src/onnxruntime-node/bin/napi-v6/darwin')).toBe(false)
    expect(isForeignBinary('/x/node_modules/onnxruntime-node/bin/napi-v6/linux/x64', {platform: 'linux', arch: 'arm64'})).toBe(true)
  })
})

describe('pruneForeignBinaries', () => {
  it('keeps only the target platform binaries, removes emptied platform folders, and the rest still loads', () => {
    const nm = fakeNodeModules(['linux/x64', 'linux/arm64', 'darwin/arm64', 'win32/x64', 'win32/arm64'], ['linux_x64', 'musl_x64', 'linux_arm64', 'darwin_arm64', 'win32_x64'])
    const report = pruneForeignBinaries(nm, linuxX64)
    const ort = join(nm, 'onnxruntime-node', 'bin', 'napi-v6')
    expect(existsSync(join(ort, 'linux', 'x64', 'onnxruntime_binding.node'))).toBe(true)
    for (const gone of ['linux/arm64', 'darwin', 'win32']) expect(existsSync(join(ort, gone)), gone).toBe(false)
    const koffi = join(nm, 'koffi', 'build', 'koffi')
    expect(existsSync(join(koffi, 'linux_x64'))).toBe(true)
    expect(existsSync(join(koffi, 'musl_x64'))).toBe(true)
    for (const gone of ['linux_arm64', 'darwin_arm64', 'win32_x64']) expect(existsSync(join(koffi, gone)), gone).toBe(false)
    expect(report.packages.map((p) => [p.name, p.kept])).toEqual([
      ['onnxruntime-node', ['bin/napi-v6/linux/x64']],
      ['koffi', ['build/koffi/linux_x64', 'build/koffi/musl_x64']],
    ])
    expect(report.packages[0]!.removed).toHaveLength(4)
    expect(report.removedBytes).toBe(7 * 'binary'.length)
    expect(() => verifyLoads(nm, report)).not.toThrow()
    // Idempotent.
    expect(pruneForeignBinaries(nm, linuxX64).removedBytes).toBe(0)
  })

  it('refuses, removing nothing, when a package has no binary for the target platform', () => {
    const nm = fakeNodeModules(['darwin/arm64', 'win32/x64'], ['linux_x64'])
    expect(() => pruneForeignBinaries(nm, linuxX64)).toThrow(expect.objectContaining({code: 'HOST_PRUNE_FAILED'}))
    expect(existsSync(join(nm, 'onnxruntime-node', 'bin', 'napi-v6', 'darwin', 'arm64'))).toBe(true)
  })

  it('does nothing when the packages are not installed', () => {
    dir = mkdtempSync(join(tmpdir(), 'nle-prune-'))
    expect(pruneForeignBinaries(join(dir, 'node_modules'), linuxX64)).toEqual({target: linuxX64, packages: [], parts: [], removedBytes: 0})
  })

  it('verifyLoads reports a package that no longer loads', () => {
    const nm = fakeNodeModules(['linux/x64'], ['linux_x64'])
    writeFileSync(join(nm, 'koffi', 'index.js'), 'throw new Error("no koffi.node for this platform")\n')
    const report = pruneForeignBinaries(nm, linuxX64)
    expect(() => verifyLoads(nm, report)).toThrow(/koffi does not load after pruning: no koffi.node/)
  })
})

describe('unused parts (protobufjs\'s command-line tools)', () => {
  it('removes protobufjs/cli and bin with their bundled packages and .bin links, keeps the library loadable', () => {
    const nm = fakeNodeModules(['linux/x64'], ['linux_x64'])
    const pb = join(nm, 'protobufjs')
    file(join(pb, 'package.json'), JSON.stringify({name: 'protobufjs', main: 'index.js'}))
    file(join(pb, 'index.js'), 'module.exports = {lib: true}\n')
    file(join(pb, 'bin', 'pbjs'), '#!/usr/bin/env node\nrequire("../cli/pbjs")\n')
    file(join(pb, 'cli', 'pbjs.js'), 'tool')
    file(join(pb, 'cli', 'node_modules', 'jsdoc', 'package.json'), '{"name":"jsdoc"}')
    mkdirSync(join(nm, '.bin'))
    symlinkSync('../protobufjs/bin/pbjs', join(nm, '.bin', 'pbjs'))
    expect(isUnusedPart('node_modules/protobufjs/cli/node_modules/jsdoc/package.json')).toBe(true)
    expect(isUnusedPart('node_modules/protobufjs/index.js')).toBe(false)
    expect(isUnusedPart('node_modules/not-protobufjs/cli/x.js')).toBe(false)
    expect(isRemovedByPrune('node_modules/onnxruntime-node/bin/napi-v6/darwin/arm64/x.node', linuxX64)).toBe(true)

    const report = pruneForeignBinaries(nm, linuxX64)
    expect(report.parts.map((p) => `${p.name}/${p.path}`)).toEqual(['protobufjs/cli', 'protobufjs/bin'])
    expect(existsSync(join(pb, 'cli'))).toBe(false)
    expect(existsSync(join(pb, 'bin'))).toBe(false)
    expect(existsSync(join(pb, 'index.js'))).toBe(true)
    expect(() => lstatSync(join(nm, '.bin', 'pbjs'))).toThrow()
    expect(() => verifyLoads(nm, report)).not.toThrow()
  })
})
