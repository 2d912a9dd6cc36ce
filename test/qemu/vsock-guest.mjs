// The guest side of the vsock test (test/vsock-qemu.test.ts), run by Node inside QEMU's
// nitro-enclave machine. AF_VSOCK through koffi (Node's net has no vsock), one poll() loop.
//   port 5000  echo: every byte back; the peer's end-of-file is passed on after the last byte.
//   port 5001  sink: reads to end-of-file, answers "<sha256 hex> <bytes>\n" and closes.
// Commands on the serial console (stdin), one a line, each answered by one "RESULT …" line:
//   ECHO <port> <bytes>   connect to CID 3:<port>, send random bytes, read them back, compare.
//   SEND <port> <bytes>   connect to CID 3:<port>, send random bytes, end, read the host's
//                         "<sha256 hex>" line, compare with our own.
//   RTT <port> <count>    connect to CID 3:<port> (an echo), <count> one-byte round trips, one at a time.
//   QUIT                  exit (init then powers the machine off).
import {createHash, randomBytes} from 'node:crypto'
import {createRequire} from 'node:module'
import {performance} from 'node:perf_hooks'

const koffi = createRequire(import.meta.url)('koffi')
const lib = koffi.load('libc.so.6')
const c = {
  socket: lib.func('int socket(int, int, int)'),
  bind: lib.func('int bind(int, void *, uint32_t)'),
  listen: lib.func('int listen(int, int)'),
  accept4: lib.func('int accept4(int, void *, void *, int)'),
  connect: lib.func('int connect(int, void *, uint32_t)'),
  read: lib.func('intptr_t read(int, _Out_ uint8_t *buf, size_t)'),
  write: lib.func('intptr_t write(int, const uint8_t *buf, size_t)'),
  shutdown: lib.func('int shutdown(int, int)'),
  close: lib.func('int close(int)'),
  poll: lib.func('int poll(_Inout_ uint8_t *fds, uint64_t, int)'),
  fcntl: lib.func('int fcntl(int, int, int)'),
}
const AF_VSOCK = 40
const SOCK_STREAM = 1
const SOCK_NONBLOCK = 0o4000
const F_SETFL = 4
const O_NONBLOCK = 0o4000
const EAGAIN = 11
const POLLIN = 1
const POLLOUT = 4
const SHUT_WR = 1
const CHUNK = 256 * 1024

const say = (line) => process.stdout.write(`${line}\n`)

function sockaddr(cid, port) {
  const a = Buffer.alloc(16)
  a.writeUInt16LE(AF_VSOCK, 0)
  a.writeUInt32LE(port, 4)
  a.writeUInt32LE(cid, 8)
  return a
}

function check(what, rc) {
  if (rc < 0) throw new Error(`${what} failed (errno ${koffi.errno()})`)
  return rc
}

function listenOn(port) {
  const fd = check('socket', c.socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK, 0))
  check(`bind ${port}`, c.bind(fd, sockaddr(0xffffffff, port), 16))
  check('listen', c.listen(fd, 16))
  return fd
}

const readBuf = Buffer.alloc(CHUNK)
/** Bytes read (a copy), null at end-of-file, undefined when nothing is there yet. */
function readSome(fd) {
  const n = Number(c.read(fd, readBuf, CHUNK))
  if (n > 0) return Buffer.from(readBuf.subarray(0, n))
  if (n === 0) return null
  if (koffi.errno() === EAGAIN) return undefined
  throw new Error(`read failed (errno ${koffi.errno()})`)
}
/** Bytes written (0 when the socket is full). */
function writeSome(fd, buf) {
  const n = Number(c.write(fd, buf, buf.length))
  if (n >= 0) return n
  if (koffi.errno() === EAGAIN) return 0
  throw new Error(`write failed (errno ${koffi.errno()})`)
}

function pollFds(entries, timeout) {
  const b = Buffer.alloc(8 * entries.length)
  entries.forEach(([fd, events], i) => {
    b.writeInt32LE(fd, 8 * i)
    b.writeInt16LE(events, 8 * i + 4)
  })
  check('poll', c.poll(b, entries.length, timeout))
  return entries.map((_, i) => b.readInt16LE(8 * i + 6))
}

// ---- servers -------------------------------------------------------------------------------
const servers = [
  {fd: listenOn(5000), kind: 'echo'},
  {fd: listenOn(5001), kind: 'sink'},
]
const conns = new Set()

function serverConn(fd, kind) {
  c.fcntl(fd, F_SETFL, O_NONBLOCK)
  return {fd, kind, out: [], eof: false, hash: createHash('sha256'), bytes: 0, done: false}
}

