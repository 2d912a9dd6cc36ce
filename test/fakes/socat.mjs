// Fake socat for the vsock bridge `UNIX-LISTEN:<path>,… VSOCK-CONNECT:<cid>:<port>`. It listens
// on the Unix socket and plays the enclave server behind the vsock connection: GET /healthz → 200
// while an enclave with that CID is RUNNING in the fake nitro-cli's state (a connection to a CID
// with no enclave is closed, as a failed VSOCK-CONNECT closes the client's). `-V` prints the
// version banner of socat 1.7.4.4 (socat.c).
// KMS mode's credentials bridge `VSOCK-LISTEN:<port>,… UNIX-CONNECT:<path>` cannot listen on vsock
// here: it checks its addresses and stays up until SIGTERM.
// Knobs: NLE_FAKE_STATE, NLE_FAKE_LOG, FAKE_ENCLAVE_HEALTH=<status> (e.g. 503), FAKE_SOCAT_EXIT=1.
import {rmSync} from 'node:fs'
import {createServer} from 'node:http'

import {readState, record, stayUntilSignalled} from './lib.mjs'

record('socat')
const args = process.argv.slice(2)
if (args[0] === '-V') {
  process.stdout.write('socat by Gerhard Rieger and contributors - see www.dest-unreach.org\nsocat version 1.7.4.4 on 06 Nov 2022 08:15:51\n   running on Linux version #1 SMP, release 6.1.0, machine x86_64\n')
  process.exit(0)
}
const vsockListen = /^VSOCK-LISTEN:(\d+)(,|$)/.exec(args[0] ?? '')
const unixConnect = /^UNIX-CONNECT:(\/\S+)$/.exec(args[1] ?? '')
if (vsockListen && unixConnect) stayUntilSignalled()
else vsockBridge()


function vsockBridge() {
  const listen = /^UNIX-LISTEN:([^,]+)/.exec(args[0] ?? '')
  const vsock = /^VSOCK-CONNECT:(\d+):(\d+)$/.exec(args[1] ?? '')
  if (!listen || !vsock) {
    process.stderr.write(`2026/11/26 08:30:00 socat[${process.pid}] E unknown address "${args[0]}"\n`)
    process.exit(1)
  }
  if (process.env.FAKE_SOCAT_EXIT) {
    process.stderr.write(`2026/11/26 08:30:00 socat[${process.pid}] E socket(40, 1, 0): Address family not supported by protocol\n`)
    process.exit(1)
  }
  const [, path] = listen
  const cid = Number(vsock[1])
  const server = createServer((req, res) => {
    const up = readState('enclaves.json', []).some((e) => e.EnclaveCID === cid && e.State === 'RUNNING')
    if (!up) return req.socket.destroy()
    const status = Number(process.env.FAKE_ENCLAVE_HEALTH ?? 200)
    res.writeHead(req.url === '/healthz' ? status : 404, {'content-type': 'application/json'})
    res.end(JSON.stringify({status: status === 200 ? 'ok' : 'starting'}))
  })
  rmSync(path, {force: true})
  server.listen(path)
  const stop = () => {
    server.close()
    rmSync(path, {force: true})
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
