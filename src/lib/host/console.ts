/** `nle console`: attach to a debug-mode enclave's console. */
import type {LoadedConfig} from '../config/load.js'
import {hostError} from './errors.js'
import type {HostContext} from './exec.js'
import {attachConsole, describeEnclaves} from './nitro-cli.js'
import {projectPaths} from './project.js'
import {readRunState} from './run-state.js'

export async function projectConsole(o: {loaded: LoadedConfig; ctx: HostContext; disconnectTimeoutSec?: number}): Promise<void> {
  const paths = projectPaths(o.loaded)
  const state = await readRunState(paths)
  const enclaves = await describeEnclaves(o.ctx)
  const ours = enclaves.find((e) => (state ? e.EnclaveID === state.enclave.id : e.EnclaveName === o.loaded.config.name))
  if (!ours) throw hostError('RUN_NOT_RUNNING', `No enclave of ${o.loaded.config.name} is running.`, {hint: 'Start it with `nle run` (with enclave.debug: true for a console).'})
  if (ours.Flags !== 'DEBUG_MODE') {
    throw hostError('RUN_CONSOLE_NEEDS_DEBUG', `Enclave ${ours.EnclaveID} was not started in debug mode, so it has no console.`, {
      hint: 'Set enclave.debug: true in nle.yaml, then `nle stop` and `nle run`. A debug enclave attests all-zero PCRs, so PCR-gated KMS calls are denied.',
    })
  }
  await attachConsole(o.ctx, ours.EnclaveID, o.disconnectTimeoutSec)
}
