// The runtime packages (runtime/enclave-server, runtime/parent-proxy): each one's import graph over
// the compiled dist/ reaches no forbidden module, its committed package.json and lockfile are the
// ones derived from that graph and nle's lockfile, and the enclave server's package, copied to an
// empty folder and installed from its own lockfile offline (npm's cache), starts and attests.
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {request} from 'node:http'
import {join} from 'node:path'

import {init, parse} from 'es-module-lexer'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {saveModel, synthModel} from '../src/lib/model/index.js'
import {installedClosureFigures} from '../src/lib/runtime/closure.js'
import {scanImports} from '../src/lib/runtime/graph.js'
import {RUNTIMES, RUNTIME_NAMES, assembleRuntimePackage, forbiddenIn, json, readRootPackage, runtimeGraph, runtimeManifest} from '../src/lib/runtime/packages.js'
import {REPO_ROOT} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type Child, startScript} from './e2e-support.js'

describe.each(RUNTIME_NAMES)('runtime package %s', (name) => {
  const spec = RUNTIMES[name]
  const graph = runtimeGraph(spec, REPO_ROOT)

  it('its import graph is complete and reaches no forbidden module', () => {
    expect(graph.unresolved).toEqual([])
    expect(graph.files.length).toBeGreaterThan(3)
    expect(forbiddenIn(spec, graph, REPO_ROOT)).toEqual([])
  })

  it('the scanner finds every import es-module-lexer finds in the files it reached', async () => {
    await init
    for (const file of graph.files) {
      const source = readFileSync(file, 'utf8')
      const ours = new Set(scanImports(source).specifiers)
      const [imports] = parse(source)
      for (const i of imports) if (i.n !== undefined) expect(ours.has(i.n), `${file}: ${i.n}`).toBe(true)
    }
  })

  it('its committed package.json and package-lock.json are the derived ones (npm run runtime:packages)', async () => {
    const {packageJson, lockfile} = runtimeManifest(spec, graph, await readRootPackage(REPO_ROOT))
    expect(readFileSync(join(REPO_ROOT, 'runtime', name, 'package.json'), 'utf8')).toBe(json(packageJson))
    expect(readFileSync(join(REPO_ROOT, 'runtime', name, 'package-lock.json'), 'utf8')).toBe(json(lockfile))
  })

  it('its locked closure holds no forbidden package', () => {
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'runtime', name, 'package-lock.json'), 'utf8')) as {packages: Record<string, unknown>}
    const names = Object.keys(lock.packages).map((p) => p.replace(/^.*node_modules\//, ''))
    expect(names.filter((n) => spec.forbiddenPackages.includes(n) || n.startsWith('@oclif/'))).toEqual([])
  })
})

