#!/usr/bin/env node
// The enclave server's entry, and the entry of the runtime package (runtime/enclave-server/package.json):
// what the enclave image runs. Flags and exit codes: src/lib/server/main.ts, compiled to dist/.
// This entry has no NSM simulator and reads only nle.runtime.json; development runs start
// dist/lib/dev/enclave-server.js instead (`nle dev` does).
//   node runtime/enclave-server/index.js --config /app/nle.runtime.json --socket /run/nle/server.sock
import {runEnclaveServer} from '../../dist/lib/server/main.js'

process.exitCode = await runEnclaveServer(process.argv.slice(2))
// Exit explicitly: onnxruntime's thread pool can otherwise keep the process (PID 1) alive.
process.exit()
