import {mkdirSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {expectCode} from '../test-support/rejection.js'
import {tempDir} from '../test-support/tmp.js'
import {loadConfig} from './config/load.js'
import {initProject, projectNameFrom} from './init.js'

const EXPECTED = [
  '.github/workflows/nle-policy-check.yml',
  '.gitignore',
  'enclave/Dockerfile',
  'enclave/start.sh',
  'nle.yaml',
  'parent/allocator.yaml',
  'parent/nle-parent-proxy.service',
  'parent/nle-vsock-bridge.service',
]

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string): void => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out[relative(dir, p)] = `${statSync(p).mode.toString(8)}:${readFileSync(p, 'hex')}`
    }
  }
  walk(dir)
  return out
}

let cleanup: (() => void) | undefined
afterEach(() => cleanup?.())

describe('initProject', () => {
  it('writes every file, with placeholders filled, and a config that validates', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    const dir = join(t.dir, 'Benefits Bot')
    const result = await initProject({dir})
    expect(result.name).toBe('benefits-bot')
    expect(result.files.map((f) => f.path).sort()).toEqual(EXPECTED)
    expect(Object.keys(snapshot(dir)).sort()).toEqual(EXPECTED)
    for (const f of EXPECTED) expect(readFileSync(join(dir, f), 'utf8')).not.toMatch(/\{\{\w+\}\}/)
    const {config} = await loadConfig(join(dir, 'nle.yaml'))
    expect(config.name).toBe('benefits-bot')
    expect(config.build.imageTag).toBe('benefits-bot-enclave:latest')
    expect(readFileSync(join(dir, 'parent/allocator.yaml'), 'utf8')).toMatch(/^memory_mib: 4096$/m)
    expect(readFileSync(join(dir, 'parent/nle-vsock-bridge.service'), 'utf8')).toContain('VSOCK-CONNECT:16:5000')
    expect(statSync(join(dir, 'enclave/start.sh')).mode & 0o111).not.toBe(0)
  })

  it('refuses a second run without --force and leaves every file byte-identical', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    await initProject({dir: t.dir, name: 'demo'})
    writeFileSync(join(t.dir, 'nle.yaml'), 'version: 1\nname: edited\n')
    const before = snapshot(t.dir)
    await expect(initProject({dir: t.dir, name: 'demo'})).rejects.toMatchObject({code: 'INIT_FILES_EXIST', exitCode: 6})
    expect(snapshot(t.dir)).toEqual(before)
  })

  it('in an existing repository appends nle\'s missing .gitignore lines, once, and keeps the user\'s', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    writeFileSync(join(t.dir, '.gitignore'), 'mine\nnode_modules/\ndist\n/build')
    const first = await initProject({dir: t.dir, name: 'demo'})
    const gi = first.files.find((f) => f.path === '.gitignore')
    expect(gi?.action).toBe('merged')
    expect(gi?.added).toContain('.nle/')
    expect(gi?.added).not.toContain('node_modules/')
    expect(gi?.added).not.toContain('build/') // `/build` already covers it
    const text = readFileSync(join(t.dir, '.gitignore'), 'utf8')
    expect(text.startsWith('mine\nnode_modules/\ndist\n/build\n')).toBe(true)
    for (const line of ['model/', '.nle/', '*.eif', '*.key']) expect(text.split('\n')).toContain(line)
    expect(text.split('\n').filter((l) => l === 'node_modules/')).toHaveLength(1)
    expect(first.files.filter((f) => f.path !== '.gitignore').every((f) => f.action === 'created')).toBe(true)

    // Again, with and without --force: every file is already as nle writes it; nothing changes.
    const before = snapshot(t.dir)
    const again = await initProject({dir: t.dir, name: 'demo'})
    expect(new Set(again.files.map((f) => f.action))).toEqual(new Set(['unchanged']))
    const forced = await initProject({dir: t.dir, name: 'demo', force: true})
    expect(new Set(forced.files.map((f) => f.action))).toEqual(new Set(['unchanged']))
    expect(snapshot(t.dir)).toEqual(before)
  })

  it('leaves a user\'s other workflows and files alone, and refuses only nle\'s own files that differ', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    mkdirSync(join(t.dir, '.github', 'workflows'), {recursive: true})
    writeFileSync(join(t.dir, '.github', 'workflows', 'ci.yml'), 'on: push\n')
    writeFileSync(join(t.dir, '.gitignore'), 'mine\n')
    const ok = await initProject({dir: t.dir, name: 'demo'})
    expect(ok.files.find((f) => f.path === '.github/workflows/nle-policy-check.yml')?.action).toBe('created')
    expect(readFileSync(join(t.dir, '.github', 'workflows', 'ci.yml'), 'utf8')).toBe('on: push\n')

    // Conflicts: a different nle.yaml, Dockerfile and a workflow of nle's name.
    writeFileSync(join(t.dir, 'nle.yaml'), 'version: 1\nname: edited\n')
    writeFileSync(join(t.dir, 'enclave', 'Dockerfile'), 'FROM scratch\n')
    writeFileSync(join(t.dir, '.github', 'workflows', 'nle-policy-check.yml'), 'on: pull_request\n')
    writeFileSync(join(t.dir, '.gitignore'), 'mine\n')
    const before = snapshot(t.dir)
    await expectCode(initProject({dir: t.dir, name: 'demo'}), 'INIT_FILES_EXIST')
    const e = (await initProject({dir: t.dir, name: 'demo'}).catch((x: unknown) => x)) as {details: {conflicts: string[]}}
    expect(e.details.conflicts.sort()).toEqual(['.github/workflows/nle-policy-check.yml', 'enclave/Dockerfile', 'nle.yaml'])
    expect(snapshot(t.dir)).toEqual(before)

    // --force replaces nle's own files, and still only appends to .gitignore.
    const forced = await initProject({dir: t.dir, name: 'demo', force: true})
    const action = Object.fromEntries(forced.files.map((f) => [f.path, f.action]))
    expect(action).toMatchObject({'nle.yaml': 'overwritten', 'enclave/Dockerfile': 'overwritten', '.github/workflows/nle-policy-check.yml': 'overwritten', '.gitignore': 'merged', 'enclave/start.sh': 'unchanged'})
    expect(readFileSync(join(t.dir, '.gitignore'), 'utf8').startsWith('mine\n')).toBe(true)
    expect(readFileSync(join(t.dir, '.github', 'workflows', 'ci.yml'), 'utf8')).toBe('on: push\n')
  })

  it('next steps fit where it runs: the dev path without a Nitro device, the host path with one', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    const dev = await initProject({dir: join(t.dir, 'a'), name: 'demo', nitroDevice: join(t.dir, 'absent')})
    expect(dev.place).toBe('dev')
    expect(dev.nextSteps.map((s) => s.command)).toContain('nle dev')
    writeFileSync(join(t.dir, 'device'), '')
    const host = await initProject({dir: join(t.dir, 'b'), name: 'demo', nitroDevice: join(t.dir, 'device')})
    expect(host.place).toBe('nitro-host')
    expect(host.nextSteps.map((s) => s.command)).toContain('nle run')
    expect(host.nextSteps.map((s) => s.command)).not.toContain('nle dev')
  })

  it('rejects an invalid project name before writing anything', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    await expect(initProject({dir: t.dir, name: 'Not Valid'})).rejects.toMatchObject({code: 'INIT_BAD_NAME', exitCode: 2})
    expect(readdirSync(t.dir)).toEqual([])
  })

  it('derives a valid name from a folder name', () => {
    expect(projectNameFrom('/tmp/My_Project.v2')).toBe('my-project-v2')
  })
})
