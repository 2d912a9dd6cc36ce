/**
 * The guest's memory as the vhost-user front-end shares it (SET_MEM_TABLE): a few regions, each
 * a range of guest-physical addresses, the front-end's own virtual address for it (what ring
 * addresses are given in), and the bytes, mapped from the file descriptor the front-end passed.
 *
 * Every address and length that comes from the guest goes through `check`/`copyOut`/`copyIn`,
 * which refuse (GuestFault) anything not entirely inside the table: an address past a region, a
 * length that overflows, a range across a hole. Nothing here trusts a number it did not check.
 */

export interface MemoryRegion {
  /** Guest-physical address of the region's first byte. */
  guestAddr: number
  size: number
  /** The front-end's (QEMU's) virtual address of the region's first byte. */
  userAddr: number
  /**
   * The region's bytes (an mmap of the front-end's fd, or a plain buffer in tests). May run past
   * `size` into the next region of the same mapping (a large region is cut into views of at most
   * VIEW_CHUNK bytes that overlap by VIEW_OVERLAP, so a ring near a cut still lies in one view).
   */
  bytes: Uint8Array
}

/** Node aborts the process on an external ArrayBuffer above 4 GiB: guest memory is viewed in pieces. */
export const VIEW_CHUNK = 2 ** 30
export const VIEW_OVERLAP = 2 ** 20

/** The pieces [offset, offset+length) a region of `size` bytes is viewed in: nominal `chunk` bytes each, plus `overlap` where the region goes on. */
export function viewChunks(size: number, chunk = VIEW_CHUNK, overlap = VIEW_OVERLAP): {offset: number; size: number; length: number}[] {
  const out: {offset: number; size: number; length: number}[] = []
  for (let offset = 0; offset < size; offset += chunk) {
    const nominal = Math.min(chunk, size - offset)
    out.push({offset, size: nominal, length: Math.min(nominal + overlap, size - offset)})
  }
  return out
}

/** The guest broke the contract (a bad address, index or chain): its device is cut off. */
export class GuestFault extends Error {
  constructor(readonly reason: string) {
    super(reason)
    this.name = 'GuestFault'
  }
}

/** The largest guest address nle accepts (2^52: far above any guest's RAM, exact as a JS number). */
export const MAX_GUEST_ADDRESS = 2 ** 52

export class GuestMemory {
  readonly regions: readonly MemoryRegion[]

  constructor(regions: readonly MemoryRegion[]) {
    for (const r of regions) {
      if (!Number.isSafeInteger(r.guestAddr) || !Number.isSafeInteger(r.size) || !Number.isSafeInteger(r.userAddr) || r.size <= 0) {
        throw new RangeError(`memory region out of range: guest 0x${r.guestAddr.toString(16)} size ${r.size}`)
      }
      if (r.bytes.length < r.size) throw new RangeError(`memory region of ${r.size} bytes has only ${r.bytes.length} mapped`)
      if (r.guestAddr + r.size > MAX_GUEST_ADDRESS) throw new RangeError('memory region beyond 2^52')
    }
    this.regions = [...regions].sort((a, b) => a.guestAddr - b.guestAddr)
    for (let i = 1; i < this.regions.length; i++) {
      const prev = this.regions[i - 1]!
      if (prev.guestAddr + prev.size > this.regions[i]!.guestAddr) throw new RangeError('memory regions overlap')
    }
  }

  private regionAt(gpa: number): MemoryRegion | undefined {
    for (const r of this.regions) if (gpa >= r.guestAddr && gpa < r.guestAddr + r.size) return r
    return undefined
  }

  /** Throws GuestFault unless [gpa, gpa+len) lies in the table (across adjacent regions is fine). */
  check(gpa: number, len: number, what = 'buffer'): void {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0 || gpa + len > MAX_GUEST_ADDRESS) {
      throw new GuestFault(`${what} at 0x${gpa.toString(16)} (+${len}) is out of range`)
    }
    let at = gpa
    let left = len
    while (left > 0) {
      const r = this.regionAt(at)
      if (!r) throw new GuestFault(`${what} at 0x${gpa.toString(16)} (+${len}) is outside guest memory (at 0x${at.toString(16)})`)
      const n = Math.min(left, r.guestAddr + r.size - at)
      at += n
      left -= n
    }
  }

  /** Copy `len` guest bytes at `gpa` into dst[dstOff…]. */
  copyOut(gpa: number, len: number, dst: Uint8Array, dstOff = 0): void {
    this.check(gpa, len)
    if (dstOff + len > dst.length) throw new RangeError('copyOut destination too small')
    let at = gpa
    let off = dstOff
    let left = len
    while (left > 0) {
      const r = this.regionAt(at)!
      const start = at - r.guestAddr
      const n = Math.min(left, r.size - start)
      dst.set(r.bytes.subarray(start, start + n), off)
      at += n
      off += n
      left -= n
    }
  }

  /** Copy src into guest memory at `gpa`. */
  copyIn(gpa: number, src: Uint8Array): void {
    this.check(gpa, src.length)
    let at = gpa
    let off = 0
    while (off < src.length) {
      const r = this.regionAt(at)!
      const start = at - r.guestAddr
      const n = Math.min(src.length - off, r.size - start)
      r.bytes.set(src.subarray(off, off + n), start)
      at += n
      off += n
    }
  }

  /** A view of [gpa, gpa+len), which must lie inside one region (the rings). */
  view(gpa: number, len: number, what: string): Uint8Array {
    this.check(gpa, len, what)
    const r = this.regionAt(gpa)!
    const start = gpa - r.guestAddr
    if (start + len > r.bytes.length) throw new GuestFault(`${what} at 0x${gpa.toString(16)} (+${len}) spans two memory regions`)
    return r.bytes.subarray(start, start + len)
  }

  /** The guest-physical address of the front-end's virtual address `ua` (ring addresses come that way). */
  userToGuest(ua: number, len: number, what: string): number {
    for (const r of this.regions) {
      if (ua >= r.userAddr && ua < r.userAddr + r.size) {
        if (ua - r.userAddr + len > r.bytes.length) throw new GuestFault(`${what} at user address 0x${ua.toString(16)} (+${len}) runs past its memory region`)
        return r.guestAddr + (ua - r.userAddr)
      }
    }
    throw new GuestFault(`${what} at user address 0x${ua.toString(16)} is in no memory region`)
  }
}
