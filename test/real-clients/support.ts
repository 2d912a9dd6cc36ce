/**
 * Finding the real clients the tests drive (Debian's awscli, python3-boto3, python3-requests, curl;
 * .ci/run installs them). A test whose client is missing skips and prints why; in CI they are there.
 */
import {accessSync, constants, realpathSync} from 'node:fs'
import {delimiter, join} from 'node:path'

import {execa} from 'execa'

/** Every executable named `name` on PATH (and /usr/bin, where Debian puts its packages), real paths, deduplicated. */
export function executables(name: string): string[] {
  const dirs = ['/usr/bin', ...(process.env.PATH ?? '').split(delimiter).filter(Boolean)]
  const seen = new Set<string>()
  const out: string[] = []
  for (const dir of dirs) {
    const path = join(dir, name)
    try {
      accessSync(path, constants.X_OK)
    } catch {
      continue
    }
    let real = path
    try {
      real = realpathSync(path)
    } catch {
      continue
    }
    if (seen.has(real)) continue
    seen.add(real)
    out.push(path)
  }
  return out
}

/** Python interpreters that can import every module of `modules`, each with those modules' versions. */
export async function pythonsWith(modules: readonly string[]): Promise<{python: string; versions: Record<string, string>}[]> {
  const found: {python: string; versions: Record<string, string>}[] = []
  const seenVersions = new Set<string>()
  for (const python of executables('python3')) {
    const code = `import json, importlib\nprint(json.dumps({m: getattr(importlib.import_module(m), '__version__', '?') for m in ${JSON.stringify(modules)}}))`
    const r = await execa(python, ['-c', code], {reject: false, timeout: 30_000})
    if (r.exitCode !== 0) continue
    const versions = JSON.parse(String(r.stdout)) as Record<string, string>
    const key = JSON.stringify(versions)
    if (seenVersions.has(key)) continue // the same installation reached by two paths
    seenVersions.add(key)
    found.push({python, versions})
  }
  return found
}

/** Print why a test is skipped (vitest's skip reason is not shown in every reporter). */
export function skipNote(what: string, why: string): string {
  const line = `[real clients] ${what} skipped: ${why}`
  process.stderr.write(`${line}\n`)
  return line
}
