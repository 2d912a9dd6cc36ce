// Integration tests run the compiled CLI (bin/run.js → dist/). Compile once per run so the
// processes they start always run the code under test. Type errors do not stop the tests here
// (tsc still emits; `npm run typecheck` is the gate for them). The oclif manifest is *not*
// regenerated here: test/sync.test.ts checks that the committed one is in sync.
import {spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {pinnedNodeBinary} from '../src/lib/host/node-runtime.js'
import {TEST_CACHE_DIR} from '../src/test-support/node-cache.js'

export default async function setup(): Promise<void> {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const r = spawnSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.build.json`], {cwd: root, encoding: 'utf8'})
  if (r.status !== 0) process.stderr.write(`global-setup: tsc reported type errors (tests run anyway; see npm run typecheck):\n${r.stdout.split('\n').slice(0, 5).join('\n')}\n`)
  if (!existsSync(`${root}/dist/commands`)) throw new Error('global-setup: tsc produced no dist/commands')
  // The pinned Node the native builder puts in images (fetched once per machine, from npm's cache when offline).
  try {
    await pinnedNodeBinary({env: {...process.env, NLE_CACHE_DIR: TEST_CACHE_DIR}})
  } catch (error) {
    process.stderr.write(`global-setup: the pinned enclave Node could not be fetched (native builds in tests will fail with BUILD_NODE_*): ${(error as Error).message}\n`)
  }
}