function stepConn(conn, revents) {
  if (revents & POLLIN && !conn.eof && conn.out.length < 8) {
    const data = readSome(conn.fd)
    if (data === null) conn.eof = true
    else if (data) {
      if (conn.kind === 'echo') conn.out.push(data)
      else {
        conn.hash.update(data)
        conn.bytes += data.length
      }
    }
  }
  while (conn.out.length > 0) {
    const head = conn.out[0]
    const n = writeSome(conn.fd, head)
    if (n === 0) break
    if (n === head.length) conn.out.shift()
    else conn.out[0] = head.subarray(n)
  }
  if (conn.eof && conn.out.length === 0 && !conn.done) {
    conn.done = true
    if (conn.kind === 'sink') {
      c.fcntl(conn.fd, F_SETFL, 0)
      const line = Buffer.from(`${conn.hash.digest('hex')} ${conn.bytes}\n`)
      c.write(conn.fd, line, line.length)
    }
    c.shutdown(conn.fd, SHUT_WR)
    c.close(conn.fd)
    conns.delete(conn)
  }
}

// ---- clients -------------------------------------------------------------------------------
function connectParent(port) {
  const fd = check('socket', c.socket(AF_VSOCK, SOCK_STREAM, 0))
  check(`connect 3:${port}`, c.connect(fd, sockaddr(3, port), 16))
  c.fcntl(fd, F_SETFL, O_NONBLOCK)
  return fd
}

/** Send `data`, then end; collect what comes back until the host's end-of-file. */
function exchange(fd, data) {
  let sent = 0
  let ended = false
  const back = []
  for (;;) {
    const [rev] = pollFds([[fd, POLLIN | (ended ? 0 : POLLOUT)]], 120_000)
    if (rev === 0) throw new Error('no progress for 120 s')
    if (!ended && rev & POLLOUT) {
      sent += writeSome(fd, data.subarray(sent, Math.min(data.length, sent + CHUNK)))
      if (sent === data.length) {
        c.shutdown(fd, SHUT_WR)
        ended = true
      }
    }
    if (rev & (POLLIN | 16 | 8)) {
      const got = readSome(fd)
      if (got === null) break
      if (got) back.push(got)
    }
  }
  c.close(fd)
  return Buffer.concat(back)
}

/** One byte out, the same byte back, `count` times; milliseconds in all. */
function roundTrips(fd, count) {
  const one = Buffer.alloc(1)
  const t0 = performance.now()
  for (let i = 0; i < count; i++) {
    one[0] = i & 0xff
    while (writeSome(fd, one) === 0) pollFds([[fd, POLLOUT]], 120_000)
    for (;;) {
      const [rev] = pollFds([[fd, POLLIN]], 120_000)
      if (rev === 0) throw new Error('no echo for 120 s')
      const got = readSome(fd)
      if (got === null) throw new Error('echo ended early')
      if (got) {
        if (got.length !== 1 || got[0] !== (i & 0xff)) throw new Error(`round trip ${i}: wrong echo`)
        break
      }
    }
  }
  const ms = performance.now() - t0
  c.shutdown(fd, SHUT_WR)
  c.close(fd)
  return ms
}

function command(line) {
  const [cmd, portText, bytesText] = line.trim().split(/\s+/)
  if (cmd === 'QUIT') {
    say('RESULT QUIT')
    process.exit(0)
  }
  if (cmd === 'RTT') {
    try {
      const count = Number(bytesText)
      const ms = roundTrips(connectParent(Number(portText)), count)
      say(`RESULT RTT ok ${count} ${ms.toFixed(1)}`)
    } catch (error) {
      say(`RESULT ERROR ${error.message}`)
    }
    return
  }
  const port = Number(portText)
  const bytes = Number(bytesText)
  try {
    const data = randomBytes(bytes)
    const sha = createHash('sha256').update(data).digest('hex')
    const t0 = performance.now()
    const back = exchange(connectParent(port), data)
    const ms = (performance.now() - t0).toFixed(1)
    if (cmd === 'ECHO') {
      const ok = back.equals(data)
      say(`RESULT ECHO ${ok ? 'ok' : 'mismatch'} ${sha} ${back.length} ${ms}`)
    } else if (cmd === 'SEND') {
      const reply = back.toString('utf8').trim()
      say(`RESULT SEND ${reply === sha ? 'ok' : 'mismatch'} ${sha} ${reply} ${ms}`)
    } else say(`RESULT ERROR unknown command ${cmd}`)
  } catch (error) {
    say(`RESULT ERROR ${error.message}`)
  }
}

// ---- the loop --------------------------------------------------------------------------------
c.fcntl(0, F_SETFL, O_NONBLOCK)
let pending = ''
say('VSOCK-GUEST READY')
for (;;) {
  const list = [...conns]
  const revents = pollFds([[0, POLLIN], ...servers.map((s) => [s.fd, POLLIN]), ...list.map((k) => [k.fd, (k.out.length < 8 && !k.eof ? POLLIN : 0) | (k.out.length > 0 ? POLLOUT : 0)])], -1)
  if (revents[0] & POLLIN) {
    const data = readSome(0)
    if (data) {
      pending += data.toString('utf8')
      let nl
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl)
        pending = pending.slice(nl + 1)
        if (line.trim()) command(line)
      }
    }
  }
  servers.forEach((s, i) => {
    if (revents[1 + i] & POLLIN) {
      const fd = c.accept4(s.fd, null, null, 0)
      if (fd >= 0) conns.add(serverConn(fd, s.kind))
    }
  })
  list.forEach((k, i) => {
    const rev = revents[1 + servers.length + i]
    if (rev) stepConn(k, rev)
  })
}
