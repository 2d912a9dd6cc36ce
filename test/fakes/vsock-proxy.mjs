// Fake vsock-proxy (aws-nitro-enclaves-cli's vsock_proxy): `vsock-proxy <local vsock port>
// <remote host> <remote port> [--config <allowlist>]`. It cannot listen on vsock here, so it checks
// its arguments as the real one parses them, then stays up until SIGTERM like the real daemon.
// Knobs: NLE_FAKE_LOG, FAKE_VSOCK_PROXY_EXIT=1 (dies at once, as when the port is taken).

import {record, stayUntilSignalled} from './lib.mjs'

record('vsock-proxy')
const args = process.argv.slice(2)
const positional = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--config') i++
  else positional.push(args[i])
}
const [local, host, remote] = positional
const port = (s) => /^\d+$/.test(s ?? '') && Number(s) > 0 && Number(s) < 2 ** 32
if (positional.length !== 3 || !port(local) || !host || !port(remote)) {
  process.stderr.write('error: The following required arguments were not provided:\n    <local_port>\n    <remote_addr>\n    <remote_port>\n')
  process.exit(1)
}
if (process.env.FAKE_VSOCK_PROXY_EXIT) {
  process.stderr.write('[ERROR vsock_proxy] Could not bind to port: Address already in use (os error 98)\n')
  process.exit(1)
}
stayUntilSignalled()
