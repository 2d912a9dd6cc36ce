/**
 * Error codes of host orchestration (src/lib/host): the wrappers over docker, nitro-cli,
 * systemctl and socat, and the build / allocator / run flows built on them. Tests assert these
 * codes, never messages.
 */
import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

export type HostErrorCode =
  // any wrapped tool
  | 'HOST_TOOL_MISSING'
  | 'HOST_TOOL_FAILED'
  | 'HOST_TOOL_BAD_OUTPUT'
  | 'HOST_SYSTEMCTL_FAILED'
  | 'HOST_PROC_UNREADABLE'
  // nitro-cli, by root cause (the first `[ Exx ]` it printed)
  | 'NITRO_CLI_FAILED'
  | 'NITRO_MEMORY_BELOW_EIF_RULE'
  | 'NITRO_MEMORY_POOL_TOO_SMALL'
  | 'NITRO_CPU_POOL_TOO_SMALL'
  | 'NITRO_DEVICE_MISSING'
  | 'NITRO_HUGEPAGES_UNAVAILABLE'
  | 'NITRO_ENCLAVE_BOOT_FAILED'
  | 'NITRO_CONSOLE_NEEDS_DEBUG'
  | 'NITRO_DOCKER_BUILD_FAILED'
  | 'NITRO_DOCKER_PULL_FAILED'
  | 'NITRO_BLOBS_MISSING'
  | 'NITRO_SIGNING_CERT_INVALID'
  | 'NITRO_SIGNING_FAILED'
  | 'NITRO_ENCLAVE_NOT_FOUND'
  // docker
  | 'DOCKER_DAEMON_UNREACHABLE'
  | 'DOCKER_BUILD_FAILED'
  | 'DOCKER_IMAGE_NOT_FOUND'
  | 'DOCKER_FAILED'
  // allocator
  | 'ALLOCATOR_NO_EIF'
  | 'ALLOCATOR_BAD_YAML'
  | 'ALLOCATOR_CONFIG_NOT_FOUND'
  | 'ALLOCATOR_INSUFFICIENT_MEMORY'
  | 'ALLOCATOR_INSUFFICIENT_CPUS'
  | 'ALLOCATOR_ENCLAVE_RUNNING'
  | 'ALLOCATOR_WRITE_FAILED'
  | 'ALLOCATOR_RESTART_FAILED'
  // build
  | 'BUILD_NO_DOCKERFILE'
  | 'BUILD_MODEL_MISSING'
  | 'BUILD_MODEL_DIGEST_MISMATCH'
  | 'BUILD_MODEL_CHANGED'
  | 'BUILD_MODEL_DTYPE_MISMATCH'
  | 'BUILD_PCR_MISMATCH'
  | 'BUILD_BLOBS_INCOMPLETE'
  | 'BUILD_SIGNING_FILE_MISSING'
  // run / status / stop / console
  | 'RUN_EIF_MISSING'
  | 'RUN_EIF_NOT_BOOTABLE'
  | 'RUN_LOCKFILE_MISMATCH'
  | 'RUN_ALREADY_RUNNING'
  | 'RUN_MEMORY_TOO_SMALL'
  | 'RUN_PROCESS_EXITED'
  | 'RUN_HEALTH_TIMEOUT'
  | 'RUN_STATE_INVALID'
  | 'RUN_NOT_RUNNING'
  | 'RUN_CONSOLE_NEEDS_DEBUG'
  | 'RUN_STOP_INCOMPLETE'

const EXIT: Partial<Record<HostErrorCode, ExitCode>> = {
  HOST_PROC_UNREADABLE: ExitCode.IO,
  ALLOCATOR_NO_EIF: ExitCode.IO,
  ALLOCATOR_BAD_YAML: ExitCode.CONFIG,
  ALLOCATOR_CONFIG_NOT_FOUND: ExitCode.IO,
  ALLOCATOR_WRITE_FAILED: ExitCode.IO,
  BUILD_NO_DOCKERFILE: ExitCode.IO,
  BUILD_MODEL_MISSING: ExitCode.IO,
  BUILD_MODEL_DIGEST_MISMATCH: ExitCode.VERIFY,
  BUILD_MODEL_CHANGED: ExitCode.VERIFY,
  BUILD_MODEL_DTYPE_MISMATCH: ExitCode.CONFIG,
  BUILD_PCR_MISMATCH: ExitCode.VERIFY,
  BUILD_BLOBS_INCOMPLETE: ExitCode.IO,
  BUILD_SIGNING_FILE_MISSING: ExitCode.CONFIG,
  RUN_EIF_MISSING: ExitCode.IO,
  RUN_EIF_NOT_BOOTABLE: ExitCode.CHECK_FAILED,
  RUN_LOCKFILE_MISMATCH: ExitCode.VERIFY,
  RUN_MEMORY_TOO_SMALL: ExitCode.CONFIG,
  RUN_HEALTH_TIMEOUT: ExitCode.NETWORK,
  RUN_PROCESS_EXITED: ExitCode.TOOL,
  RUN_STATE_INVALID: ExitCode.IO,
  RUN_STOP_INCOMPLETE: ExitCode.TOOL,
}

/** A host failure that is not an external program's own failure (those are ToolErrors). */
export function hostError(code: HostErrorCode, message: string, options: NleErrorOptions = {}): NleError<HostErrorCode> {
  return new NleError(code, message, {exitCode: EXIT[code] ?? ExitCode.CHECK_FAILED, ...options})
}
