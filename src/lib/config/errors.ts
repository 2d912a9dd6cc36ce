/** Error codes of nle's input files: the project's nle.yaml (CONFIG_*) and nle.lock.json (LOCKFILE_*). */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {CONFIG, IO} = ExitCode

/** nle.yaml's keys are documented by the JSON schema shipped in the package (not in the user's project). */
const SCHEMA = 'every key, its type and default is in the nle package\'s schema/nle.schema.json (an editor with YAML support shows them through nle.yaml\'s first line)'

export const CONFIG_ERRORS = defineErrors({
  CONFIG_NOT_FOUND: {exit: CONFIG, summary: 'nle.yaml (or the file given with --config) cannot be read.', hint: 'Run `nle init` to create a project, or pass --config PATH'},
  CONFIG_SYNTAX: {exit: CONFIG, summary: 'nle.yaml is not valid YAML .', hint: 'Fix the YAML syntax at the position shown'},
  CONFIG_TOO_COMPLEX: {exit: CONFIG, summary: 'nle.yaml\'s YAML aliases expand past the limit (a "billion laughs" document): refused as resource exhaustion.', hint: 'Write the values out instead of using YAML anchors and aliases (*name) in nle.yaml'},
  CONFIG_UNKNOWN_KEY: {exit: CONFIG, summary: 'nle.yaml has a key nle does not know (typos included).', hint: `Remove or rename the key; ${SCHEMA}`},
  CONFIG_MISSING_KEY: {exit: CONFIG, summary: 'nle.yaml lacks a required key.', hint: `Add the key named above; ${SCHEMA}`},
  CONFIG_TYPE: {exit: CONFIG, summary: 'A value in nle.yaml has the wrong type.', hint: `Fix the value named above; ${SCHEMA}`},
  CONFIG_INVALID_VALUE: {exit: CONFIG, summary: 'A value in nle.yaml is out of range or not one of the allowed values.', hint: `Fix the value named above; ${SCHEMA}`},
  LOCKFILE_NOT_FOUND: {exit: IO, summary: 'No measurements lockfile (nle.lock.json) at the path.', hint: 'Build the enclave image first (`nle build` or `nle eif build … --lockfile`), which writes it'},
  LOCKFILE_UNREADABLE: {exit: IO, summary: 'The lockfile exists but cannot be read.', hint: 'Check the file\'s permissions'},
  LOCKFILE_BAD_JSON: {exit: CONFIG, summary: 'The lockfile is not valid JSON.', hint: 'Regenerate the lockfile (`nle build`); do not edit it by hand'},
  LOCKFILE_UNSUPPORTED_VERSION: {exit: CONFIG, summary: 'The lockfile\'s version is not one this nle reads.', hint: 'Regenerate it with this version of nle (`nle build` or `nle eif build`)'},
  LOCKFILE_INVALID: {exit: CONFIG, summary: 'The lockfile is JSON but not a valid nle lockfile.', hint: 'Do not edit the lockfile by hand; regenerate it. Its fields are described in docs/lockfile.md'},
  LOCKFILE_WRITE_FAILED: {exit: IO, summary: 'The lockfile could not be written.', hint: 'Check free space and the permissions of its folder'},
})

export type ConfigErrorCode = Extract<keyof typeof CONFIG_ERRORS, `CONFIG_${string}`>
export type LockfileErrorCode = Extract<keyof typeof CONFIG_ERRORS, `LOCKFILE_${string}`>

export function configError<C extends ConfigErrorCode | LockfileErrorCode>(code: C, message: string, options: NleErrorOptions = {}): NleError<C> {
  return new NleError(code, message, options)
}
