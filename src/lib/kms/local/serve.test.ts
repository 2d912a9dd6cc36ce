import {existsSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {expectCode} from '../../../test-support/rejection.js'
import {tempDir} from '../../../test-support/tmp.js'
import {kmsListeningEvent, kmsListeningLines, serveLocalKms} from './serve.js'

const tmp = tempDir('nle-kms-serve-')
afterAll(() => tmp.cleanup())
const base = {host: '127.0.0.1', port: 0, maxAttestationAgeMs: 60_000, account: '000000000000', region: 'us-east-1', log: () => {}}

describe('serveLocalKms', () => {
  it('makes the state (and its folder), serves on loopback, and says so without a secret', async () => {
    const state = join(tmp.dir, 'sub', 'kms-state.json')
    const served = await serveLocalKms({...base, state})
    try {
      expect(served.created).toBe(true)
      expect(existsSync(state)).toBe(true)
      expect(served.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      const text = JSON.stringify(kmsListeningEvent(served)) + kmsListeningLines(served).join('\n')
      expect(served.state.identities.length).toBeGreaterThan(0)
      for (const i of served.state.identities) {
        expect(text).toContain(i.accessKeyId)
        expect(text).not.toContain(i.secretAccessKey)
      }
      expect(kmsListeningLines(served)[1]).toContain('AWS Nitro Enclaves root G1')
    } finally {
      await served.server.close()
    }
  })

  it('refuses a --dev-root that is not a PEM certificate with KMS_ROOT_INVALID, before listening', async () => {
    writeFileSync(join(tmp.dir, 'root.pem'), 'not a certificate')
    await expectCode(serveLocalKms({...base, state: join(tmp.dir, 'r.json'), devRoot: join(tmp.dir, 'root.pem')}), 'KMS_ROOT_INVALID')
    await expectCode(serveLocalKms({...base, state: join(tmp.dir, 'r.json'), devRoot: join(tmp.dir, 'missing.pem')}), 'KMS_ROOT_INVALID')
  })
})
