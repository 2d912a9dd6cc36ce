import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {tempDir} from '../../test-support/tmp.js'
import {importGraph, packageOf, scanImports} from './graph.js'
import {RUNTIMES, forbiddenIn} from './packages.js'

function tree(root: string, files: Record<string, string>): void {
  for (const [rel, body] of Object.entries(files)) {
    mkdirSync(join(root, rel, '..'), {recursive: true})
    writeFileSync(join(root, rel), body)
  }
}

describe('scanImports', () => {
  it('finds static, re-export, side-effect, dynamic, worker-URL and require specifiers', () => {
    const src = [
      "import {a, b as c} from './a.js'",
      "import * as ns from '@scope/pkg/sub'",
      "import d, {type E} from 'dflt'",
      "export {x} from '../x.js'",
      "export * from './star.js'",
      "import './side.js'",
      'import {',
      '  multi,',
      '  line,',
      "} from './multi.js'",
      "const m = await import('./lazy.js')",
      "new Worker(new URL('./worker.js', import.meta.url))",
      "const k = createRequire(import.meta.url)('koffi')",
      "const z = require('zlib-like')",
    ].join('\n')
    expect(scanImports(src).specifiers.sort()).toEqual(
      ['./a.js', '@scope/pkg/sub', 'dflt', '../x.js', './star.js', './side.js', './multi.js', './lazy.js', './worker.js', 'koffi', 'zlib-like'].sort(),
    )
    expect(scanImports(src).unresolved).toEqual([])
  })

  it('reports a dynamic import it cannot follow', () => {
    expect(scanImports('const m = await import(name)').unresolved).toEqual(['import(name)'])
  })

  it('skips only lines marked dev-only (the .ts-source worker start), and reads the same line unmarked', () => {
    const line = "const code = `import('tsx/esm/api')`"
    expect(scanImports(`${line} // runtime-graph: dev-only (tests run the .ts sources)`).specifiers).toEqual([])
    expect(scanImports(line).specifiers).toEqual(['tsx/esm/api'])
    expect(scanImports(`// runtime-graph: dev-only\n${line}`).specifiers).toEqual(['tsx/esm/api'])
  })

  it('names packages by scope and name', () => {
    expect(packageOf('@noble/curves/nist.js')).toBe('@noble/curves')
    expect(packageOf('zod/v4')).toBe('zod')
  })
})

describe('importGraph and forbiddenIn (a fixture runtime)', () => {
  it('passes a clean graph and names every forbidden file and package one import away', () => {
    const root = tempDir('nle-graph-')
    tree(root.dir, {
      'runtime/enclave-server/index.js': "import {run} from '../../dist/lib/server/main.js'\n",
      'dist/lib/server/main.js': "import {z} from 'zod'\nimport {readFile} from 'node:fs/promises'\nimport 'node:path'\nexport const run = 1\n",
      'dist/lib/host/prune.js': "import {existsSync} from 'fs'\n",
    })
    const spec = RUNTIMES['enclave-server']
    const clean = importGraph(spec.entries.map((e) => join(root.dir, e)))
    expect(clean.unresolved).toEqual([])
    expect([...clean.packages.keys()]).toEqual(['zod'])
    expect(forbiddenIn(spec, clean, root.dir)).toEqual([])

    // One edge each to the simulator, the YAML config loader, a CLI command and Ink: all refused.
    writeFileSync(join(root.dir, 'dist/lib/server/main.js'), "import {z} from 'zod'\nimport {sim} from '../attestation/simulator.js'\nexport {load} from '../config/load.js'\nexport const run = 1\n")
    tree(root.dir, {
      'dist/lib/attestation/simulator.js': "import '../../commands/build.js'\n",
      'dist/lib/config/load.js': "import {parse} from 'yaml'\n",
      'dist/commands/build.js': "import {render} from 'ink'\n",
    })
    const dirty = importGraph(spec.entries.map((e) => join(root.dir, e)))
    expect(forbiddenIn(spec, dirty, root.dir).sort()).toEqual(
      ['dist/commands/build.js', 'dist/lib/attestation/simulator.js', 'dist/lib/config/load.js', 'ink (via dist/commands/build.js)', 'yaml (via dist/lib/config/load.js)'].sort(),
    )
    root.cleanup()
  })

  it('lists an import of a missing file and a computed dynamic import as unresolved', () => {
    const root = tempDir('nle-graph-')
    tree(root.dir, {'a.js': "import './gone.js'\nconst m = await import(process.env.X)\n"})
    const g = importGraph([join(root.dir, 'a.js')])
    expect(g.unresolved).toHaveLength(2)
    expect(g.unresolved.join('\n')).toMatch(/gone\.js: does not exist/)
    expect(g.unresolved.join('\n')).toMatch(/import\(process\.env\.X\)/)
    root.cleanup()
  })
})
