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

/** Parse the JSON a `--json` run printed on stdout. */
export function json<T = Record<string, unknown>>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.exitCode}):\n${r.stdout}\n--- stderr:\n${r.stderr}`)
  }
}
