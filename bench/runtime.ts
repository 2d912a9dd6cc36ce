// The enclave runtime package (docs/runtime.md): its production closure as the image ships it
// (installed from its own lockfile, offline from npm's cache, other platforms pruned) against what
// the image carried before it was a package (the CLI's production dependencies); the KMS-client
// choice by the same measure; the size of a native EIF holding the pinned Node, that package and the
// tiny model; and the server's cold start from that folder (process start → model loaded → listening).
//   npx tsx scripts/bench.ts runtime
import {execFileSync} from 'node:child_process'
import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import type {BenchRow} from '../scripts/bench.js'
import {buildEifFromFiles} from '../src/lib/eif/build.js'
import {ENCLAVE_NODE, pinnedNodeBinary} from '../src/lib/host/node-runtime.js'
import {saveModel, synthModel} from '../src/lib/model/index.js'
import {installedClosureFigures, lockClosureFigures} from '../src/lib/runtime/closure.js'
import {type Lockfile, deriveLockfile} from '../src/lib/runtime/lock.js'
import {assembleRuntimePackage} from '../src/lib/runtime/packages.js'
import {REPO_ROOT} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {startScript} from '../test/e2e-support.js'

const MB = 1e6

export default async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = []
  const rootLock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as Lockfile
  const rootPkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as {dependencies: Record<string, string>}
  const runtimePkg = JSON.parse(await readFile(join(REPO_ROOT, 'runtime/enclave-server/package.json'), 'utf8')) as {dependencies: Record<string, string>}
  // Before: the image ran `npm ci --omit=dev` on the CLI's own package.json (measured from nle's tree).
  const before = lockClosureFigures(deriveLockfile(rootLock, {name: 'before', version: '0', dependencies: rootPkg.dependencies}), REPO_ROOT)
  const withSdk = lockClosureFigures(
    deriveLockfile(rootLock, {name: 'sdk', version: '0', dependencies: {...Object.fromEntries(Object.entries(runtimePkg.dependencies).filter(([n]) => n !== '@smithy/signature-v4')), '@aws-sdk/client-kms': rootPkg.dependencies['@aws-sdk/client-kms']!}}),
    REPO_ROOT,
  )

  const {dir, cleanup} = tempDir('nle-bench-runtime-')
  try {
    const rootfs = join(dir, 'rootfs')
    const pkg = join(rootfs, 'app', 'nle')
    await assembleRuntimePackage('enclave-server', pkg)
    execFileSync('npm', ['ci', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {cwd: pkg, env: {...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip'}, stdio: 'pipe'})
    execFileSync(process.execPath, ['dist/lib/host/prune.js', '--verify', 'node_modules'], {cwd: pkg, stdio: 'pipe'})
    const now = installedClosureFigures(join(pkg, 'node_modules'))
    rows.push(
      {name: 'enclave closure: packages (installed, pruned)', value: now.packages, unit: 'packages', peer: {name: 'CLI production deps (before)', value: before.packages}, target: '<= 40', pass: now.packages <= 40},
      {name: 'enclave closure: files', value: now.files, unit: 'files', peer: {name: 'before', value: before.files}},
      {name: 'enclave closure: size', value: now.bytes / MB, unit: 'MB', peer: {name: 'before', value: before.bytes / MB}, target: '<= 60 MB', pass: now.bytes / MB <= 60},
      {name: 'KMS client @smithy/signature-v4 (chosen): packages (locked)', value: lockClosureFigures(JSON.parse(await readFile(join(REPO_ROOT, 'runtime/enclave-server/package-lock.json'), 'utf8')) as Lockfile, REPO_ROOT).packages, unit: 'packages', peer: {name: 'with @aws-sdk/client-kms', value: withSdk.packages}},
    )

    // The native image's payload: the pinned Node, the runtime package, the tiny model.
    await synthModel({preset: 'tiny', outDir: join(dir, 'synth')})
    await saveModel({source: join(dir, 'synth'), outDir: join(rootfs, 'app', 'model')})
    await mkdir(join(rootfs, 'usr', 'local', 'bin'), {recursive: true})
    await copyFile(await pinnedNodeBinary({env: process.env}), join(rootfs, ...ENCLAVE_NODE.imagePath.split('/')))
    await writeFile(join(dir, 'kernel'), 'placeholder kernel\n')
    await writeFile(join(dir, 'init'), 'placeholder init\n')
    await writeFile(join(dir, 'nsm.ko'), 'placeholder nsm.ko\n')
    const eif = join(dir, 'enclave.eif')
    const built = await buildEifFromFiles({kernel: join(dir, 'kernel'), cmdline: 'console=ttyS0', init: join(dir, 'init'), nsmKo: join(dir, 'nsm.ko'), rootfs, cmd: ['/bin/sh', '/app/start.sh'], env: [], output: eif, toolVersion: 'bench'})
    rows.push({name: 'native EIF, tiny model (Node + runtime package + model; no Debian base, placeholder kernel)', value: built.result.size / MB, unit: 'MB'})

    // Cold start, from the package folder alone (the simulator handed in, as in test/runtime-packages.test.ts).
    await writeFile(
      join(pkg, 'start-with-simulator.mjs'),
      `import {runEnclaveServer} from './dist/lib/server/main.js'\nconst {DEV_SERVER_EXTENSIONS} = await import(${JSON.stringify(join(REPO_ROOT, 'dist/lib/dev/enclave-server.js'))})\nprocess.exitCode = await runEnclaveServer(process.argv.slice(2), {simulator: DEV_SERVER_EXTENSIONS.simulator})\nprocess.exit()\n`,
    )
    const t0 = performance.now()
    const server = startScript(join(pkg, 'start-with-simulator.mjs'), ['--socket', join(dir, 's.sock'), '--model', join(rootfs, 'app', 'model'), '--nsm', 'simulator'], {}, pkg)
    const loaded = server.waitFor('model_loaded', 120_000).then(() => performance.now() - t0)
    await server.waitFor('listening', 120_000)
    const listening = performance.now() - t0
    rows.push(
      {name: 'cold start: process start → model loaded (tiny)', value: await loaded, unit: 'ms'},
      {name: 'cold start: process start → listening (tiny)', value: listening, unit: 'ms'},
    )
    server.proc.kill('SIGTERM')
    await server.exited
  } finally {
    cleanup()
  }
  return rows
}
