/** Wrappers over systemctl for the units nle drives (nitro-enclaves-allocator, nle-vsock-bridge, nle-parent-proxy). */
import {ToolError} from '../errors.js'
import type {HostErrorCode} from './errors.js'
import {type HostContext, runTool} from './exec.js'

export const ALLOCATOR_UNIT = 'nitro-enclaves-allocator.service'

async function systemctl(ctx: HostContext, args: string[], hint?: string): Promise<string> {
  const r = await runTool(ctx, 'systemctl', args)
  if (r.exitCode !== 0) {
    throw new ToolError<HostErrorCode>('HOST_SYSTEMCTL_FAILED', `systemctl ${args.join(' ')} failed (exit ${r.exitCode}).`, {
      tool: 'systemctl',
      argv: args,
      toolExitCode: r.exitCode,
      stderr: r.stderr,
      hint: hint ?? `See \`systemctl status ${args[args.length - 1] ?? ''}\` and \`journalctl -u ${args[args.length - 1] ?? ''}\`. Changing units needs root (sudo).`,
    })
  }
  return r.stdout
}

/** `systemctl is-active UNIT` → "active", "inactive", "failed", … (a non-zero exit is an answer, not an error). */
export async function unitState(ctx: HostContext, unit: string): Promise<string> {
  const r = await runTool(ctx, 'systemctl', ['is-active', unit])
  return r.stdout.trim() || 'unknown'
}

export async function restartUnit(ctx: HostContext, unit: string, hint?: string): Promise<void> {
  await systemctl(ctx, ['restart', unit], hint)
}

export async function startUnits(ctx: HostContext, units: readonly string[]): Promise<void> {
  await systemctl(ctx, ['start', ...units])
}

export async function stopUnits(ctx: HostContext, units: readonly string[]): Promise<void> {
  await systemctl(ctx, ['stop', ...units])
}

export async function daemonReload(ctx: HostContext): Promise<void> {
  await systemctl(ctx, ['daemon-reload'])
}
