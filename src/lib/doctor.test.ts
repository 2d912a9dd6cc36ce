import {chmodSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {tempDir} from '../test-support/tmp.js'
import {type DoctorEnv, doctor, execProbe, runDoctor} from './doctor.js'
import {initProject} from './init.js'

let cleanup: (() => void) | undefined
afterEach(() => cleanup?.())

/** Executable fakes that print what the real tools print. */
const FAKES: Record<string, string> = {
  docker: `case "$1" in
  --version) echo "Docker version 25.0.8, build 0bab007" ;;
  info) echo "25.0.8" ;;
esac`,
  'nitro-cli': 'echo "Nitro CLI 1.4.2"',
  socat: `echo "socat by Gerhard Rieger and contributors - see www.dest-unreach.org"
echo "socat version 1.7.4.4 on 06 Nov 2022 08:15:51"
echo "   running on Linux version #1 SMP, release 6.1.0, machine x86_64"`,
  systemctl: 'echo active',
}

function fakeHost(): {bin: string; device: string; home: string; config: string; dir: string} {
  const t = tempDir()
  cleanup = t.cleanup
  const bin = join(t.dir, 'bin')
  mkdirSync(bin)
  for (const [name, body] of Object.entries(FAKES)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`)
    chmodSync(join(bin, name), 0o755)
  }
  const device = join(t.dir, 'nitro_enclaves')
  writeFileSync(device, '')
  const home = join(t.dir, 'home')
  mkdirSync(join(home, '.aws'), {recursive: true})
  return {bin, device, home, config: join(t.dir, 'nle.yaml'), dir: t.dir}
}

function env(h: ReturnType<typeof fakeHost>, extra: Partial<DoctorEnv> = {}): DoctorEnv {
  return {
    exec: (f, a) => execProbe(f, a, h.bin),
    env: {},
    home: h.home,
    nitroDevice: h.device,
    configFile: h.config,
    nodeVersion: '20.20.2',
    ...extra,
  }
}

describe('runDoctor', () => {
  it('reads versions from the real tools\' output formats and passes a complete host', async () => {
    const h = fakeHost()
    await initProject({dir: h.dir, name: 'demo'})
    writeFileSync(join(h.home, '.aws', 'credentials'), '[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = nope\n')
    writeFileSync(join(h.home, '.aws', 'config'), '[default]\nregion = eu-west-1\n')
    const report = await runDoctor('host', env(h))
    const byId = Object.fromEntries(report.checks.map((c) => [c.id, c]))
    expect(byId.docker?.version).toBe('25.0.8')
    expect(byId['docker-daemon']?.version).toBe('25.0.8')
    expect(byId['nitro-cli']?.version).toBe('1.4.2')
    expect(byId.socat?.version).toBe('1.7.4.4')
    expect(byId['aws-region']?.version).toBe('eu-west-1')
    expect(byId['aws-credentials']?.detail).toContain('profile "default"')
    expect(report).toMatchObject({ok: true, missing: []})
    // No credential value ever reaches the report.
    expect(JSON.stringify(report)).not.toContain('AKIAEXAMPLE')
  })

  it('reports every tool missing with an empty PATH, each with a hint', async () => {
    const h = fakeHost()
    const report = await runDoctor('host', {...env(h), exec: (f, a) => execProbe(f, a, ''), nitroDevice: join(h.dir, 'absent')})
    expect(report.ok).toBe(false)
    expect(report.missing).toEqual([
      'config',
      'docker',
      'docker-daemon',
      'nitro-cli',
      'nitro-device',
      'allocator',
      'vsock-proxy',
      'socat',
      'aws-credentials',
      'aws-region',
    ])
    for (const c of report.checks.filter((x) => x.status !== 'ok')) expect(c.hint, c.id).toBeTruthy()
  })

  it('asks only what the workflow needs', async () => {
    const h = fakeHost()
    await initProject({dir: h.dir, name: 'demo'})
    const report = await runDoctor('dev', {...env(h), exec: (f, a) => execProbe(f, a, '')})
    expect(report).toMatchObject({ok: true, missing: [], exitCode: 0})
    expect(report.checks.filter((c) => c.required).map((c) => c.id)).toEqual(['node', 'config'])
  })

  it('reports an invalid config as an error with its code', async () => {
    const h = fakeHost()
    writeFileSync(h.config, 'version: 1\nname: demo\nenclave: {cpuCont: 2}\n')
    const report = await runDoctor('dev', env(h))
    const config = report.checks.find((c) => c.id === 'config')
    expect(config).toMatchObject({status: 'error'})
    expect(config?.detail).toContain('CONFIG_UNKNOWN_KEY')
    expect(report.ok).toBe(false)
    // An invalid nle.yaml exits 3 (CONFIG), as every other command does for it; not 1.
    expect(report.exitCode).toBe(3)
  })

  it('says when the docker daemon does not answer and the allocator is inactive', async () => {
    const h = fakeHost()
    writeFileSync(join(h.bin, 'docker'), '#!/bin/sh\n[ "$1" = --version ] && { echo "Docker version 28.2.2, build e6534b4"; exit 0; }\necho "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2\nexit 1\n')
    writeFileSync(join(h.bin, 'systemctl'), '#!/bin/sh\necho inactive\nexit 3\n')
    const report = await runDoctor('host', env(h))
    const byId = Object.fromEntries(report.checks.map((c) => [c.id, c]))
    expect(byId.docker?.status).toBe('ok')
    expect(byId['docker-daemon']).toMatchObject({status: 'missing', detail: expect.stringContaining('Cannot connect')})
    expect(byId.allocator).toMatchObject({status: 'missing', detail: 'inactive'})
  })

  it('rejects Node older than 20', async () => {
    const h = fakeHost()
    const report = await runDoctor('dev', {...env(h), nodeVersion: '18.19.0'})
    expect(report.checks[0]).toMatchObject({id: 'node', status: 'error'})
  })

  it('without --for judges a machine without the Nitro device by what `nle dev` needs, and says how to check a host', async () => {
    const h = fakeHost()
    await initProject({dir: h.dir, name: 'demo'})
    const laptop = await doctor(undefined, {...env(h), exec: (f, a) => execProbe(f, a, ''), nitroDevice: join(h.dir, 'absent')})
    expect(laptop).toMatchObject({workflow: 'dev', ok: true, missing: []})
    expect(laptop.auto?.note).toContain('nle doctor --for host')
    // Where the device is, it is a Nitro host and every host part is needed.
    const host = await doctor(undefined, {...env(h), exec: (f, a) => execProbe(f, a, '')})
    expect(host).toMatchObject({workflow: 'host', ok: false})
    expect(host.missing).toContain('nitro-cli')
    // An explicit --for is obeyed and carries no note.
    const asked = await doctor('host', {...env(h), exec: (f, a) => execProbe(f, a, ''), nitroDevice: join(h.dir, 'absent')})
    expect(asked.workflow).toBe('host')
    expect(asked.auto).toBeUndefined()
  })
})
