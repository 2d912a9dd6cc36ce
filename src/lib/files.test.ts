import {chmodSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {tempDir} from '../test-support/tmp.js'
import {writeAtomically, writeFileAtomic} from './files.js'

describe('writeFileAtomic', () => {
  it('replaces a file whole, with the new mode even over an older, looser file, and leaves no temp file', async () => {
    const {dir, cleanup} = tempDir('nle-files-')
    try {
      const key = join(dir, 'key.pem')
      writeFileSync(key, 'old key')
      chmodSync(key, 0o644)
      await writeFileAtomic(key, 'new key', {mode: 0o600})
      expect(readFileSync(key, 'utf8')).toBe('new key')
      expect(statSync(key).mode & 0o777).toBe(0o600)
      expect(readdirSync(dir)).toEqual(['key.pem'])
      await expect(writeFileAtomic(join(dir, 'missing', 'x'), 'x')).rejects.toMatchObject({code: 'ENOENT'})
    } finally {
      cleanup()
    }
  })
})

describe('writeAtomically', () => {
  it('leaves the old file untouched and no temporary file when the writer fails half-way', async () => {
    const {dir, cleanup} = tempDir('nle-files-')
    try {
      const eif = join(dir, 'image.eif')
      writeFileSync(eif, 'old image')
      const failure = writeAtomically(eif, async (file) => {
        await file.write('half of a new ima')
        throw new Error('disk full')
      })
      await expect(failure).rejects.toThrow('disk full')
      expect(readFileSync(eif, 'utf8')).toBe('old image')
      expect(readdirSync(dir)).toEqual(['image.eif'])
      expect(await writeAtomically(eif, async (file) => (await file.write('new image')).bytesWritten)).toBe(9)
      expect(readFileSync(eif, 'utf8')).toBe('new image')
    } finally {
      cleanup()
    }
  })
})
