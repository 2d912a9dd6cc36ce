/**
 * The import graph of a compiled runtime entry (runtime/<name>/index.js and the dist/ files it
 * reaches): which files it loads and which packages it requires. `nle build` copies exactly these
 * files into the enclave image, and test/runtime-packages.test.ts fails when the graph reaches a
 * module a runtime must not carry.
 *
 * The scanner reads tsc's output (plain ESM), not arbitrary JavaScript. It follows static
 * `import`/`export … from`, `import('literal')`, `new URL('./literal', import.meta.url)` (worker
 * files) and `require('literal')` / `createRequire(…)('literal')`. A dynamic import whose specifier
 * is not a string literal cannot be followed: it is reported in `unresolved`, and the test refuses
 * it (fail closed), as it refuses a relative import of a file that does not exist. Over-reading (an
 * import-like line in a comment) only adds an edge, which errs on the side of refusing.
 *
 * One escape, visible in review: a line that ends with the comment `runtime-graph: dev-only` is
 * not read (code that runs only from the .ts sources, e.g. the engine worker started through tsx
 * in tests). `grep -rn 'runtime-graph: dev-only' src` lists every such line.
 */
import {existsSync, readFileSync} from 'node:fs'
import {builtinModules} from 'node:module'
import {dirname, relative, resolve, sep} from 'node:path'

export interface ImportGraph {
  /** Every file reached, absolute, sorted. */
  files: string[]
  /** Bare package names required (`@scope/name` or `name`), each with the files that require it. */
  packages: Map<string, string[]>
  /** Imports the scanner could not follow: "<file>: <what>". */
  unresolved: string[]
}

const STATIC = /^[ \t]*(?:import|export)\s+(?:type\s+)?(?:[\w$*{}\s,]+?\s+from\s+)?['"]([^'"\n]+)['"]/gm
const DYNAMIC = /\bimport\(\s*(['"]?)([^'")\n]*)\1\s*\)/g
const URL_REF = /\bnew URL\(\s*['"](\.{1,2}\/[^'"\n]+)['"]\s*,\s*import\.meta\.url\s*\)/g
const REQUIRE = /(?:\brequire|\))\(\s*['"]([^'"\n]+)['"]\s*\)/g

const DEV_ONLY = /\/\/ runtime-graph: dev-only\b.*$/

const BUILTINS = new Set(builtinModules)

/** The package a bare specifier names: `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
export function packageOf(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string)
}

function isBuiltin(specifier: string): boolean {
  return specifier.startsWith('node:') || BUILTINS.has(specifier) || BUILTINS.has(specifier.split('/')[0] as string)
}

/** The specifiers one compiled file imports, in order of appearance per kind. */
export function scanImports(text: string): {specifiers: string[]; unresolved: string[]} {
  const source = text
    .split('\n')
    .filter((line) => !DEV_ONLY.test(line))
    .join('\n')
  const specifiers: string[] = []
  const unresolved: string[] = []
  for (const m of source.matchAll(STATIC)) specifiers.push(m[1] as string)
  for (const m of source.matchAll(DYNAMIC)) {
    if (m[1] === '') unresolved.push(`import(${m[2]})`)
    else specifiers.push(m[2] as string)
  }
  for (const m of source.matchAll(URL_REF)) specifiers.push(m[1] as string)
  for (const m of source.matchAll(REQUIRE)) specifiers.push(m[1] as string)
  return {specifiers, unresolved}
}

/** Walks the graph from `entries` (absolute paths of compiled .js files). */
export function importGraph(entries: string[]): ImportGraph {
  const files = new Set<string>()
  const packages = new Map<string, Set<string>>()
  const unresolved: string[] = []
  const queue = entries.map((e) => resolve(e))
  while (queue.length > 0) {
    const file = queue.pop() as string
    if (files.has(file)) continue
    if (!existsSync(file)) {
      unresolved.push(`${file}: does not exist`)
      continue
    }
    files.add(file)
    const {specifiers, unresolved: dyn} = scanImports(readFileSync(file, 'utf8'))
    for (const d of dyn) unresolved.push(`${file}: ${d}`)
    for (const s of specifiers) {
      if (s.startsWith('./') || s.startsWith('../')) queue.push(resolve(dirname(file), s))
      else if (s.startsWith('/') || s.startsWith('file:')) unresolved.push(`${file}: absolute import ${s}`)
      else if (!isBuiltin(s)) {
        const name = packageOf(s)
        const by = packages.get(name) ?? new Set<string>()
        by.add(file)
        packages.set(name, by)
      }
    }
  }
  return {
    files: [...files].sort(),
    packages: new Map([...packages].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, [...v].sort()])),
    unresolved,
  }
}

/** `file` relative to `root`, '/'-separated. */
export function relativePosix(root: string, file: string): string {
  return relative(root, file).split(sep).join('/')
}