describe('the enclave server package, installed alone', () => {
  let tmp: ReturnType<typeof tempDir>
  let pkg: string
  let server: Child | undefined

  beforeAll(async () => {
    tmp = tempDir('nle-runtime-pkg-')
    pkg = join(tmp.dir, 'enclave-server')
    await assembleRuntimePackage('enclave-server', pkg)
    // As the Dockerfile does, but offline: only npm's cache (filled by nle's own `npm ci`).
    execFileSync('npm', ['ci', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {cwd: pkg, env: {...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip'}, stdio: 'pipe'})
    execFileSync(process.execPath, ['dist/lib/host/prune.js', '--verify', 'node_modules'], {cwd: pkg, stdio: 'pipe'})
    await synthModel({preset: 'tiny', outDir: join(tmp.dir, 'synth')})
    await saveModel({source: join(tmp.dir, 'synth'), outDir: join(tmp.dir, 'model')})
  }, 240_000)

  afterAll(async () => {
    if (server && server.proc.exitCode === null) {
      server.proc.kill('SIGTERM')
      await server.exited
    }
    tmp?.cleanup()
  })

  it('holds only the runtime: no CLI, no simulator, no forbidden package installed', () => {
    const files = spawnSync('find', ['.', '-path', './node_modules', '-prune', '-o', '-type', 'f', '-print'], {cwd: pkg, encoding: 'utf8'}).stdout.split('\n').filter(Boolean)
    expect(files).toContain('./runtime/enclave-server/index.js')
    expect(files.filter((f) => /dist\/(commands|cli|ui)\/|simulator|config\/load|model\/(hub|synth)/.test(f))).toEqual([])
    const figures = installedClosureFigures(join(pkg, 'node_modules'))
    expect(figures.names.filter((n) => RUNTIMES['enclave-server'].forbiddenPackages.includes(n.replace(/^.*node_modules\//, '')))).toEqual([])
    console.log(`[figures] enclave runtime closure, installed and pruned: ${figures.packages} packages, ${figures.files} files, ${(figures.bytes / 1e6).toFixed(1)} MB`)
    expect(readdirSync(join(pkg, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6'))).toEqual([process.platform])
    // protobufjs's command-line tools and their ~55 bundled packages went with the prune step.
    expect(existsSync(join(pkg, 'node_modules', 'protobufjs', 'cli'))).toBe(false)
    expect(figures.names.filter((n) => n.includes('/cli/'))).toEqual([])
  })

  it('the image\'s entry refuses the NSM simulator (exit 2: it has none)', () => {
    const r = spawnSync(process.execPath, ['runtime/enclave-server/index.js', '--socket', join(tmp.dir, 'x.sock'), '--nsm', 'simulator', '--engine', 'echo'], {cwd: pkg, encoding: 'utf8'})
    expect(r.status).toBe(2)
    expect(r.stdout + r.stderr).toMatch(/SERVER_USAGE/)
  })

  it('starts from it alone with the tiny model against the NSM simulator, and attests', async () => {
    // The package's server (its dist/, its node_modules) with the simulator handed in from nle's
    // development entry: the one thing a development run adds.
    writeFileSync(
      join(pkg, 'start-with-simulator.mjs'),
      [
        "import {runEnclaveServer} from './dist/lib/server/main.js'",
        `const {DEV_SERVER_EXTENSIONS} = await import(${JSON.stringify(join(REPO_ROOT, 'dist/lib/dev/enclave-server.js'))})`,
        'process.exitCode = await runEnclaveServer(process.argv.slice(2), {simulator: DEV_SERVER_EXTENSIONS.simulator})',
        'process.exit()',
      ].join('\n'),
    )
    const socket = join(tmp.dir, 's.sock')
    server = startScript(join(pkg, 'start-with-simulator.mjs'), ['--socket', socket, '--model', join(tmp.dir, 'model'), '--nsm', 'simulator', '--max-tokens', '4'], {}, pkg)
    const listening = await server.waitFor('listening', 120_000)
    expect(listening.socket).toBe(socket)
    const get = (path: string): Promise<{status: number; type: string; body: Buffer}> =>
      new Promise((resolve, reject) => {
        request({socketPath: socket, path}, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks)}))
        })
          .on('error', reject)
          .end()
      })
    expect((await get('/healthz')).status).toBe(200)
    const doc = await get(`/v1/attestation?nonce=${'ab'.repeat(16)}`)
    expect(doc.status).toBe(200)
    expect(doc.type).toMatch(/application\/cbor/)
    expect(doc.body.length).toBeGreaterThan(500)
    server.proc.kill('SIGTERM')
    expect(await server.exited).toBe(0)
  }, 180_000)
})

describe('the parent proxy package, installed alone', () => {
  it('installs from its own lockfile offline and serves: TLS (self-signed) and loopback HTTP, 502 with no enclave behind it', async () => {
    const tmp = tempDir('nle-proxy-pkg-')
    const pkg = join(tmp.dir, 'parent-proxy')
    let proxy: Child | undefined
    try {
      await assembleRuntimePackage('parent-proxy', pkg)
      execFileSync('npm', ['ci', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {cwd: pkg, stdio: 'pipe'})
      const figures = installedClosureFigures(join(pkg, 'node_modules'))
      expect(figures.names.filter((n) => RUNTIMES['parent-proxy'].forbiddenPackages.includes(n.replace(/^.*node_modules\//, '')))).toEqual([])
      console.log(`[figures] parent proxy closure, installed: ${figures.packages} packages, ${figures.files} files, ${(figures.bytes / 1e6).toFixed(1)} MB`)
      proxy = startScript(join(pkg, 'runtime/parent-proxy/index.js'), ['--upstream', `unix:${join(tmp.dir, 'no-enclave.sock')}`, '--self-signed', join(tmp.dir, 'tls'), '--host', '127.0.0.1', '--port', '0', '--http-port', '0'], {}, pkg)
      const listening = await proxy.waitFor('listening', 60_000)
      expect(listening.https).toMatch(/^127\.0\.0\.1:\d+$/)
      const status = await new Promise<number>((resolve, reject) => {
        const [host, port] = String(listening.http).split(':')
        request({host, port: Number(port), path: '/healthz'}, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
          .on('error', reject)
          .end()
      })
      expect(status).toBe(502)
      proxy.proc.kill('SIGTERM')
      expect(await proxy.exited).toBe(0)
    } finally {
      if (proxy && proxy.proc.exitCode === null) proxy.proc.kill('SIGKILL')
      tmp.cleanup()
    }
  }, 120_000)
})
