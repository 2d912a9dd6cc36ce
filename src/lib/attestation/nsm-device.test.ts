import {existsSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {codeOf} from '../../test-support/attestation.js'
import {NSM_IOCTL_RAW, NSM_RAW_STRUCT_SIZE, NsmDevice, bindLibc} from './nsm-device.js'

// _IOWR(type, nr, size) on Linux: dir (read|write = 3) << 30 | size << 16 | type << 8 | nr.
const IOWR = (type: number, nr: number, size: number): number => ((3 << 30) >>> 0) + (size << 16) + (type << 8) + nr

describe.runIf(process.platform === 'linux')('NsmDevice (/dev/nsm through koffi)', () => {
  it('uses the kernel ABI: NSM_IOCTL_RAW = _IOWR(0x0A, 0, struct nsm_raw) = 0xC0200A00, struct of two {u64 addr, u64 len}', () => {
    expect(NSM_RAW_STRUCT_SIZE).toBe(32)
    expect(NSM_IOCTL_RAW).toBe(IOWR(0x0a, 0, 32))
    expect(NSM_IOCTL_RAW).toBe(0xc0200a00)
    const {koffi, rawType} = bindLibc()
    expect(koffi.sizeof(rawType as never)).toBe(32)
    expect(koffi.offsetof(rawType as never, 'response')).toBe(16)
  })

  it('a missing device is ATTEST_NSM_UNAVAILABLE', async () => {
    expect(codeOf(() => NsmDevice.open('/nonexistent/nsm'))).toBe('ATTEST_NSM_UNAVAILABLE')
  })

  it('issues the ioctl: a device that is not the NSM (/dev/null) answers ENOTTY → ATTEST_NSM_IOCTL_FAILED', async () => {
    const dev = NsmDevice.open('/dev/null')
    try {
      let error: unknown
      try {
        await dev.describeNsm()
      } catch (e) {
        error = e
      }
      expect((error as {code?: string}).code).toBe('ATTEST_NSM_IOCTL_FAILED')
      expect((error as {details?: {errno?: number}}).details?.errno).toBe(25) // ENOTTY
    } finally {
      await dev.close()
    }
    expect(await codeOf(() => dev.getRandom())).toBe('ATTEST_NSM_UNAVAILABLE')
  })

  it.runIf(existsSync('/dev/nsm'))('inside an enclave: DescribeNSM and GetRandom answer', async () => {
    const dev = NsmDevice.open()
    try {
      expect((await dev.describeNsm()).digest).toBe('SHA384')
      expect((await dev.getRandom()).length).toBeGreaterThan(0)
    } finally {
      await dev.close()
    }
  })
})
