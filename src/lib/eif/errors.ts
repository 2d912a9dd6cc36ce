import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../errors.js'

const {IO, CONFIG, VERIFY, INTERNAL} = ExitCode

/** What a malformed image means: nle never measures or trusts what it cannot parse exactly. */
const MALFORMED = 'Rebuild the image (`nle build`, or `nle eif build`) and check it with `nle eif describe FILE`; a copy cut short or altered in transfer fails the same way'

/**
 * Every code an EIF operation can fail with (tests assert these, never messages). A malformed image
 * is a verification failure (exit 5): the file is not what an enclave image must be.
 */
export const EIF_ERRORS = defineErrors({
  // reading: the file itself
  EIF_NOT_FOUND: {exit: IO, summary: 'The EIF file named does not exist.', hint: 'Check the path; `nle build` writes the image at build.eifPath in nle.yaml (default build/enclave.eif)'},
  EIF_UNREADABLE: {exit: IO, summary: 'The EIF file exists but cannot be opened or read.', hint: 'Check the file\'s permissions and that it is a regular file'},
  EIF_FILE_CHANGED: {exit: IO, summary: 'A file changed size while it was being read or packed.', hint: 'Run the command again once nothing else writes to the file'},
  // reading: the 548-byte header
  EIF_BAD_MAGIC: {exit: VERIFY, summary: 'The file does not start with the EIF magic ".eif".', hint: 'This is not an enclave image: pass the .eif that `nle build` or `nitro-cli build-enclave` wrote'},
  EIF_TRUNCATED: {exit: VERIFY, summary: 'The file is shorter than the EIF header or a section it declares.', hint: `The image is incomplete (an interrupted build or copy). ${MALFORMED}`},
  EIF_UNSUPPORTED_VERSION: {exit: VERIFY, summary: 'The EIF format version is not one nle reads.', hint: 'Rebuild the image with a nitro-cli release nle supports, or with `nle eif build`'},
  EIF_BAD_FLAGS: {exit: VERIFY, summary: 'The EIF header sets reserved flag bits.', hint: MALFORMED},
  EIF_BAD_HEADER: {exit: VERIFY, summary: 'The EIF header has non-zero reserved fields or unused section-table entries.', hint: MALFORMED},
  EIF_TOO_MANY_SECTIONS: {exit: VERIFY, summary: 'The EIF declares more sections than the format allows.', hint: MALFORMED},
  // reading: the section table and section headers
  EIF_SECTION_OUT_OF_BOUNDS: {exit: VERIFY, summary: 'A section starts or ends past the end of the file.', hint: MALFORMED},
  EIF_SECTION_OVERLAP: {exit: VERIFY, summary: 'A section overlaps the header or the section before it.', hint: MALFORMED},
  EIF_SECTION_GAP: {exit: VERIFY, summary: 'There is a gap between two sections (sections must be contiguous).', hint: MALFORMED},
  EIF_TRAILING_DATA: {exit: VERIFY, summary: 'Bytes follow the last section.', hint: MALFORMED},
  EIF_SECTION_SIZE_MISMATCH: {exit: VERIFY, summary: 'A section header and the EIF header disagree on the section\'s size.', hint: MALFORMED},
  EIF_UNKNOWN_SECTION_TYPE: {exit: VERIFY, summary: 'A section has a type the format does not define.', hint: MALFORMED},
  EIF_BAD_SECTION_FLAGS: {exit: VERIFY, summary: 'A section header sets flags.', hint: MALFORMED},
  EIF_MISSING_SECTION: {exit: VERIFY, summary: 'A required section (kernel, cmdline, ramdisk) is absent.', hint: MALFORMED},
  EIF_DUPLICATE_SECTION: {exit: VERIFY, summary: 'A section that may appear once appears several times.', hint: MALFORMED},
  EIF_SECTION_ORDER: {exit: VERIFY, summary: 'The kernel, cmdline and ramdisk sections are not in that order.', hint: MALFORMED},
  EIF_SECTION_TOO_LARGE: {exit: VERIFY, summary: 'A section is larger than nle accepts for its type.', hint: `Refused to bound memory use. ${MALFORMED}`},
  // reading: section contents
  EIF_BAD_METADATA: {exit: VERIFY, summary: 'The metadata section is not UTF-8 JSON of the expected shape.', hint: MALFORMED},
  EIF_BAD_SIGNATURE_CBOR: {exit: VERIFY, summary: 'The signature section is not the CBOR nitro-cli writes.', hint: MALFORMED},
  EIF_BAD_COSE_SIGN1: {exit: VERIFY, summary: 'The signature section holds a malformed COSE_Sign1.', hint: MALFORMED},
  EIF_BAD_CERTIFICATE: {exit: VERIFY, summary: 'The signing certificate is not a valid X.509 certificate.', hint: 'Check build.signing.certificate (a PEM certificate) and rebuild'},
  // trusting: integrity and signature
  EIF_BAD_CRC: {exit: VERIFY, summary: 'The EIF\'s CRC32 does not match its contents.', hint: `The image was altered or damaged after it was built. ${MALFORMED}`},
  EIF_NOT_SIGNED: {exit: VERIFY, summary: 'The EIF is not signed but a signature is required.', hint: 'Sign the image: set build.signing in nle.yaml and `nle build` again'},
  EIF_BAD_SIGNATURE: {exit: VERIFY, summary: 'The EIF signature does not verify under its signing certificate.', hint: 'The image or its signature was altered: rebuild and sign it again'},
  EIF_SIGNATURE_PCR_MISMATCH: {exit: VERIFY, summary: 'The signature is valid but signs another PCR0 than the image measures.', hint: 'The signature belongs to another image: rebuild and sign this one'},
  EIF_CERT_NOT_YET_VALID: {exit: VERIFY, summary: 'The EIF signing certificate is not valid yet.', hint: 'Check this machine\'s clock, or sign with a certificate valid now'},
  EIF_CERT_EXPIRED: {exit: VERIFY, summary: 'The EIF signing certificate has expired.', hint: 'Renew the certificate in build.signing.certificate and `nle build` again'},
  // writing
  EIF_BAD_INPUT: {exit: CONFIG, summary: 'An input to the EIF writer is not what it must be (kernel, cmdline, ramdisk folder).', hint: 'Check the paths and values given to `nle eif build` (see `nle eif build --help`)'},
  EIF_INPUT_NOT_FOUND: {exit: IO, summary: 'A file to put into the EIF cannot be opened.', hint: 'Check that the file exists and is readable'},
  EIF_TOO_MANY_RAMDISKS: {exit: CONFIG, summary: 'More ramdisks were given than an EIF can hold.', hint: 'Merge ramdisks: pass fewer --ramdisk folders'},
  EIF_BAD_KEY: {exit: CONFIG, summary: 'The signing key is not an EC private key on P-256 or P-384.', hint: 'Use a PEM EC private key (e.g. `openssl ecparam -name secp384r1 -genkey`) in build.signing.privateKey'},
  EIF_KEY_CERT_MISMATCH: {exit: CONFIG, summary: 'The private key does not belong to the signing certificate.', hint: 'Give the key the certificate was issued for (build.signing.privateKey and .certificate)'},
  EIF_WRITE_FAILED: {exit: IO, summary: 'The EIF could not be written or read back.', hint: 'Check free space and permissions of the output folder'},
  EIF_CPIO_UNSUPPORTED_FILE: {exit: CONFIG, summary: 'A ramdisk folder holds something other than files, folders and symlinks.', hint: 'Remove sockets, devices and FIFOs from the ramdisk folder'},
  EIF_CPIO_FILE_TOO_LARGE: {exit: CONFIG, summary: 'A file is too large for a cpio newc entry (4 GiB - 1).', hint: 'Split the file or keep it out of the ramdisk'},
  EIF_CPIO_BAD_NAME: {exit: CONFIG, summary: 'A ramdisk entry name is not a relative path of plain components.', hint: 'Rename the file: no "..", no absolute paths, no NUL or newline'},
  // a bug in nle (should never happen)
  EIF_INTERNAL: {exit: INTERNAL, summary: 'An internal check of the EIF writer failed; nothing was written.', hint: 'This is a bug in nle: re-run with --verbose and report the output'},
})

/** Every code an EIF operation can fail with. */
export type EifErrorCode = keyof typeof EIF_ERRORS

export function eifError(code: EifErrorCode, message: string, options: NleErrorOptions = {}): NleError<EifErrorCode> {
  return new NleError(code, message, options)
}
