// The CLI as a user meets it: help for every command, JSON shapes, errors and exit codes.
import {mkdirSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {execa} from 'execa'
import {afterAll, describe, expect, it} from 'vitest'

import {BIN, REPO_ROOT, json, jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'oclif.manifest.json'), 'utf8')) as {
  commands: Record<string, {summary?: string; description?: string; examples?: string[]; enableJsonFlag?: boolean}>
}
const tmp = tempDir()
afterAll(() => tmp.cleanup())

describe('help', () => {
  it.each(Object.keys(manifest.commands))('nle %s --help explains usage, flags and examples', async (id) => {
    const r = await runCli([...id.split(':'), '--help'])
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain('USAGE')
    expect(r.stdout).toContain(`$ nle ${id.replaceAll(':', ' ')}`)
    const c = manifest.commands[id]!
    // Long-running servers (nle proxy, nle kms serve) have no --json; every other command does.
    if (c.enableJsonFlag) expect(r.stdout).toContain('--json')
    expect(c.summary ?? c.description, `${id} needs a summary`).toBeTruthy()
    expect(c.examples?.length, `${id} needs examples`).toBeGreaterThan(0)
  })

  it('nle --help lists the commands', async () => {
    const r = await runCli(['--help'])
    expect(r.exitCode).toBe(0)
    for (const id of Object.keys(manifest.commands).filter((i) => !i.includes(':'))) expect(r.stdout).toContain(id)
  })
})

