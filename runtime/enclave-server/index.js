#!/usr/bin/env node
// Entry point of the enclave server (flags and exit codes: src/lib/server/main.ts, compiled to dist/).
//   node runtime/enclave-server/index.js --config /app/nle.runtime.json --socket /run/nle/server.sock
import {runEnclaveServer} from '../../dist/lib/server/main.js'

process.exitCode = await runEnclaveServer(process.argv.slice(2))
// Exit explicitly: onnxruntime's thread pool can otherwise keep the process (PID 1) alive.
process.exit()
