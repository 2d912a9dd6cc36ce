// ../shared/testdata (real artifacts: attestation documents, KMS envelopes, real-exporter models) sits
// beside the checkout in CI and on the team's machines, not in a clone of the project alone. Tests
// that need it ask here: they run where it is, and skip with a printed reason where it is not.
import {existsSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

export const SHARED_TESTDATA = fileURLToPath(new URL('../../../shared/testdata/', import.meta.url))

const said = new Set<string>()

/**
 * The absolute path of `sub` under ../shared/testdata (with a trailing slash for folders), or
 * undefined — after printing, once per folder, why the tests that need it are skipped.
 */
export function sharedTestdata(sub: string): string | undefined {
  const path = `${SHARED_TESTDATA}${sub}`
  if (existsSync(path)) return path
  if (!said.has(sub)) {
    said.add(sub)
    console.log(`[skip] ${path} is absent (a clone without ../shared): the tests that need ${sub} are skipped.`)
  }
  return undefined
}
