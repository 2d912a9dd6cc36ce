import {ExitCode, NleError, type NleErrorOptions} from '../errors.js'

/** Every code an EIF operation can fail with. Tests assert these, never messages. */
export type EifErrorCode =
  // reading: the file itself
  | 'EIF_NOT_FOUND'
  | 'EIF_UNREADABLE'
  | 'EIF_FILE_CHANGED'
  // reading: the 548-byte header
  | 'EIF_BAD_MAGIC'
  | 'EIF_TRUNCATED'
  | 'EIF_UNSUPPORTED_VERSION'
  | 'EIF_BAD_FLAGS'
  | 'EIF_BAD_HEADER'
  | 'EIF_TOO_MANY_SECTIONS'
  // reading: the section table and section headers
  | 'EIF_SECTION_OUT_OF_BOUNDS'
  | 'EIF_SECTION_OVERLAP'
  | 'EIF_SECTION_GAP'
  | 'EIF_TRAILING_DATA'
  | 'EIF_SECTION_SIZE_MISMATCH'
  | 'EIF_UNKNOWN_SECTION_TYPE'
  | 'EIF_BAD_SECTION_FLAGS'
  | 'EIF_MISSING_SECTION'
  | 'EIF_DUPLICATE_SECTION'
  | 'EIF_SECTION_ORDER'
  | 'EIF_SECTION_TOO_LARGE'
  // reading: section contents
  | 'EIF_BAD_METADATA'
  | 'EIF_BAD_SIGNATURE_CBOR'
  | 'EIF_BAD_COSE_SIGN1'
  | 'EIF_BAD_CERTIFICATE'
  // trusting: integrity and signature
  | 'EIF_BAD_CRC'
  | 'EIF_NOT_SIGNED'
  | 'EIF_BAD_SIGNATURE'
  | 'EIF_SIGNATURE_PCR_MISMATCH'
  | 'EIF_CERT_NOT_YET_VALID'
  | 'EIF_CERT_EXPIRED'
  // writing
  | 'EIF_BAD_INPUT'
  | 'EIF_INPUT_NOT_FOUND'
  | 'EIF_TOO_MANY_RAMDISKS'
  | 'EIF_BAD_KEY'
  | 'EIF_KEY_CERT_MISMATCH'
  | 'EIF_WRITE_FAILED'
  | 'EIF_CPIO_UNSUPPORTED_FILE'
  | 'EIF_CPIO_FILE_TOO_LARGE'
  | 'EIF_CPIO_BAD_NAME'
  // a bug in nle (should never happen)
  | 'EIF_INTERNAL'

const EXIT: Partial<Record<EifErrorCode, ExitCode>> = {
  EIF_NOT_FOUND: ExitCode.IO,
  EIF_UNREADABLE: ExitCode.IO,
  EIF_FILE_CHANGED: ExitCode.IO,
  EIF_INPUT_NOT_FOUND: ExitCode.IO,
  EIF_WRITE_FAILED: ExitCode.IO,
  EIF_BAD_INPUT: ExitCode.CONFIG,
  EIF_TOO_MANY_RAMDISKS: ExitCode.CONFIG,
  EIF_BAD_KEY: ExitCode.CONFIG,
  EIF_KEY_CERT_MISMATCH: ExitCode.CONFIG,
  EIF_CPIO_UNSUPPORTED_FILE: ExitCode.CONFIG,
  EIF_CPIO_FILE_TOO_LARGE: ExitCode.CONFIG,
  EIF_CPIO_BAD_NAME: ExitCode.CONFIG,
  EIF_INTERNAL: ExitCode.INTERNAL,
}

/**
 * An EIF failure. A malformed image is a verification failure (exit 5): the file is not what an
 * enclave image must be, and nle never measures or trusts what it cannot parse exactly.
 */
export function eifError(code: EifErrorCode, message: string, options: NleErrorOptions = {}): NleError<EifErrorCode> {
  return new NleError(code, message, {exitCode: EXIT[code] ?? ExitCode.VERIFY, ...options})
}
