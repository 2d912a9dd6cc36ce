import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {saveModel} from './save.js'
import {saveLines, saveReport} from './save-report.js'
import {synthModel} from './synth.js'

const tmp = tempDir('nle-save-report-')
afterAll(() => tmp.cleanup())

describe('saveReport and saveLines', () => {
  it('give the --json data (manifest path, digest, source, file count, bytes) and the two summary lines', async () => {
    const src = (await synthModel({preset: 'tiny', outDir: join(tmp.dir, 'src'), seed: 2})).dir
    const r = await saveModel({source: src, outDir: join(tmp.dir, 'out')})
    const data = saveReport(r)
    expect(Object.keys(data)).toEqual(['dir', 'manifest', 'manifestDigest', 'source', 'files', 'totalBytes'])
    expect(data).toMatchObject({dir: r.dir, manifest: r.manifestPath, manifestDigest: r.manifestDigest, files: r.manifest.files.length, source: {kind: 'local'}})
    expect(data.totalBytes).toBe(r.manifest.files.reduce((n, f) => n + f.size, 0))
    expect(saveLines(data)).toEqual([`Saved ${data.files} files (${(data.totalBytes / 1e6).toFixed(1)} MB) to ${r.dir}`, `Manifest: ${r.manifestPath} (${r.manifestDigest})`])
  })
})
