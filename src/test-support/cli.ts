import {fileURLToPath} from 'node:url'

import {execa} from 'execa'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const BIN = `${REPO_ROOT}bin/run.js`

export interface CliResult {
  exitCode: number
  stdout: string
  stderr: string
}

/** Run the compiled CLI (bin/run.js → dist/) as a user would. */
export async function runCli(
  args: readonly string[],
  options: {cwd?: string; env?: NodeJS.ProcessEnv; extendEnv?: boolean; input?: string; timeout?: number} = {},
): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN, ...args], {
    reject: false,
    cwd: options.cwd ?? REPO_ROOT,
    env: {NO_COLOR: '1', ...options.env},
    extendEnv: options.extendEnv ?? true,
    input: options.input,
    timeout: options.timeout ?? 60_000,
  })
  return {exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr)}
}

/** Parse the JSON a `--json` run printed on stdout (the whole of it: one envelope, src/cli/json.ts). */
export function json<T = Record<string, unknown>>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.exitCode}):\n${r.stdout}\n--- stderr:\n${r.stderr}`)
  }
}

interface AnyEnvelope {
  ok: boolean
  command: string | null
  schemaVersion: number
  exitCode: number
  result?: unknown
  error?: {code: string; message: string; hint: string; docs: string; exitCode: number; details?: Record<string, unknown>}
}

function envelope(r: CliResult, ok: boolean): AnyEnvelope {
  const e = json<AnyEnvelope>(r)
  const problem =
    e.ok !== ok ? `ok is ${String(e.ok)}` : e.schemaVersion !== 1 ? `schemaVersion ${e.schemaVersion}` : e.exitCode !== r.exitCode ? `exitCode ${e.exitCode} but the process exited ${r.exitCode}` : undefined
  if (problem) throw new Error(`not the ${ok ? 'success' : 'failure'} envelope (${problem}):\n${r.stdout}\n--- stderr:\n${r.stderr}`)
  return e
}

/** The `result` of a `--json` run's success envelope (which must be all of stdout, its exitCode the process's). */
export function jsonResult<T = Record<string, unknown>>(r: CliResult): T {
  return envelope(r, true).result as T
}

/** The `error` of a `--json` run's failure envelope (all of stdout; its exitCode, and the error's, the process's). */
export function jsonFailure<D = Record<string, unknown>>(r: CliResult): {code: string; message: string; hint: string; docs: string; exitCode: number; details: D} {
  const e = envelope(r, false)
  if (e.error?.exitCode !== r.exitCode) throw new Error(`the error's exitCode ${e.error?.exitCode} is not the process's ${r.exitCode}:\n${r.stdout}`)
  return e.error as {code: string; message: string; hint: string; docs: string; exitCode: number; details: D}
}