describe('errors', () => {
  it('an unknown flag exits 2 with the one error format and no stack trace', async () => {
    const r = await runCli(['init', '--bogus'])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(/^Error \[USAGE\]: Nonexistent flag: --bogus\nHint: /)
    expect(r.stderr).not.toMatch(/\n\s+at /)
  })

  it('--json errors are the stable failure envelope on stdout, and nothing else is', async () => {
    const dir = join(tmp.dir, 'dup')
    expect((await runCli(['init', dir, '--json'])).exitCode).toBe(0)
    writeFileSync(join(dir, 'nle.yaml'), 'version: 1\nname: edited\n')
    const r = await runCli(['init', dir, '--json'])
    expect(r.exitCode).toBe(6)
    expect(json(r)).toEqual({
      ok: false,
      command: 'init',
      schemaVersion: 1,
      exitCode: 6,
      error: {
        code: 'INIT_FILES_EXIST',
        message: expect.stringContaining('nothing was written'),
        hint: expect.stringMatching(/\(docs\/errors\.md#init_files_exist\)$/),
        docs: 'docs/errors.md#init_files_exist',
        exitCode: 6,
        details: expect.objectContaining({existing: ['nle.yaml']}),
      },
    })
  })

  it('an unknown command is an nle error with a code (exit 2) and a did-you-mean, in text and --json', async () => {
    const r = await runCli(['polcy', 'check'])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(/^Error \[CLI_UNKNOWN_COMMAND\]: "polcy check" is not an nle command\.\nHint: Did you mean `nle policy check`\?.*\(docs\/errors\.md#cli_unknown_command\)$/)
    const j = await runCli(['stauts', '--json'])
    expect(j.exitCode).toBe(2)
    expect(jsonFailure(j)).toMatchObject({code: 'CLI_UNKNOWN_COMMAND', exitCode: 2, details: {suggestions: ['status']}})
    const far = await runCli(['frobnicate'])
    expect([far.exitCode, far.stderr.includes('Did you mean')]).toEqual([2, false])
  })

  it('--verbose adds the stack trace', async () => {
    const r = await runCli(['init', join(tmp.dir, 'x'), '--name', 'Bad Name', '--verbose'])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('Error [INIT_BAD_NAME]')
    expect(r.stderr).toMatch(/\n\s+at /)
  })
})

describe('nle init', () => {
  it('--json lists the files written and the next steps', async () => {
    const dir = join(tmp.dir, 'proj')
    const r = await runCli(['init', dir, '--json'])
    expect(r.exitCode).toBe(0)
    const out = jsonResult<{dir: string; name: string; files: {path: string; bytes: number; action: string}[]; nextSteps: {command: string; why: string}[]}>(r)
    expect(out.name).toBe('proj')
    expect(out.files).toHaveLength(8)
    for (const f of out.files) expect(f).toEqual({path: expect.any(String), bytes: expect.any(Number), action: 'created'})
    expect(readdirSync(dir).sort()).toEqual(['.github', '.gitignore', 'enclave', 'nle.yaml', 'parent'])
    expect(out.nextSteps.map((s) => s.command)).toContain('nle doctor')
  })

  it('prints what it wrote and the next steps for a person', async () => {
    const r = await runCli(['init', join(tmp.dir, 'human')])
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain('+ nle.yaml')
    expect(r.stdout).toContain('Next steps:')
  })
})

describe('nle doctor', () => {
  it('with an empty PATH reports every tool missing and exits 1', async () => {
    const r = await runCli(['doctor', '--for', 'host', '--json', '--config', join(tmp.dir, 'none.yaml')], {env: {PATH: ''}})
    expect(r.exitCode).toBe(1)
    const out = jsonResult<{ok: boolean; missing: string[]; checks: {id: string; status: string}[]}>(r)
    expect(out.ok).toBe(false)
    for (const tool of ['docker', 'nitro-cli', 'socat', 'allocator', 'nitro-device']) expect(out.missing).toContain(tool)
    expect(out.checks.find((c) => c.id === 'node')?.status).toBe('ok')
  })

  it('passes --for dev in an initialised project and prints a table', async () => {
    const dir = join(tmp.dir, 'devproj')
    await runCli(['init', dir])
    const r = await runCli(['doctor', '--for', 'dev'], {cwd: dir})
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/\* +nle\.yaml +ok +version 1/)
    expect(r.stdout).toContain('Ready for "dev"')
  })

  it('exits 3 (CONFIG) for an invalid nle.yaml, as every command does, not 1', async () => {
    const file = join(tmp.dir, 'invalid.yaml')
    writeFileSync(file, 'version: 1\nname: demo\nenclave: {cpuCont: 2}\n')
    const r = await runCli(['doctor', '--for', 'dev', '--json', '--config', file])
    expect(r.exitCode).toBe(3)
    expect(jsonResult<{exitCode: number}>(r).exitCode).toBe(3)
  })

  it('rejects an unknown workflow with a usage error', async () => {
    const r = await runCli(['doctor', '--for', 'everything'])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('Error [USAGE]')
  })
})

describe('nle proxy --json', () => {
  it('prints line-delimited JSON events on stdout: listening, stopped; a port in use is ADDRESS_IN_USE (exit 6) as one error line', async () => {
    const dir = join(tmp.dir, 'proxy-json')
    mkdirSync(dir, {recursive: true})
    const args = ['proxy', '--upstream', `unix:${join(dir, 'none.sock')}`, '--json']
    const child = execa(process.execPath, [BIN, ...args, '--http-port', '0'], {cwd: dir, reject: false, env: {NO_COLOR: '1'}})
    let out = ''
    const listening = await new Promise<{event: string; result: {http: string}}>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as never)
      })
      void child.then((r) => reject(new Error(`proxy exited ${r.exitCode}: ${r.stderr}`)))
    })
    expect(listening).toMatchObject({ok: true, command: 'proxy', event: 'listening', result: {http: expect.stringMatching(/^127\.0\.0\.1:\d+$/), upstreams: 1}})
    const second = await runCli([...args, '--http-port', listening.result.http.split(':')[1]!], {cwd: dir})
    expect(second.exitCode).toBe(6)
    expect(second.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      {ok: false, command: 'proxy', schemaVersion: 1, exitCode: 6, event: 'error', error: expect.objectContaining({code: 'ADDRESS_IN_USE', exitCode: 6, hint: expect.stringMatching(/--http-port.*\(docs\/errors\.md#address_in_use\)$/)})},
    ])
    child.kill('SIGTERM')
    const result = await child
    expect(result.exitCode).toBe(0)
    expect(result.stdout.trim().split('\n').map((l) => (JSON.parse(l) as {event: string}).event)).toEqual(['listening', 'stopped'])
  }, 60_000)
})
