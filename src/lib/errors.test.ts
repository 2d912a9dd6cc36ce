import {describe, expect, it} from 'vitest'

import {ExitCode, NleError, ToolError, hasCode, tail} from './errors.js'

describe('NleError', () => {
  it('carries code, hint, exit code and a stable JSON shape', () => {
    const e = new NleError('CONFIG_TYPE', 'bad', {hint: 'fix it', exitCode: ExitCode.CONFIG, details: {path: 'a.b'}})
    expect(e).toBeInstanceOf(Error)
    expect(hasCode(e, 'CONFIG_TYPE')).toBe(true)
    expect(hasCode(e, 'OTHER')).toBe(false)
    expect(e.toJSON()).toEqual({code: 'CONFIG_TYPE', message: 'bad', hint: 'fix it', exitCode: 3, details: {path: 'a.b'}})
    expect(new NleError('X', 'y').toJSON()).toEqual({code: 'X', message: 'y', exitCode: 1})
  })

  it('ToolError keeps the tool, argv, exit status and only the tail of stderr', () => {
    const stderr = Array.from({length: 50}, (_, i) => `line ${i}`).join('\n') + '\n\n'
    const e = new ToolError('NITRO_CLI_FAILED', 'build failed', {tool: 'nitro-cli', argv: ['build-enclave'], toolExitCode: 26, stderr})
    expect(e.exitCode).toBe(ExitCode.TOOL)
    expect(e.stderrTail.split('\n')).toHaveLength(20)
    expect(e.stderrTail.endsWith('line 49')).toBe(true)
    expect(e.details).toMatchObject({tool: 'nitro-cli', argv: ['build-enclave'], toolExitCode: 26})
  })

  it('tail handles short text', () => {
    expect(tail('one\ntwo\n', 5)).toBe('one\ntwo')
  })
})
