#!/usr/bin/env node
// Entry point of the parent proxy (flags: src/lib/proxy/main.ts, compiled to dist/). `nle proxy` is the same.
//   node runtime/parent-proxy/index.js --config /etc/nle/app/nle.yaml --upstream unix:/run/nle/app.sock
import {runParentProxy} from '../../dist/lib/proxy/main.js'

process.exitCode = await runParentProxy(process.argv.slice(2))
process.exit()
