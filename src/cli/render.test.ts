import {describe, expect, it} from 'vitest'

import {NleError} from '../lib/errors.js'
import {renderError} from './render.js'

describe('renderError', () => {
  it('shows the stderr tail a supervised child left (details.stderrTail) between the message and the hint', () => {
    const e = new NleError('DEV_CHILD_FAILED', 'enclave-server exited (code 6) unexpectedly', {hint: 'The end of its stderr is shown above.', details: {stderrTail: '{"event":"start_failed"}\nsecond line'}})
    expect(renderError(e, {verbose: false, color: false}).split('\n')).toEqual([
      'Error [DEV_CHILD_FAILED]: enclave-server exited (code 6) unexpectedly',
      '  | {"event":"start_failed"}',
      '  | second line',
      'Hint: The end of its stderr is shown above. (docs/errors.md#dev_child_failed)',
      '',
    ])
  })

  it('shows nothing more for an error without one', () => {
    expect(renderError(new NleError('USAGE', 'm', {hint: 'h', details: {stderrTail: ''}}), {verbose: false, color: false})).toBe('Error [USAGE]: m\nHint: h. (docs/errors.md#usage)\n')
  })
})
