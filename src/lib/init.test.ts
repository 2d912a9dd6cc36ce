import {readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

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

  it('refuses when only one file exists, and writes none of the others', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    writeFileSync(join(t.dir, '.gitignore'), 'mine\n')
    await expect(initProject({dir: t.dir, name: 'demo'})).rejects.toMatchObject({
      code: 'INIT_FILES_EXIST',
      details: {existing: ['.gitignore']},
    })
    expect(Object.keys(snapshot(t.dir))).toEqual(['.gitignore'])
  })

  it('overwrites with force and says which files it overwrote', async () => {
    const t = tempDir()
    cleanup = t.cleanup
    writeFileSync(join(t.dir, '.gitignore'), 'mine\n')
    const result = await initProject({dir: t.dir, name: 'demo', force: true})
    expect(result.files.find((f) => f.path === '.gitignore')?.action).toBe('overwritten')
    expect(result.files.find((f) => f.path === 'nle.yaml')?.action).toBe('created')
    expect(readFileSync(join(t.dir, '.gitignore'), 'utf8')).not.toBe('mine\n')
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
