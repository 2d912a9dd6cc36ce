/**
 * virtio-vsock packets (virtio spec 1.2, §5.10 "Socket Device"): the 44-byte little-endian header
 * every packet on the rx and tx queues starts with, and the operations a stream connection uses.
 *
 *   le64 src_cid  le64 dst_cid  le32 src_port  le32 dst_port  le32 len
 *   le16 type     le16 op       le32 flags     le32 buf_alloc le32 fwd_cnt
 *
 * `len` is the payload's length (RW only). `buf_alloc` and `fwd_cnt` carry the sender's credit: the
 * size of its receive buffer for the connection and the free-running count of bytes it has
 * consumed from it. A sender may have at most `peer.buf_alloc - (tx_cnt - peer.fwd_cnt)` bytes in
 * flight (u32 arithmetic, wrapping).
 */

export const HEADER_SIZE = 44

export const VSOCK_TYPE_STREAM = 1
export const VSOCK_TYPE_SEQPACKET = 2

export const Op = {
  INVALID: 0,
  REQUEST: 1,
  RESPONSE: 2,
  RST: 3,
  SHUTDOWN: 4,
  RW: 5,
  CREDIT_UPDATE: 6,
  CREDIT_REQUEST: 7,
} as const
export type Op = (typeof Op)[keyof typeof Op]

export const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]))

/** SHUTDOWN flags: the sender will receive no more / send no more. */
export const SHUTDOWN_RCV = 1
export const SHUTDOWN_SEND = 2

/** The well-known CIDs: the hypervisor, the host; 3 is the Nitro parent instance. */
export const CID_HYPERVISOR = 0
export const CID_HOST = 2
export const CID_NITRO_PARENT = 3
/** The largest payload Linux puts in one packet (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE); more is refused. */
export const MAX_PAYLOAD = 64 * 1024

export interface PacketHeader {
  srcCid: bigint
  dstCid: bigint
  srcPort: number
  dstPort: number
  len: number
  type: number
  op: number
  flags: number
  bufAlloc: number
  fwdCnt: number
}

/** Decode a header from the first 44 bytes of `b` (which must hold them). Pure field decoding: no policy. */
export function decodeHeader(b: Uint8Array): PacketHeader {
  if (b.length < HEADER_SIZE) throw new RangeError(`a vsock header is ${HEADER_SIZE} bytes, got ${b.length}`)
  const v = new DataView(b.buffer, b.byteOffset, HEADER_SIZE)
  return {
    srcCid: v.getBigUint64(0, true),
    dstCid: v.getBigUint64(8, true),
    srcPort: v.getUint32(16, true),
    dstPort: v.getUint32(20, true),
    len: v.getUint32(24, true),
    type: v.getUint16(28, true),
    op: v.getUint16(30, true),
    flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true),
    fwdCnt: v.getUint32(40, true),
  }
}

/** Encode `h` into the first 44 bytes of `out` (or a new buffer). */
export function encodeHeader(h: PacketHeader, out: Uint8Array = new Uint8Array(HEADER_SIZE)): Uint8Array {
  const v = new DataView(out.buffer, out.byteOffset, HEADER_SIZE)
  v.setBigUint64(0, h.srcCid, true)
  v.setBigUint64(8, h.dstCid, true)
  v.setUint32(16, h.srcPort >>> 0, true)
  v.setUint32(20, h.dstPort >>> 0, true)
  v.setUint32(24, h.len >>> 0, true)
  v.setUint16(28, h.type, true)
  v.setUint16(30, h.op, true)
  v.setUint32(32, h.flags >>> 0, true)
  v.setUint32(36, h.bufAlloc >>> 0, true)
  v.setUint32(40, h.fwdCnt >>> 0, true)
  return out
}

/** u32 wrapping difference a - b (credit counters are free-running u32s). */
export function u32Diff(a: number, b: number): number {
  return (a - b) >>> 0
}

/** Bytes a sender may still send: peer buf_alloc - (tx_cnt - peer fwd_cnt), never negative. */
export function peerCredit(peerBufAlloc: number, txCnt: number, peerFwdCnt: number): number {
  const inFlight = u32Diff(txCnt, peerFwdCnt)
  return inFlight >= peerBufAlloc ? 0 : peerBufAlloc - inFlight
}

export function describeHeader(h: PacketHeader): string {
  return `${OP_NAMES[h.op] ?? `op${h.op}`} ${h.srcCid}:${h.srcPort}→${h.dstCid}:${h.dstPort} len=${h.len} flags=${h.flags} buf_alloc=${h.bufAlloc} fwd_cnt=${h.fwdCnt}`
}
