/**
 * Error codes of the vhost-user-vsock back-end (src/lib/vsock): the process QEMU's `nitro-enclave`
 * machine talks to for its vsock device. Start-up failures are thrown as NleErrors; a guest or a
 * front-end that misbehaves while running is logged with one of these codes and cut off, never
 * thrown out of the back-end.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {USAGE, IO, NETWORK} = ExitCode

export const VSOCK_ERRORS = defineErrors({
  VSOCK_USAGE: {exit: USAGE, summary: 'A flag of the vsock back-end is invalid (socket path, CID, port mapping).', hint: 'Pass --socket PATH --cid N and PORT=PATH mappings; ports are 0…4294967294, CIDs ≥ 3'},
  VSOCK_UNAVAILABLE: {exit: IO, summary: 'The vsock back-end needs Linux and koffi (for recvmsg with SCM_RIGHTS, mmap, eventfd and poll).', hint: 'Run it on a Linux host with nle\'s dependencies installed'},
  VSOCK_LISTEN_FAILED: {exit: IO, summary: 'The vhost-user socket or a host-side socket of a port mapping could not be bound.', hint: 'Check that the folder exists and is writable, and that no other back-end uses the path'},
  VSOCK_FRONTEND_PROTOCOL: {
    exit: NETWORK,
    summary: 'The vhost-user front-end (QEMU) sent a message the back-end cannot accept: malformed, too large, or with the wrong file descriptors; it was disconnected.',
    hint: 'Use the QEMU nle\'s scripts build (scripts/qemu-nitro.sh); details.request names the message',
  },
  VSOCK_GUEST_FAULT: {
    exit: NETWORK,
    summary: 'The guest broke the virtqueue contract (a descriptor outside its memory, a loop in a chain, an index out of range, a chain too long); its vsock device was cut off.',
    hint: 'The guest kernel or its memory is corrupt; reboot the VM. details.reason says what was wrong',
  },
  VSOCK_GUEST_PROTOCOL: {
    exit: NETWORK,
    summary: 'The guest broke the vsock protocol on one connection (sent beyond the credit it was given, a length that does not match its buffer); that connection was reset.',
    hint: 'A guest program or kernel bug; details.reason and the ports name the connection',
  },
})

export type VsockErrorCode = keyof typeof VSOCK_ERRORS

export function vsockError(code: VsockErrorCode, message: string, options: NleErrorOptions = {}): NleError<VsockErrorCode> {
  return new NleError(code, message, options)
}
