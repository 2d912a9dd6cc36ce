/**
 * The real Nitro Secure Module, through the Linux driver's character device (/dev/nsm, present
 * inside an enclave). One ioctl per message (include/uapi/linux/nsm.h):
 *
 *   struct nsm_iovec { __u64 addr; __u64 len; };
 *   struct nsm_raw   { struct nsm_iovec request; struct nsm_iovec response; };
 *   NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw) = 0xC0200A00
 *
 * The request iovec points at the CBOR request (≤ 0x1000 bytes); the response iovec at a
 * 0x3000-byte buffer whose `len` the driver overwrites with the length of the CBOR response.
 * The ioctl is bound with koffi (no compiled addon); koffi is loaded only when a device is opened.
 */
import {createRequire} from 'node:module'

import {attestError} from './errors.js'
import {CborNsmClient} from './nsm-client.js'
import {NSM_REQUEST_MAX_SIZE, NSM_RESPONSE_MAX_SIZE} from './nsm-protocol.js'

export const NSM_DEVICE_PATH = '/dev/nsm'
/** _IOWR(NSM_MAGIC = 0x0A, 0, sizeof(struct nsm_raw) = 32) */
export const NSM_IOCTL_RAW = 0xc0200a00
export const NSM_RAW_STRUCT_SIZE = 32

const O_RDWR = 0o2
const O_CLOEXEC = 0o2000000
const EMSGSIZE = 90

type Koffi = typeof import('koffi')

interface NsmIovec {
  addr: bigint | number
  len: bigint | number
}
interface NsmRaw {
  request: NsmIovec
  response: NsmIovec
}

interface Libc {
  koffi: Koffi
  open: (path: string, flags: number) => number
  ioctl: (fd: number, request: number, message: NsmRaw) => number
  close: (fd: number) => number
  rawType: unknown
}

let libc: Libc | undefined

/** Bind open/ioctl/close from the C library (once). Exported for tests of the binding itself. */
export function bindLibc(): Libc {
  if (libc) return libc
  if (process.platform !== 'linux') {
    throw attestError('ATTEST_NSM_UNAVAILABLE', `/dev/nsm exists only inside a Nitro Enclave (Linux); this is ${process.platform}.`, {
      hint: 'Use the NSM simulator outside an enclave.',
    })
  }
  const koffi = createRequire(import.meta.url)('koffi') as Koffi
  const lib = koffi.load('libc.so.6')
  const iovec = koffi.struct('nle_nsm_iovec', {addr: 'uint64_t', len: 'uint64_t'})
  const rawType = koffi.struct('nle_nsm_raw', {request: iovec, response: iovec})
  if (koffi.sizeof(rawType) !== NSM_RAW_STRUCT_SIZE) throw new Error('nle: struct nsm_raw does not have the size of the kernel ABI.')
  libc = {
    koffi,
    open: lib.func('int open(const char *path, int flags)') as Libc['open'],
    ioctl: lib.func('int ioctl(int fd, unsigned long request, _Inout_ nle_nsm_raw *message)') as Libc['ioctl'],
    close: lib.func('int close(int fd)') as Libc['close'],
    rawType,
  }
  return libc
}

export class NsmDevice extends CborNsmClient {
  private fd: number
  private readonly request: unknown
  private readonly response: unknown

  private constructor(
    private readonly c: Libc,
    fd: number,
    readonly path: string,
  ) {
    super()
    this.fd = fd
    this.request = c.koffi.alloc('uint8_t', NSM_REQUEST_MAX_SIZE)
    this.response = c.koffi.alloc('uint8_t', NSM_RESPONSE_MAX_SIZE)
  }

  /** Open the device. Throws ATTEST_NSM_UNAVAILABLE when it is missing or not accessible. */
  static open(path: string = NSM_DEVICE_PATH): NsmDevice {
    const c = bindLibc()
    const fd = c.open(path, O_RDWR | O_CLOEXEC)
    if (fd < 0) {
      const errno = c.koffi.errno()
      throw attestError('ATTEST_NSM_UNAVAILABLE', `Cannot open ${path} (errno ${errno}).`, {
        hint: 'The NSM device exists only inside a Nitro Enclave; use the simulator elsewhere.',
        details: {path, errno},
      })
    }
    return new NsmDevice(c, fd, path)
  }

  protected async exchange(request: Uint8Array): Promise<Uint8Array> {
    if (this.fd < 0) throw attestError('ATTEST_NSM_UNAVAILABLE', `${this.path} is closed.`)
    if (request.length > NSM_REQUEST_MAX_SIZE) throw attestError('ATTEST_NSM_BAD_REQUEST', `The NSM request is ${request.length} bytes; at most ${NSM_REQUEST_MAX_SIZE}.`)
    const {koffi} = this.c
    new Uint8Array(koffi.view(this.request, NSM_REQUEST_MAX_SIZE)).set(request)
    const message: NsmRaw = {
      request: {addr: koffi.address(this.request), len: BigInt(request.length)},
      response: {addr: koffi.address(this.response), len: BigInt(NSM_RESPONSE_MAX_SIZE)},
    }
    const status = this.c.ioctl(this.fd, NSM_IOCTL_RAW, message)
    if (status !== 0) {
      const errno = koffi.errno()
      if (errno === EMSGSIZE) {
        throw attestError('ATTEST_NSM_BAD_REQUEST', 'The NSM refused the request as too large.', {details: {errno, nsmError: 'InputTooLarge'}})
      }
      throw attestError('ATTEST_NSM_IOCTL_FAILED', `ioctl(NSM_IOCTL_RAW) on ${this.path} failed (errno ${errno}).`, {
        hint: 'Is this the Nitro Secure Module device?',
        details: {path: this.path, errno},
      })
    }
    const length = Number(message.response.len)
    if (!Number.isInteger(length) || length < 0 || length > NSM_RESPONSE_MAX_SIZE) {
      throw attestError('ATTEST_NSM_BAD_RESPONSE', `The NSM driver reported a response length of ${length}.`)
    }
    if (length === 0) return new Uint8Array(0)
    return new Uint8Array(koffi.view(this.response, length).slice(0))
  }

  async close(): Promise<void> {
    if (this.fd < 0) return
    this.c.close(this.fd)
    this.fd = -1
    this.c.koffi.free(this.request)
    this.c.koffi.free(this.response)
  }
}
