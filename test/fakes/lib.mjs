// Shared plumbing for the fake host tools in this folder (docker, nitro-cli, systemctl, socat).
// Each fake records its argv, keeps its "host" state in NLE_FAKE_STATE (a folder), and prints
// exactly the formats the real tools print. Where each format comes from is noted at its use.
import {createHash} from 'node:crypto'
import {appendFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {clearInterval, setInterval} from 'node:timers'
import {crc32} from 'node:zlib'

export function record(tool) {
  const log = process.env.NLE_FAKE_LOG
  if (log) {
    const entry = {tool, argv: process.argv.slice(2), pid: process.pid}
    if (process.env.SOURCE_DATE_EPOCH !== undefined) entry.SOURCE_DATE_EPOCH = process.env.SOURCE_DATE_EPOCH
    appendFileSync(log, JSON.stringify(entry) + '\n')
  }
}

function stateDir() {
  const dir = process.env.NLE_FAKE_STATE
  if (!dir) throw new Error('fake: NLE_FAKE_STATE is not set')
  mkdirSync(dir, {recursive: true})
  return dir
}

/** Keeps a fake running like a long-lived daemon until SIGTERM or SIGINT, then exits 0. */
export function stayUntilSignalled() {
  const keepAlive = setInterval(() => undefined, 1 << 30)
  const stop = () => {
    clearInterval(keepAlive)
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

export function readState(name, fallback) {
  try {
    return JSON.parse(readFileSync(join(stateDir(), name), 'utf8'))
  } catch {
    return fallback
  }
}

export function writeState(name, value) {
  writeFileSync(join(stateDir(), name), JSON.stringify(value, null, 2))
}

/** `--flag value` pairs and bare `--switch`es of argv (after the subcommand). */
export function flags(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) continue
    const next = argv[i + 1]
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = true
    else {
      out[a.slice(2)] = next
      i++
    }
  }
  return out
}

// --- EIF: a second, independent writer/measurer (the real layout: header 548 bytes big-endian,
// sections kernel, cmdline, metadata, ramdisk…, CRC32 over everything but the CRC field;
// PCR = SHA384(0^48 || SHA384(content)); aws-nitro-enclaves-image-format src/utils/mod.rs).

const sha384 = (b) => createHash('sha384').update(b).digest()
const pcr = (parts) => {
  const h = createHash('sha384')
  for (const p of parts) h.update(p)
  return createHash('sha384').update(Buffer.alloc(48)).update(h.digest()).digest('hex')
}

export function writeFakeEif(path, {kernel, cmdline, metadata, ramdisks}) {
  const sections = [
    [1, kernel],
    [2, Buffer.from(cmdline)],
    [5, Buffer.from(JSON.stringify(metadata))],
    ...ramdisks.map((r) => [3, r]),
  ]
  const header = Buffer.alloc(548)
  header.write('.eif', 0, 'latin1')
  header.writeUInt16BE(4, 4)
  header.writeBigUInt64BE(1024n * 1024n * 1024n, 8)
  header.writeBigUInt64BE(2n, 16)
  header.writeUInt16BE(sections.length, 26)
  const parts = []
  let offset = 548
  sections.forEach(([type, data], i) => {
    header.writeBigUInt64BE(BigInt(offset), 28 + 8 * i)
    header.writeBigUInt64BE(BigInt(data.length), 284 + 8 * i)
    const sh = Buffer.alloc(12)
    sh.writeUInt16BE(type, 0)
    sh.writeBigUInt64BE(BigInt(data.length), 4)
    parts.push(sh, data)
    offset += 12 + data.length
  })
  let crc = crc32(header.subarray(0, 544))
  for (const p of parts) crc = crc32(p, crc)
  header.writeUInt32BE(crc >>> 0, 544)
  writeFileSync(path, Buffer.concat([header, ...parts]))
}

/** PCR0/1/2 of an EIF, walking its section table (what nitro-cli's describe computes). */
export function measureEif(path) {
  const buf = readFileSync(path)
  const n = buf.readUInt16BE(26)
  const kernelCmdline = []
  const ramdisks = []
  for (let i = 0; i < n; i++) {
    const off = Number(buf.readBigUInt64BE(28 + 8 * i))
    const type = buf.readUInt16BE(off)
    const size = Number(buf.readBigUInt64BE(off + 4))
    const data = buf.subarray(off + 12, off + 12 + size)
    if (type === 1 || type === 2) kernelCmdline.push(data)
    if (type === 3) ramdisks.push(data)
  }
  return {
    HashAlgorithm: 'Sha384 { ... }',
    PCR0: pcr([...kernelCmdline, ...ramdisks]),
    PCR1: pcr([...kernelCmdline, ramdisks[0]]),
    PCR2: pcr(ramdisks.slice(1)),
  }
}

export {sha384}

// --- nitro-cli's error blocks (src/common/mod.rs construct_error_message, without BACKTRACE=1)

export function errorBlock(code, text) {
  const when = '2026-11-26T08:30:00.000000000+00:00'
  return `[ ${code} ] ${text}\n\nFor more details, please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#${code}\n\nIf you open a support ticket, please provide the error log found at "/var/log/nitro_enclaves/err${when}.log"\n`
}

/** serde_json::to_string_pretty: 2-space indent, `"key": value`. JSON.stringify matches it. */
export function pretty(value) {
  return JSON.stringify(value, null, 2) + '\n'
}
