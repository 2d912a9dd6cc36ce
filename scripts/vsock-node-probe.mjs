// Can Node itself be the enclave's vsock bridge (instead of socat)? Opens an AF_VSOCK socket through
// koffi (as the NSM client opens /dev/nsm), binds and listens on it, then asks Node's net module to
// serve on that descriptor, and to wrap one as a stream. Prints what each step gave.
// Measured (docs/runtime.md): the socket, bind and listen work; Node 20 and 24 refuse the
// descriptor (listen EINVAL; net.Socket ERR_INVALID_FD_TYPE: libuv knows TCP, pipes and TTYs,
// not AF_VSOCK), so a Node bridge would have to move the bytes itself through koffi calls.
//   node scripts/vsock-node-probe.mjs [port]
import {createRequire} from 'node:module'
import net from 'node:net'

const koffi = createRequire(import.meta.url)('koffi')
const libc = koffi.load('libc.so.6')
const socket = libc.func('int socket(int, int, int)')
const bind = libc.func('int bind(int, void *, uint32_t)')
const listen = libc.func('int listen(int, int)')
const AF_VSOCK = 40
const SOCK_STREAM = 1
const port = Number(process.argv[2] ?? 5005)

const step = (what, rc) => console.log(`${what}: ${rc}${rc < 0 ? ` (errno ${koffi.errno()})` : ''}`)
const fd = socket(AF_VSOCK, SOCK_STREAM, 0)
step('socket(AF_VSOCK)', fd)
if (fd < 0) process.exit(1)
// struct sockaddr_vm {sa_family_t svm_family; unsigned short svm_reserved1; unsigned int svm_port; unsigned int svm_cid; unsigned char svm_zero[4]}
const addr = Buffer.alloc(16)
addr.writeUInt16LE(AF_VSOCK, 0)
addr.writeUInt32LE(port, 4)
addr.writeUInt32LE(0xffffffff, 8) // VMADDR_CID_ANY
step('bind', bind(fd, addr, addr.length))
step('listen', listen(fd, 16))
try {
  new net.Socket({fd: socket(AF_VSOCK, SOCK_STREAM, 0)})
  console.log('net.Socket({fd}): accepted')
} catch (error) {
  console.log(`net.Socket({fd}): ${error.code} ${error.message}`)
}
const server = net.createServer()
server.on('error', (error) => {
  console.log(`net.Server.listen({fd}): ${error.code} ${error.message}`)
  process.exit(0)
})
server.listen({fd}, () => {
  console.log('net.Server.listen({fd}): listening')
  process.exit(0)
})
