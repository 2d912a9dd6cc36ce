// The pinned enclave Node (src/lib/host/node-runtime.ts) for tests: one cache per machine, filled
// once by test/global-setup.ts with the real npm and tar, then handed to every fake host (whose PATH
// holds only fakes) through NLE_CACHE_DIR, so native builds in tests neither fetch nor need npm.
import {tmpdir} from 'node:os'
import {join} from 'node:path'

export const TEST_CACHE_DIR = join(tmpdir(), 'nle-test-cache')
