import {describe, expect, it} from 'vitest'

import {isErrorCode} from '../errors.js'
import {WIRE_ERRORS, wireMeaning, wireStatus} from './status.js'

describe('the wire error table', () => {
  it('lists only catalogued codes, each with an HTTP error status', () => {
    for (const [code, {status}] of Object.entries(WIRE_ERRORS)) {
      expect([code, isErrorCode(code)]).toEqual([code, true])
      expect(status >= 400 && status < 600).toBe(true)
    }
  })

  it('answers an unlisted refusal with 400, and gives a client the meaning by code first, by status only for an unknown code', () => {
    expect(wireStatus('CHANNEL_UNSUPPORTED_SUITE')).toBe(400)
    expect([wireStatus('SERVER_BUSY'), wireStatus('SERVER_DRAINING'), wireStatus('CHANNEL_UNKNOWN_KEY')]).toEqual([429, 503, 421])
    expect(wireMeaning(503, 'CHANNEL_KMS_UNAVAILABLE')).toBe('kms-unavailable')
    expect(wireMeaning(421, 'CHANNEL_UNKNOWN_KEY')).toBe('refused')
    expect(wireMeaning(400, 'CHANNEL_SOMETHING_NEW')).toBe('refused')
    expect([wireMeaning(429, undefined), wireMeaning(504, 'X'), wireMeaning(418, undefined), wireMeaning(500, undefined)]).toEqual(['busy', 'timeout', 'bad-request', 'internal'])
  })
})
