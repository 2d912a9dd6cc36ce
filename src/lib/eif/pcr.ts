/**
 * PCR arithmetic exactly as the Nitro hypervisor and nitro-cli compute it: a PCR starts as 48 zero
 * bytes and is extended once with the SHA-384 of its content, so
 *   PCR = SHA384(0x00 * 48 || SHA384(content)).
 */
import {createHash, type Hash} from 'node:crypto'
import {createReadStream} from 'node:fs'

import {eifError} from './errors.js'
import type {ByteSource} from './source.js'

export const PCR_SIZE = 48
/** The PCR of empty content: what real single-ramdisk enclaves report as PCR2. */
export const EMPTY_PCR = '21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a'
/** What nitro-cli prints as "HashAlgorithm" (sha2 0.9's Debug of Sha384); treat as opaque. */
export const HASH_ALGORITHM = 'Sha384 { ... }'
/** Read size for streaming hashes. */
export const CHUNK_SIZE = 4 * 1024 * 1024

/** Extend a zero PCR with a content digest: SHA384(0^48 || digest). */
export function extendFromZero(digest: Buffer): Buffer {
  return createHash('sha384').update(Buffer.alloc(PCR_SIZE)).update(digest).digest()
}

/** The PCR of some content held in memory. */
export function pcrOf(content: Buffer | string): string {
  return extendFromZero(createHash('sha384').update(content).digest()).toString('hex')
}

/** A streaming PCR: feed the content, then `finish()`. */
export class PcrAccumulator {
  private hash: Hash = createHash('sha384')
  update(chunk: Buffer): this {
    this.hash.update(chunk)
    return this
  }
  /** A copy that can be finished independently (the content so far). */
  fork(): PcrAccumulator {
    const copy = new PcrAccumulator()
    copy.hash = this.hash.copy()
    return copy
  }
  finish(): string {
    return extendFromZero(this.hash.digest()).toString('hex')
  }
}

/** `nitro-cli pcr --input FILE`: the PCR of a file's bytes, streamed with constant memory. */
export async function pcrOfSource(src: ByteSource): Promise<string> {
  const acc = new PcrAccumulator()
  const buf = Buffer.allocUnsafe(Math.max(1, Math.min(CHUNK_SIZE, src.size)))
  for (let pos = 0; pos < src.size; ) {
    const n = await src.readInto(buf, pos, Math.min(buf.length, src.size - pos))
    if (n === 0) break
    acc.update(buf.subarray(0, n))
    pos += n
  }
  return acc.finish()
}

/** `nitro-cli pcr --input FILE`: any readable file (regular, pipe, device), read to its end. */
export async function pcrOfFile(path: string): Promise<string> {
  const acc = new PcrAccumulator()
  try {
    for await (const chunk of createReadStream(path, {highWaterMark: CHUNK_SIZE})) acc.update(chunk as Buffer)
  } catch (error) {
    const errno = (error as NodeJS.ErrnoException).code
    if (errno === 'ENOENT') throw eifError('EIF_NOT_FOUND', `No such file: ${path}`, {details: {path}, cause: error})
    throw eifError('EIF_UNREADABLE', `Cannot read ${path}: ${(error as Error).message}`, {details: {path, errno}, cause: error})
  }
  return acc.finish()
}
