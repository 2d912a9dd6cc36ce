import {readFileSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {renderErrorsDoc} from './errors-doc.js'
import {ExitCode, NleError, ToolError, docsAnchor, errorCatalogue, errorDomains, hasCode, isErrorCode, listenError, tail, tlsCertificateError} from './errors.js'
import {eifError} from './eif/errors.js'
import {hostError} from './host/errors.js'

const repoFile = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

describe('NleError', () => {
  it('carries code, hint, exit code and a stable JSON shape; the exit status and default hint come from the catalogue', () => {
    const e = new NleError('CONFIG_TYPE', 'bad', {hint: 'fix it', details: {path: 'a.b'}})
    expect(e).toBeInstanceOf(Error)
    expect(hasCode(e, 'CONFIG_TYPE')).toBe(true)
    expect(hasCode(e, 'CONFIG_SYNTAX')).toBe(false)
    expect(e.toJSON()).toEqual({code: 'CONFIG_TYPE', message: 'bad', hint: 'fix it. (docs/errors.md#config_type)', docs: 'docs/errors.md#config_type', exitCode: 3, details: {path: 'a.b'}})
    // The order of the --json error's fields (docs/json.md).
    expect(Object.keys(e.toJSON())).toEqual(['code', 'message', 'hint', 'docs', 'exitCode', 'details'])
    const d = eifError('EIF_NOT_FOUND', 'No such file: x.eif')
    expect(d.exitCode).toBe(ExitCode.IO)
    expect(d.hint.startsWith(errorCatalogue().find((c) => c.code === 'EIF_NOT_FOUND')!.hint)).toBe(true)
    expect(d.hint.endsWith(' (docs/errors.md#eif_not_found)')).toBe(true)
  })

  it('the compiler refuses a code that is not catalogued, and per-site exit statuses', () => {
    // @ts-expect-error: not a catalogued code
    const e = new NleError('ANY_STRING', 'y')
    // At run time such a code (only reachable by defeating the type) is treated as a bug in nle.
    expect(e.exitCode).toBe(ExitCode.INTERNAL)
    // @ts-expect-error: a host code is not an EIF code
    eifError('RUN_EIF_MISSING', 'x')
    // @ts-expect-error: the exit status follows from the code; a site cannot choose it
    hostError('RUN_EIF_MISSING', 'x', {exitCode: ExitCode.CHECK_FAILED})
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

  it('a port in use is ADDRESS_IN_USE (exit 6) whoever listens; other listen failures keep their code', () => {
    const inUse = Object.assign(new Error('listen EADDRINUSE'), {code: 'EADDRINUSE'})
    for (const code of ['GATEWAY_LISTEN_FAILED', 'PROXY_LISTEN_FAILED', 'KMS_LISTEN_FAILED', 'SERVER_LISTEN_FAILED'] as const) {
      const e = listenError(code, '127.0.0.1:1', inUse)
      expect([e.code, e.exitCode]).toEqual(['ADDRESS_IN_USE', ExitCode.IO])
      const other = listenError(code, '127.0.0.1:1', Object.assign(new Error('x'), {code: 'EACCES'}))
      expect([other.code, other.exitCode]).toEqual([code, ExitCode.IO])
    }
  })

  it('finds a TLS certificate refusal in a cause chain (fetch wraps it)', () => {
    const wrapped = Object.assign(new TypeError('fetch failed'), {cause: Object.assign(new Error('self-signed certificate'), {code: 'DEPTH_ZERO_SELF_SIGNED_CERT'})})
    expect(tlsCertificateError(wrapped)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT')
    expect(tlsCertificateError(Object.assign(new Error('refused'), {code: 'ECONNREFUSED'}))).toBeUndefined()
  })
})

describe('the error catalogue', () => {
  const catalogue = errorCatalogue()

  it('declares every code once, each with a one-line summary, a hint and a documented exit status', () => {
    expect(catalogue.length).toBeGreaterThan(200)
    const exits = new Set<number>(Object.values(ExitCode))
    const problems: string[] = []
    for (const c of catalogue) {
      if (!/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/.test(c.code)) problems.push(`${c.code}: not UPPER_SNAKE`)
      if (!exits.has(c.exit) || c.exit === ExitCode.OK) problems.push(`${c.code}: exit ${c.exit} is not a failure status of ExitCode`)
      if (!c.summary.trim() || c.summary.includes('\n')) problems.push(`${c.code}: no one-line summary`)
      if (c.hint.trim().length < 10) problems.push(`${c.code}: no hint`)
      if (c.hint.includes('docs/errors.md')) problems.push(`${c.code}: the hint names the anchor itself (it is appended)`)
      if (/schema\/nle\.schema\.json/.test(c.hint) && !/nle package/.test(c.hint)) problems.push(`${c.code}: points to a schema file the user's project does not have`)
      if (c.docs !== docsAnchor(c.code)) problems.push(`${c.code}: anchor`)
    }
    expect(problems).toEqual([])
    const all = errorDomains().flatMap((d) => Object.keys(d.codes))
    expect(new Set(all).size).toBe(all.length)
  })

  it('every hint a user sees ends with its code\'s docs anchor, default or given at the site', () => {
    for (const c of catalogue) {
      const e = new NleError(c.code, 'm')
      expect(e.hint.endsWith(`(docs/errors.md#${c.code.toLowerCase()})`), c.code).toBe(true)
      expect(e.exitCode, c.code).toBe(c.exit)
      expect(isErrorCode(c.code)).toBe(true)
    }
    expect(new NleError('EIF_TRUNCATED', 'm', {hint: 'Copy it again.'}).hint).toBe('Copy it again. (docs/errors.md#eif_truncated)')
    expect(isErrorCode('ANY_STRING')).toBe(false)
  })

  it('the hints issue 22 found missing or wrong are there and right', () => {
    const hint = (code: string): string => catalogue.find((c) => c.code === code)!.hint
    for (const code of ['EIF_NOT_FOUND', 'EIF_BAD_MAGIC', 'EIF_TRUNCATED', 'KMS_LISTEN_FAILED', 'KMS_STATE_INVALID', 'ATTEST_READ_FAILED', 'CLIENT_HTTP_ERROR']) {
      expect(hint(code).length, code).toBeGreaterThan(20)
    }
    expect(hint('KMS_CREDENTIALS_REJECTED')).toMatch(/SECRET_ACCESS_KEY/)
    expect(hint('KMS_CREDENTIALS_REJECTED')).not.toMatch(/region/)
  })

  it('docs/errors.md is the text generated from the catalogue (run `npm run docs:errors` after changing a code)', () => {
    expect(repoFile('docs/errors.md')).toBe(renderErrorsDoc())
    for (const c of catalogue) expect(renderErrorsDoc()).toContain(`### ${c.code}\n`)
  })

  it('the README\'s exit-code table lists exactly ExitCode', () => {
    const readme = repoFile('README.md')
    const section = readme.slice(readme.indexOf('## Exit codes'), readme.indexOf('\n## ', readme.indexOf('## Exit codes') + 3))
    const rows = [...section.matchAll(/^\| (\d+) \| /gm)].map((m) => Number(m[1]))
    expect(rows).toEqual([...new Set(Object.values(ExitCode))].sort((a, b) => a - b))
    // Every status a code can exit with is documented there.
    for (const c of catalogue) expect(rows, c.code).toContain(c.exit)
  })
})
