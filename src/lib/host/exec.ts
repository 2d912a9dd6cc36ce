/**
 * The one way host code runs an external program. Every wrapper (docker, nitro-cli, systemctl,
 * socat) goes through `runTool`, so a missing program is always the same error naming the package
 * to install, and a failure always carries argv, exit status and the stderr tail.
 */
import {execa} from 'execa'

import {ToolError} from '../errors.js'
import type {HostErrorCode} from './errors.js'

export type ToolName = 'docker' | 'nitro-cli' | 'systemctl' | 'socat' | 'vsock-proxy' | 'npm' | 'tar' | 'ldd' | 'node'

/** What to install when a tool is missing. */
export const TOOL_PACKAGES: Record<ToolName, string> = {
  docker: 'Install Docker: `sudo dnf install -y docker && sudo systemctl enable --now docker` (Amazon Linux 2023) or `sudo apt-get install -y docker.io` (Debian/Ubuntu).',
  'nitro-cli':
    'Install the Nitro Enclaves CLI: `sudo dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel` (Amazon Linux; -devel ships the kernel/init blobs), then add your user to the `ne` group.',
  systemctl: 'systemctl comes with systemd; on a host without systemd use `nle run` without --systemd (managed processes).',
  socat: 'Install socat: `sudo dnf install -y socat` (Amazon Linux) or `sudo apt-get install -y socat` (Debian/Ubuntu).',
  'vsock-proxy': 'vsock-proxy comes with the Nitro Enclaves CLI: `sudo dnf install -y aws-nitro-enclaves-cli` (Amazon Linux).',
  npm: 'npm comes with Node.js (nle runs on Node); put its folder on PATH.',
  tar: 'Install tar: `sudo dnf install -y tar` (Amazon Linux) or `sudo apt-get install -y tar` (Debian/Ubuntu).',
  ldd: 'ldd comes with the C library: `sudo dnf install -y glibc-common` (Amazon Linux) or `sudo apt-get install -y libc-bin` (Debian/Ubuntu).',
  node: 'The native builder runs the image\'s pinned Node (src/lib/host/node-runtime.ts) from nle\'s cache; delete the cache folder and build again.',
}

/** Where host code finds its tools: the environment (PATH) they run with. Tests point PATH at fakes. */
export interface HostContext {
  env: NodeJS.ProcessEnv
}

export function defaultHostContext(): HostContext {
  return {env: process.env}
}

export interface ToolResult {
  exitCode: number
  stdout: string
  stderr: string
}

export interface RunToolOptions {
  cwd?: string
  /** Extra environment for this call (merged over the context's). */
  env?: NodeJS.ProcessEnv
  /** Kill the tool after this long (no limit by default: builds take what they take). */
  timeoutMs?: number
  /** Interactive tools (`nitro-cli console`): stdin and stdout are the terminal's; stderr is still captured. */
  inherit?: boolean
  /** Run this file instead of looking `tool` up on PATH (the image's pinned Node). */
  executable?: string
}

/**
 * Run a tool and return its output whatever its exit status; throws only when it cannot be run
 * at all (HOST_TOOL_MISSING, or HOST_TOOL_FAILED when it was killed or timed out).
 */
export async function runTool(ctx: HostContext, tool: ToolName, args: readonly string[], options: RunToolOptions = {}): Promise<ToolResult> {
  const r = await execa(options.executable ?? tool, args, {
    reject: false,
    cwd: options.cwd,
    env: {...ctx.env, ...options.env, LC_ALL: 'C'},
    extendEnv: false,
    stdin: options.inherit ? 'inherit' : 'ignore',
    stdout: options.inherit ? 'inherit' : 'pipe',
    stderr: 'pipe',
    timeout: options.timeoutMs,
    stripFinalNewline: false,
  })
  const stderr = String(r.stderr ?? '')
  if ((r as {code?: string}).code === 'ENOENT') throw toolMissing(tool, args)
  if (r.exitCode === undefined) {
    throw new ToolError<HostErrorCode>('HOST_TOOL_FAILED', `${tool} ${args[0] ?? ''} did not finish${r.timedOut ? ' (timed out)' : r.signal ? ` (killed by ${r.signal})` : ''}.`, {
      tool,
      argv: args,
      toolExitCode: undefined,
      stderr,
      cause: r,
    })
  }
  return {exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr}
}

export function toolMissing(tool: ToolName, args: readonly string[]): ToolError<HostErrorCode> {
  return new ToolError<HostErrorCode>('HOST_TOOL_MISSING', `${tool} is not installed (not found on PATH).`, {
    tool,
    argv: args,
    toolExitCode: undefined,
    stderr: '',
    hint: TOOL_PACKAGES[tool],
  })
}

/** Parse a tool's JSON stdout or fail with HOST_TOOL_BAD_OUTPUT (never guess at a shape). */
export function parseToolJson(tool: ToolName, args: readonly string[], r: ToolResult): unknown {
  try {
    return JSON.parse(r.stdout)
  } catch (error) {
    throw new ToolError<HostErrorCode>('HOST_TOOL_BAD_OUTPUT', `${tool} ${args[0] ?? ''} printed something that is not JSON.`, {
      tool,
      argv: args,
      toolExitCode: r.exitCode,
      stderr: `${r.stderr}\n--- stdout:\n${r.stdout.slice(0, 2000)}`,
      hint: `Check \`${tool} --version\`; nle expects the output format of nitro-cli 1.2-1.5 / Docker 20+.`,
      cause: error,
    })
  }
}

export function badShape(tool: ToolName, args: readonly string[], r: ToolResult, what: string): ToolError<HostErrorCode> {
  return new ToolError<HostErrorCode>('HOST_TOOL_BAD_OUTPUT', `${tool} ${args[0] ?? ''}: unexpected output (${what}).`, {
    tool,
    argv: args,
    toolExitCode: r.exitCode,
    stderr: `${r.stderr}\n--- stdout:\n${r.stdout.slice(0, 2000)}`,
  })
}
