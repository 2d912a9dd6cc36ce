// Seeded mutation fuzz of the attestation parsers (COSE_Sign1 → payload → full verification):
// whatever the bytes, the only way out is an NleError with an ATTEST_* code other than
// ATTEST_UNPROCESSABLE (the verifier's name for "an error no check anticipated").
import {readFileSync, readdirSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {isNleError} from '../errors.js'
import {mutate, prng} from '../../test-support/mutate.js'
import {sharedTestdata} from '../../test-support/testdata.js'
import type {TrustedRoot} from './roots.js'
import {NsmSimulator} from './simulator.js'
import {inspectAttestation, verifyAttestation} from './verify.js'

const TESTDATA = sharedTestdata('attestation/')
const SEED = 0x5eed_a77e
const PER_SOURCE = 2000

interface Tally {
  inputs: number
  parsed: number
  refused: Record<string, number>
  untyped: {what: string; input: string}[]
}

/** Run the parsers on one input; record how it ended. */
async function run(bytes: Uint8Array, root: TrustedRoot | null, at: Date | undefined, tally: Tally): Promise<void> {
  tally.inputs++
  const note = (error: unknown): void => {
    const typed = isNleError(error) && error.code.startsWith('ATTEST_') && error.code !== 'ATTEST_UNPROCESSABLE'
    if (typed) tally.refused[error.code] = (tally.refused[error.code] ?? 0) + 1
    else tally.untyped.push({what: isNleError(error) ? error.code : `${(error as Error)?.name}: ${(error as Error)?.message}`, input: Buffer.from(bytes).toString('hex')})
  }
  try {
    inspectAttestation(bytes)
    tally.parsed++
  } catch (error) {
    note(error)
    return
  }
  try {
    const zero = '0'.repeat(96)
    await verifyAttestation(bytes, {expectedPcrs: {PCR0: zero, PCR1: zero, PCR2: zero}, expectedNonce: null, maxAgeMs: 3_600_000, allowDebug: true, ...(root ? {insecureDevRoot: root} : {}), ...(at ? {at} : {})})
  } catch (error) {
    note(error)
  }
}

async function fuzz(seeds: {bytes: Uint8Array; root: TrustedRoot | null; at?: Date}[], seed: number): Promise<Tally> {
  const rand = prng(seed)
  const tally: Tally = {inputs: 0, parsed: 0, refused: {}, untyped: []}
  for (const s of seeds) for (let i = 0; i < PER_SOURCE / seeds.length; i++) await run(mutate(s.bytes, rand), s.root, s.at, tally)
  return tally
}

function report(name: string, t: Tally): void {
  console.log(`[fuzz] attestation ${name}: ${t.inputs} inputs, ${t.parsed} parsed, ${t.untyped.length} untyped errors; refusals ${JSON.stringify(t.refused)}`)
  for (const u of t.untyped.slice(0, 3)) console.log(`[fuzz]   untyped: ${u.what} (${u.input.slice(0, 120)}…)`)
}

describe('attestation parsers under seeded mutation', () => {
  it('simulator documents: every mutant is refused with a typed ATTEST_* code (or verifies)', async () => {
    const sim = new NsmSimulator()
    const plain = await sim.attestation()
    const full = await sim.attestation({nonce: new Uint8Array(32).fill(7), userData: new Uint8Array(48).fill(9), publicKey: new Uint8Array(300).fill(1)})
    const t = await fuzz(
      [plain, full].map((bytes) => ({bytes, root: sim.root})),
      SEED,
    )
    report('simulator', t)
    expect(t.inputs).toBeGreaterThanOrEqual(PER_SOURCE)
    expect(t.untyped).toEqual([])
  }, 120_000)

  const present = TESTDATA !== undefined
  it.skipIf(!present)('real Nitro documents (../shared/testdata/attestation): every mutant is refused with a typed ATTEST_* code', async () => {
    const vectors = JSON.parse(readFileSync(join(TESTDATA!, 'vectors.json'), 'utf8')) as Record<string, {timestamp_ms?: number}>
    const docs = readdirSync(TESTDATA!)
      .filter((f) => vectors[f]?.timestamp_ms !== undefined)
      .sort()
      .map((f) => ({bytes: new Uint8Array(readFileSync(join(TESTDATA!, f))), root: null, at: new Date(vectors[f]!.timestamp_ms!)}))
    expect(docs.length).toBeGreaterThan(0)
    const t = await fuzz(docs, SEED + 1)
    report('testdata', t)
    expect(t.inputs).toBeGreaterThanOrEqual(PER_SOURCE - docs.length)
    expect(t.untyped).toEqual([])
  }, 120_000)
})
