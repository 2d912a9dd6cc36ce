/**
 * The enclave server's development entry: the same server (src/lib/server/main.ts) plus what only a
 * development run may have — the NSM simulator (`--nsm simulator`, with --eif / --lockfile PCRs) and
 * an nle.yaml as its config. `nle dev` and the tests start this file; the enclave image runs
 * runtime/enclave-server/index.js, which has neither (its package does not even hold them).
 *
 *   node dist/lib/dev/enclave-server.js --socket /tmp/nle.sock --config nle.yaml --nsm simulator --eif build/enclave.eif
 */
import {writeFile} from 'node:fs/promises'
import {resolve} from 'node:path'
import {pathToFileURL} from 'node:url'

import {NsmSimulator} from '../attestation/simulator.js'
import {loadConfig} from '../config/load.js'
import {type ServerExtensions, runEnclaveServer} from '../server/main.js'

export const DEV_SERVER_EXTENSIONS: ServerExtensions = {
  async simulator(o, logger) {
    // --eif: the PCRs nle's reader measures in the image (what `nle dev` runs); --lockfile: recorded ones.
    const options = {debug: o.debug}
    const sim = o.eif ? await NsmSimulator.fromEif(o.eif, options) : o.lockfile ? await NsmSimulator.fromLockfile(o.lockfile, options) : new NsmSimulator(options)
    if (o.rootOut) await writeFile(o.rootOut, sim.rootPem)
    logger.log('warn', 'nsm_simulator', {note: 'attestation documents are signed by a simulator root, not by AWS'})
    return sim
  },
  async readProjectConfig(path) {
    const {config, dir} = await loadConfig(path)
    return {
      model: {path: resolve(dir, config.model.path), dtype: config.model.dtype, ...(config.model.digest ? {digest: config.model.digest} : {})},
      runtime: config.runtime,
    }
  },
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await runEnclaveServer(process.argv.slice(2), DEV_SERVER_EXTENSIONS)
  // Exit explicitly: onnxruntime's thread pool can otherwise keep the process alive.
  process.exit()
}
