import {describe, expect, it} from 'vitest'

import {LockDerivationError, type Lockfile, deriveLockfile, resolveInLock} from './lock.js'

const root: Lockfile = {
  lockfileVersion: 3,
  packages: {
    '': {name: 'nle', version: '1.0.0'},
    'node_modules/a': {version: '1.0.0', integrity: 'sha512-a', dependencies: {b: '^2', c: '^1'}, optionalDependencies: {'a-native': '1'}},
    'node_modules/a/node_modules/b': {version: '2.0.0', integrity: 'sha512-b2', dependencies: {c: '^1'}},
    'node_modules/b': {version: '1.0.0', integrity: 'sha512-b1', dev: true},
    'node_modules/c': {version: '1.1.0', integrity: 'sha512-c', peer: true, peerDependencies: {d: '*', e: '*'}, peerDependenciesMeta: {e: {optional: true}}},
    'node_modules/d': {version: '3.0.0', integrity: 'sha512-d'},
    'node_modules/e': {version: '4.0.0', integrity: 'sha512-e'},
    'node_modules/cli-only': {version: '9.0.0', integrity: 'sha512-x'},
  },
}

describe('deriveLockfile', () => {
  it('resolves names as Node does: the nearest node_modules first, then up', () => {
    expect(resolveInLock(root.packages, 'node_modules/a', 'b')).toBe('node_modules/a/node_modules/b')
    expect(resolveInLock(root.packages, 'node_modules/a/node_modules/b', 'c')).toBe('node_modules/c')
    expect(resolveInLock(root.packages, '', 'b')).toBe('node_modules/b')
    expect(resolveInLock(root.packages, '', 'nope')).toBeUndefined()
  })

  it('keeps exactly the reached entries at their paths, drops dev/peer marks, skips absent optional ones', () => {
    const lock = deriveLockfile(root, {name: 'rt', version: '1.0.0', dependencies: {a: '1.0.0'}})
    expect(Object.keys(lock.packages)).toEqual(['', 'node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/c', 'node_modules/d'])
    expect(lock.packages['node_modules/c']).toEqual({version: '1.1.0', integrity: 'sha512-c', peerDependencies: {d: '*', e: '*'}, peerDependenciesMeta: {e: {optional: true}}})
    expect(lock.packages['']).toEqual({name: 'rt', version: '1.0.0', dependencies: {a: '1.0.0'}})
    // The hoisted b@1 (nle's dev dependency) is not reached: a uses its own b@2.
    expect(lock.packages['node_modules/b']).toBeUndefined()
  })

  it('refuses a required dependency the lockfile lacks', () => {
    expect(() => deriveLockfile(root, {name: 'rt', version: '1.0.0', dependencies: {missing: '1'}})).toThrow(LockDerivationError)
  })
})
