// Regenerates runtime/enclave-server/ and runtime/parent-proxy/'s package.json and package-lock.json
// from each runtime's import graph over the compiled dist/ and nle's own lockfile
// (src/lib/runtime/packages.ts). Run after `npm run build` whenever a runtime's imports or nle's
// dependencies change; test/runtime-packages.test.ts fails while the committed files are stale.
import {writeRuntimeManifests} from '../src/lib/runtime/packages.js'

for (const f of await writeRuntimeManifests()) console.log(`wrote ${f}`)
