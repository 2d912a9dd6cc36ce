// Seeded mutation fuzz of the CiphertextForRecipient parser and decryptor: whatever the bytes, the
// only way out is an NleError with a CMS_* code (or the plaintext).
import {type KeyObject, createPrivateKey, generateKeyPairSync} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {isNleError} from '../errors.js'
import {mutate, prng} from '../../test-support/mutate.js'
import {sharedTestdata} from '../../test-support/testdata.js'
import {buildEnvelope, decryptEnvelope, parseEnvelope} from './recipient.js'

const TESTDATA = sharedTestdata('kms/')
const SEED = 0xc0ffee
const PER_SOURCE = 2000

interface Tally {
  inputs: number
  parsed: number
  decrypted: number
  refused: Record<string, number>
  untyped: {what: string; input: string}[]
}

function fuzz(seeds: {bytes: Uint8Array; key?: KeyObject}[], seed: number): Tally {
  const rand = prng(seed)
  const t: Tally = {inputs: 0, parsed: 0, decrypted: 0, refused: {}, untyped: []}
  for (const s of seeds) {
    for (let i = 0; i < Math.ceil(PER_SOURCE / seeds.length); i++) {
      const bytes = mutate(s.bytes, rand)
      t.inputs++
      try {
        parseEnvelope(bytes)
        t.parsed++
        if (s.key) {
          decryptEnvelope(bytes, s.key)
          t.decrypted++
        }
      } catch (error) {
        if (isNleError(error) && error.code.startsWith('CMS_')) t.refused[error.code] = (t.refused[error.code] ?? 0) + 1
        else t.untyped.push({what: isNleError(error) ? error.code : `${(error as Error)?.name}: ${(error as Error)?.message}`, input: Buffer.from(bytes).toString('hex')})
      }
    }
  }
  return t
}

function report(name: string, t: Tally): void {
  console.log(`[fuzz] CMS ${name}: ${t.inputs} inputs, ${t.parsed} parsed, ${t.decrypted} decrypted, ${t.untyped.length} untyped errors; refusals ${JSON.stringify(t.refused)}`)
  for (const u of t.untyped.slice(0, 3)) console.log(`[fuzz]   untyped: ${u.what} (${u.input.slice(0, 120)}…)`)
}

describe('CiphertextForRecipient under seeded mutation', () => {
  it('envelopes the local endpoint builds: every mutant ends in a CMS_* error or its plaintext', () => {
    const {publicKey, privateKey} = generateKeyPairSync('rsa', {modulusLength: 2048})
    const spki = publicKey.export({type: 'spki', format: 'der'})
    const seeds = [new Uint8Array(32).fill(3), new Uint8Array(1024).fill(5)].map((p) => ({bytes: buildEnvelope(p, spki), key: privateKey}))
    const t = fuzz(seeds, SEED)
    report('built', t)
    expect(t.inputs).toBeGreaterThanOrEqual(PER_SOURCE)
    expect(t.untyped).toEqual([])
  }, 120_000)

  const present = TESTDATA !== undefined
  it.skipIf(!present)('real KMS envelopes (../shared/testdata/kms): every mutant ends in a CMS_* error or its plaintext', () => {
    const read = (name: string): Uint8Array => new Uint8Array(readFileSync(join(TESTDATA!, name)))
    const seeds = [
      {bytes: read('kms_cms_enveloped_indef.ber')},
      {bytes: read('kms_cms_enveloped_ctxprim.ber')},
      {bytes: read('synthetic_kms_cms_rsa2048.ber'), key: createPrivateKey(readFileSync(join(TESTDATA!, 'synthetic_kms_cms_rsa2048.key.pem')))},
    ]
    const t = fuzz(seeds, SEED + 1)
    report('testdata', t)
    expect(t.inputs).toBeGreaterThanOrEqual(PER_SOURCE)
    expect(t.untyped).toEqual([])
  }, 120_000)
})
