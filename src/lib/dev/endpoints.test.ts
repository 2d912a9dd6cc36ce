import {chmodSync, copyFileSync, mkdirSync, realpathSync, renameSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../attestation/simulator.js'
import {fakeNleDev} from '../../test-support/fake-dev.js'
import {tempDir} from '../../test-support/tmp.js'
import {type DevEndpoints, devProjectOf, endpointsFile, projectLockfile, readEndpoints, writeEndpoints} from './endpoints.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A project with a dev root in .nle/dev, an `nle dev` stand-in running in it, and its endpoints. */
async function project(): Promise<{dir: string; endpoints: DevEndpoints; read: () => Promise<{e?: DevEndpoints; warnings: string[]}>}> {
  const t = tempDir('nle-endpoints-')
  cleanups.push(t.cleanup)
  const dir = realpathSync(t.dir)
  const devDir = join(dir, '.nle', 'dev')
  mkdirSync(devDir, {recursive: true})
  const sim = new NsmSimulator()
  writeFileSync(join(devDir, 'sim-root.pem'), sim.rootPem)
  writeFileSync(join(devDir, 'cert.pem'), sim.rootPem)
  const dev = await fakeNleDev(dir)
  cleanups.push(dev.stop)
  const endpoints: DevEndpoints = {projectDir: dir, proxyUrl: 'https://127.0.0.1:1', enclaveSocket: join(devDir, 'enclave.sock'), kmsUrl: 'http://127.0.0.1:2', devRootFile: join(devDir, 'sim-root.pem'), devRootSha256: sim.root.sha256, caFile: join(devDir, 'cert.pem'), pid: dev.pid}
  await writeEndpoints(dir, endpoints)
  const read = async (): Promise<{e?: DevEndpoints; warnings: string[]}> => {
    const warnings: string[] = []
    const e = await readEndpoints(dir, (m) => warnings.push(m))
    return {...(e ? {e} : {}), warnings}
  }
  return {dir, endpoints, read}
}

describe('nle dev endpoints file', () => {
  it('is trusted when every check holds; written 0600, also over an older 0644 file', async () => {
    const p = await project()
    expect(await p.read()).toEqual({e: p.endpoints, warnings: []})
    chmodSync(endpointsFile(p.dir), 0o644)
    await writeEndpoints(p.dir, p.endpoints)
    expect((await import('node:fs')).statSync(endpointsFile(p.dir)).mode & 0o777).toBe(0o600)
    expect(await readEndpoints(join(p.dir, 'nowhere'))).toBeUndefined() // absent: no warning
  })

  it('is ignored, with the reason, when readable by others, a link, or not this project', async () => {
    const p = await project()
    const file = endpointsFile(p.dir)
    chmodSync(file, 0o640)
    expect((await p.read()).warnings.join()).toContain('mode is 640')
    chmodSync(file, 0o600)
    renameSync(file, `${file}.real`)
    symlinkSync(`${file}.real`, file)
    expect((await p.read()).e).toBeUndefined()
    expect((await p.read()).warnings).toHaveLength(1)
  })

  it('is ignored when its process is not a live `nle dev` of this project, or its root is not the one it names', async () => {
    const p = await project()
    const variants: [Partial<DevEndpoints>, string][] = [
      [{pid: process.pid}, 'is not `nle dev`'],
      [{pid: 2 ** 22 + 12_345}, 'not running'],
      [{projectDir: '/elsewhere'}, 'another project'],
      [{devRootSha256: '0'.repeat(64)}, 'SHA-256'],
      [{devRootFile: '/etc/hostname'}, 'not inside'],
    ]
    for (const [change, why] of variants) {
      await writeEndpoints(p.dir, {...p.endpoints, ...change})
      const r = await p.read()
      expect(r.e, why).toBeUndefined()
      expect(r.warnings.join(), why).toContain(why)
    }
    const other = tempDir('nle-endpoints-other-')
    cleanups.push(other.cleanup)
    const elsewhere = await fakeNleDev(other.dir)
    cleanups.push(elsewhere.stop)
    await writeEndpoints(p.dir, {...p.endpoints, pid: elsewhere.pid})
    expect((await p.read()).warnings.join()).toContain('of another project')
    // `nle dev --config` naming this project from another folder is this project's.
    const pointed = await fakeNleDev(other.dir, ['--config', join(p.dir, 'nle.yaml')])
    cleanups.push(pointed.stop)
    await writeEndpoints(p.dir, {...p.endpoints, pid: pointed.pid})
    expect((await p.read()).e).toBeDefined()
  })

  it('reads `nle dev` command lines', () => {
    expect(devProjectOf(['node', '/x/bin/run.js', 'dev'], '/p')).toBe('/p')
    expect(devProjectOf(['node', '/usr/bin/nle', 'dev', '-c', 'sub/nle.yaml'], '/p')).toBe('/p/sub')
    expect(devProjectOf(['node', '/usr/bin/nle', 'dev', '--config=/q/nle.yaml'], '/p')).toBe('/q')
    expect(devProjectOf(['node', '/usr/bin/nle', 'chat'], '/p')).toBeUndefined()
    expect(devProjectOf(['node', 'server.js', 'dev'], '/p')).toBeUndefined()
  })

  it('the lockfile is the project\'s (build.lockfile of nle.yaml), never the endpoints file\'s', async () => {
    const p = await project()
    expect(await projectLockfile(p.dir)).toBe(join(p.dir, 'nle.lock.json'))
    writeFileSync(join(p.dir, 'nle.yaml'), 'version: 1\nname: demo\nbuild:\n  lockfile: locks/x.json\n')
    expect(await projectLockfile(p.dir)).toBe(join(p.dir, 'locks', 'x.json'))
    copyFileSync(endpointsFile(p.dir), join(p.dir, 'copy.json')) // (the file has no lockfile field at all)
    expect(JSON.parse((await import('node:fs')).readFileSync(join(p.dir, 'copy.json'), 'utf8'))).not.toHaveProperty('lockfile')
  })
})
