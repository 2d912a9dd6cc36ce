import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {NleError} from '../errors.js'
import {TEMPLATES_DIR} from '../paths.js'
import {renderTemplate} from '../template.js'
import {type ConfigProblem, keysAt, loadConfig, parseConfig} from './load.js'
import {configSchema} from './schema.js'

function fail(text: string): NleError {
  try {
    parseConfig(text)
  } catch (error) {
    expect(error).toBeInstanceOf(NleError)
    return error as NleError
  }
  throw new Error('expected the config to be rejected')
}

const base = 'version: 1\nname: demo\n'

describe('parseConfig', () => {
  it('fills every default from a minimal file', () => {
    const c = parseConfig(base)
    expect(c.enclave).toEqual({cpuCount: 2, memoryMiB: 'auto', cid: 16, debug: false, vsockPort: 5000})
    expect(c.runtime.sampling).toEqual({temperature: 0.7, topP: 0.95, topK: 50})
    expect(c.build.builder).toBe('docker')
  })

  it('names the path and expected type of a wrong type', () => {
    const e = fail(`${base}enclave:\n  cpuCount: two\n`)
    expect(e.code).toBe('CONFIG_TYPE')
    expect(e.exitCode).toBe(3)
    expect(e.message).toContain('"enclave.cpuCount" must be a number, got string "two"')
    expect(e.message).toContain('nle.yaml:4')
  })

  it('names an unknown key and suggests the closest valid one', () => {
    const e = fail(`${base}enclave:\n  cpuCont: 2\n`)
    expect(e.code).toBe('CONFIG_UNKNOWN_KEY')
    expect(e.message).toContain('unknown key "enclave.cpuCont"')
    expect(e.hint).toContain('Did you mean "enclave.cpuCount"?')
    const problems = e.details?.problems as ConfigProblem[]
    expect(problems[0]).toMatchObject({path: 'enclave.cpuCont', suggestion: 'enclave.cpuCount', line: 4})
  })

  it('maps snake_case and case slips to the camelCase key', () => {
    expect((fail(`${base}enclave:\n  memory_mib: 512\n`).details?.problems as ConfigProblem[])[0]?.suggestion).toBe('enclave.memoryMiB')
    expect((fail(`${base}Proxy: {}\n`).details?.problems as ConfigProblem[])[0]?.suggestion).toBe('proxy')
  })

  it('gives no suggestion for a key unlike any valid one', () => {
    const e = fail(`${base}zzzzzzzz: 1\n`)
    expect(e.code).toBe('CONFIG_UNKNOWN_KEY')
    expect((e.details?.problems as ConfigProblem[])[0]?.suggestion).toBeUndefined()
  })

  it('reports a missing required key', () => {
    const e = fail('version: 1\n')
    expect(e.code).toBe('CONFIG_MISSING_KEY')
    expect(e.message).toContain('missing required key "name"')
  })

  it('rejects a wrong version, an enum outside its values, and a union mismatch', () => {
    expect(fail('version: 2\nname: x\n').code).toBe('CONFIG_INVALID_VALUE')
    expect(fail(`${base}build:\n  builder: podman\n`).message).toContain('must be one of "docker", "native"')
    expect(fail(`${base}enclave:\n  memoryMiB: lots\n`).message).toContain('must be "auto" or number')
  })

  it('lists every problem, in file order', () => {
    const e = fail(`${base}proxy:\n  port: 99999\nenclave:\n  cid: x\n`)
    const problems = e.details?.problems as ConfigProblem[]
    expect(problems.map((p) => p.path)).toEqual(['proxy.port', 'enclave.cid'])
    expect(e.message).toMatch(/^2 problems/)
  })

  it('reports YAML syntax errors and duplicate keys with a position', () => {
    expect(fail('version: 1\nname: [x\n').code).toBe('CONFIG_SYNTAX')
    const dup = fail('version: 1\nname: a\nname: b\n')
    expect(dup.code).toBe('CONFIG_SYNTAX')
    expect(dup.message).toMatch(/nle\.yaml:3:\d+/)
  })

  it('shows a syntax error with its line, column, the line\'s text and a caret, with nothing dangling', () => {
    const e = fail('version: 1\nname: demo\nenclave:\n  cpuCount: 2\n   memoryMiB: 512\n')
    expect(e.code).toBe('CONFIG_SYNTAX')
    expect(e.exitCode).toBe(3)
    const [head, , line, caret] = e.message.split('\n')
    expect(head).toMatch(/^nle\.yaml:4:13: YAML syntax error: \S.*[^:]$/)
    expect(line).toBe('  cpuCount: 2')
    expect(caret).toBe(`${' '.repeat(12)}^`)
    expect(e.message).not.toMatch(/at line \d+, column \d+/)
    expect(e.details).toMatchObject({line: 4, column: 13})
  })

  it('refuses an alias bomb as a config error (exit 3), not an internal one', () => {
    const layers = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
    for (const [i, name] of ['b', 'c', 'd', 'e', 'f', 'g'].entries()) {
      const prev = 'abcdefg'[i]
      layers.push(`${name}: &${name} [${Array.from({length: 10}, () => `*${prev}`).join(', ')}]`)
    }
    const e = fail(`${base}${layers.join('\n')}\n`)
    expect(e.code).toBe('CONFIG_TOO_COMPLEX')
    expect(e.exitCode).toBe(3)
  })

  it('still reads a config that uses a few aliases (then judges its keys)', () => {
    expect(fail(`${base}x: &v 2\ny: *v\n`).code).toBe('CONFIG_UNKNOWN_KEY')
  })

  it('treats an empty file as missing keys, not a crash', () => {
    expect(fail('').code).toBe('CONFIG_MISSING_KEY')
  })

  it('accepts the init template, and its values are exactly the schema defaults', () => {
    const text = renderTemplate(readFileSync(join(TEMPLATES_DIR, 'nle.yaml'), 'utf8'), {name: 'demo'})
    expect(parseConfig(text)).toEqual(configSchema.parse({version: 1, name: 'demo', build: {imageTag: 'demo-enclave:latest'}}))
  })
})

describe('loadConfig', () => {
  it('fails with CONFIG_NOT_FOUND and a hint for a missing file', async () => {
    await expect(loadConfig('/nonexistent/nle.yaml')).rejects.toMatchObject({code: 'CONFIG_NOT_FOUND', exitCode: 3})
  })
})

describe('keysAt', () => {
  it('walks through defaults and optionals', () => {
    expect(keysAt(configSchema, ['runtime', 'sampling'])).toEqual(['temperature', 'topP', 'topK'])
    expect(keysAt(configSchema, ['proxy', 'tls'])).toEqual(['cert', 'key'])
    expect(keysAt(configSchema, ['name'])).toEqual([])
  })
})
