/** Small byte helpers for the channel's wire formats. */

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

export function u16(n: number): Uint8Array {
  return new Uint8Array([(n >>> 8) & 0xff, n & 0xff])
}

export function readU16(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 8) | bytes[at + 1]!
}

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)

/** A copy with its own ArrayBuffer (WebCrypto and Buffer views must not alias a bigger buffer). */
export function own(bytes: Uint8Array | ArrayBuffer): Uint8Array {
  return bytes instanceof ArrayBuffer ? new Uint8Array(bytes.slice(0)) : new Uint8Array(bytes)
}

/**
 * ISO/IEC 7816-4 padding: the data, one 0x80 byte, then zeros up to a multiple of `block`.
 * Sealed lengths then reveal only a bucket, not the exact size of a question or of a token.
 */
export function pad(data: Uint8Array, block: number): Uint8Array {
  const size = Math.max(block, Math.ceil((data.length + 1) / block) * block)
  const out = new Uint8Array(size)
  out.set(data)
  out[data.length] = 0x80
  return out
}

/**
 * The same padding to a bucket: `minimum`, or `minimum` times a power of two. Sealed answers use it,
 * so an answer's size shows only its order of magnitude, and a short answer, an empty one and an
 * error all fill the smallest bucket.
 */
export function padToBucket(data: Uint8Array, minimum: number): Uint8Array {
  let size = minimum
  while (size < data.length + 1) size *= 2
  return pad(data, size)
}

/** Removes the padding of `pad`; returns null when there is none (the caller reports the error). */
export function unpad(data: Uint8Array): Uint8Array | null {
  let i = data.length - 1
  while (i >= 0 && data[i] === 0) i--
  if (i < 0 || data[i] !== 0x80) return null
  return data.subarray(0, i)
}
