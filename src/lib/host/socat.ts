/**
 * socat as the parent-side vsock bridge: a Unix socket on the host forwarded to the enclave's
 * vsock port, one connection per client (`fork`). The same addresses as
 * templates/parent/nle-vsock-bridge.service.
 */
import {type HostContext, runTool} from './exec.js'

export interface BridgeSpec {
  socketPath: string
  cid: number
  vsockPort: number
}

/** socat's argv for the bridge. `unlink-early` removes a stale socket left by a crash. */
export function bridgeArgs(b: BridgeSpec): string[] {
  return [`UNIX-LISTEN:${b.socketPath},fork,unlink-early,mode=0660`, `VSOCK-CONNECT:${b.cid}:${b.vsockPort}`]
}

/** `socat -V` → "1.7.4.4" (VSOCK addresses need 1.7.4 or newer). */
export async function socatVersion(ctx: HostContext): Promise<string> {
  const r = await runTool(ctx, 'socat', ['-V'])
  return /socat version ([\w.+-]+)/.exec(`${r.stdout}\n${r.stderr}`)?.[1] ?? 'unknown'
}
