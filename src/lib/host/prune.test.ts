import {existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {holdsNoCode, isForeignBinary, isRemovedByPrune, isUnusedPart, pruneForeignBinaries, unloadedEntries, verifyLoads} from './prune.js'

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

describe('packages nothing loads at run time (install-script-only, type-only)', () => {
  it('unloadedEntries: cuts onnxruntime-node\'s install-script edges and edges to type-only packages; a package reached another way stays', () => {
    const entries = {
      '': {dependencies: {'onnxruntime-node': '1', protobufjs: '7', x: '1'}},
      'node_modules/onnxruntime-node': {dependencies: {'onnxruntime-common': '1', 'adm-zip': '0', 'global-agent': '4'}},
      'node_modules/onnxruntime-common': {},
      'node_modules/adm-zip': {},
      'node_modules/global-agent': {dependencies: {semver: '7', matcher: '4'}},
      'node_modules/matcher': {dependencies: {'escape-string-regexp': '4'}},
      'node_modules/escape-string-regexp': {},
      'node_modules/semver': {},
      'node_modules/x': {dependencies: {semver: '7'}},
      'node_modules/protobufjs': {dependencies: {'@types/node': '20', long: '5'}},
      'node_modules/@types/node': {dependencies: {'undici-types': '6'}},
      'node_modules/undici-types': {},
      'node_modules/long': {},
      'node_modules/x/node_modules/long': {},
    }
    const typeOnly = (at: string): boolean => at === 'node_modules/@types/node'
    expect(unloadedEntries(entries, entries[''], typeOnly)).toEqual([
      'node_modules/@types/node',
      'node_modules/adm-zip',
      'node_modules/escape-string-regexp',
      'node_modules/global-agent',
      'node_modules/matcher',
      'node_modules/undici-types',
      'node_modules/x/node_modules/long',
    ])
    // Without the type-only cut, only the install-script edges are cut.
    expect(unloadedEntries(entries, entries[''], () => false)).toEqual(['node_modules/adm-zip', 'node_modules/escape-string-regexp', 'node_modules/global-agent', 'node_modules/matcher', 'node_modules/x/node_modules/long'])
  })

  it('holdsNoCode: declarations, Markdown and package.json only', () => {
    dir = mkdtempSync(join(tmpdir(), 'nle-prune-'))
    file(join(dir, 'types', 'package.json'), '{}')
    file(join(dir, 'types', 'index.d.ts'))
    file(join(dir, 'types', 'ts5.6', 'globals.d.ts'))
    file(join(dir, 'types', 'README.md'))
    expect(holdsNoCode(join(dir, 'types'))).toBe(true)
    file(join(dir, 'types', 'lib', 'x.cjs'))
    expect(holdsNoCode(join(dir, 'types'))).toBe(false)
    file(join(dir, 'data', 'package.json'), '{}')
    file(join(dir, 'data', 'table.json'), '{}')
    expect(holdsNoCode(join(dir, 'data'))).toBe(false)
  })

  /** An installed runtime: package.json next to node_modules, onnxruntime-node with its install-only dependencies. */
  function installedRuntime(distRequires: string): string {
    const nm = fakeNodeModules(['linux/x64'], ['linux_x64'])
    file(join(dir!, 'package.json'), JSON.stringify({name: 'runtime', dependencies: {'onnxruntime-node': '1', koffi: '2'}}))
    file(join(nm, 'onnxruntime-node', 'package.json'), JSON.stringify({name: 'onnxruntime-node', main: 'dist/index.js', dependencies: {'adm-zip': '0', 'global-agent': '4'}}))
    file(join(nm, 'onnxruntime-node', 'dist', 'index.js'), distRequires)
    file(join(nm, 'onnxruntime-node', 'script', 'install.js'), 'require("adm-zip"); require("global-agent")\n')
    file(join(nm, 'adm-zip', 'package.json'), JSON.stringify({name: 'adm-zip'}))
    file(join(nm, 'adm-zip', 'adm-zip.js'))
    file(join(nm, 'global-agent', 'package.json'), JSON.stringify({name: 'global-agent'}))
    file(join(nm, 'global-agent', 'index.js'))
    mkdirSync(join(nm, '.bin'))
    symlinkSync('../adm-zip/adm-zip.js', join(nm, '.bin', 'adm-zip'))
    return nm
  }

  it('the prune step removes them (and their .bin links) from an installed runtime, which still loads', () => {
    const nm = installedRuntime('module.exports = {ok: true}\n')
    const report = pruneForeignBinaries(nm, linuxX64)
    expect(report.unloaded?.map((u) => u.path)).toEqual(['node_modules/adm-zip', 'node_modules/global-agent'])
    expect(existsSync(join(nm, 'adm-zip'))).toBe(false)
    expect(existsSync(join(nm, 'global-agent'))).toBe(false)
    expect(() => lstatSync(join(nm, '.bin', 'adm-zip'))).toThrow()
    expect(existsSync(join(nm, 'onnxruntime-node', 'script', 'install.js'))).toBe(true)
    expect(() => verifyLoads(nm, report)).not.toThrow()
  })

  it('refuses (HOST_PRUNE_FAILED, nothing removed) when onnxruntime-node\'s run-time code names an install-only dependency', () => {
    const nm = installedRuntime('const zip = require("adm-zip")\nmodule.exports = {zip}\n')
    expect(() => pruneForeignBinaries(nm, linuxX64)).toThrow(expect.objectContaining({code: 'HOST_PRUNE_FAILED'}))
    expect(existsSync(join(nm, 'adm-zip'))).toBe(true)
  })
})
