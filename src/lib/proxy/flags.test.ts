import {describe, expect, it} from 'vitest'

import ProxyCommand from '../../commands/proxy.js'
import {codeOf} from '../../test-support/rejection.js'
import {PROXY_FLAGS, proxyOverrides, proxyParseArgsOptions} from './flags.js'

describe('the proxy flag table', () => {
  it('gives `nle proxy` and the runtime entry the same flags', () => {
    expect(Object.keys(ProxyCommand.flags).filter((k) => k !== 'json').sort()).toEqual(Object.keys(PROXY_FLAGS).sort())
    expect(Object.keys(proxyParseArgsOptions()).sort()).toEqual(Object.keys(PROXY_FLAGS).sort())
    expect(proxyParseArgsOptions().upstream).toEqual({type: 'string', multiple: true})
  })

  it('turns text into settings: durations in any unit, counts, ports, repeated upstreams', () => {
    const {configFile, overrides} = proxyOverrides({
      config: 'nle.yaml',
      upstream: ['unix:/run/a.sock', '/run/b.sock'],
      port: '0',
      queue: '0',
      'upstream-timeout': '2m',
      'headers-timeout': '1500ms',
      'drain-timeout': '5',
      'credentials-source': 'imds',
    })
    expect(configFile).toBe('nle.yaml')
    expect(overrides).toEqual({upstreams: ['/run/a.sock', '/run/b.sock'], port: 0, queue: 0, upstreamTimeoutMs: 120_000, headersTimeoutMs: 1500, drainTimeoutMs: 5000, credentialsSource: 'imds'})
  })

  it('refuses bad values as usage errors, before anything starts', () => {
    for (const values of [{concurrency: '0'}, {port: '70000'}, {'body-limit': '1.5'}, {'request-timeout': 'soon'}, {cert: 'c.pem'}, {'credentials-source': 'file'}, {upstream: ['relative.sock']}]) {
      expect([JSON.stringify(values), codeOf(() => proxyOverrides(values))]).toEqual([JSON.stringify(values), expect.stringMatching(/^(PROXY_)?USAGE$/)])
    }
  })
})
