// Shared set-up of the bench modules (files starting with _ are not benches themselves).
import {createHash} from 'node:crypto'
import {join} from 'node:path'

import {writeLockfile} from '../src/lib/lockfile.js'

/** A lockfile with arbitrary but well-formed measurements, for benches that run the simulator. */
export async function writeBenchLockfile(dir: string): Promise<string> {
  const digest = (l: string): string => createHash('sha384').update(l).digest('hex')
  const lock = join(dir, 'nle.lock.json')
  await writeLockfile(lock, {
    version: 1,
    measurements: {PCR0: digest('0'), PCR1: digest('1'), PCR2: digest('2')},
    eif: {sha384: digest('eif'), size: 1, version: 4, signed: false},
    builder: {name: 'bench', version: '0'},
    inputs: {},
  })
  return lock
}

/** Client i's question in the serving benchmark (different per client, `words` words). */
export function servingPrompt(i: number, words: number): string {
  const vocabulary = ['what', 'does', 'my', 'plan', 'cover', 'for', 'dental', 'care']
  return `Client ${i} asks: ${Array.from({length: words}, (_, k) => vocabulary[(k + i) % vocabulary.length]).join(' ')}?`
}
