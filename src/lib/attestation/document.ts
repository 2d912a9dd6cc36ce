/**
 * The attestation document (the COSE payload): a CBOR map with text keys, validated strictly
 * against the rules of aws-nitro-enclaves-nsm-api docs/attestation_process.md §3.2.2, with the
 * two deviations real documents force: optional fields appear as explicit CBOR null (= absent),
 * and user_data / nonce may be up to 1024 bytes (AWS's own NSM conformance test sends 1024).
 */
import {cborDecode, cborEncode, isBytes, isMap} from './cbor.js'
import {verifyError} from './errors.js'

export const MAX_PCR_INDEX = 31
export const PCR_LENGTHS: readonly number[] = [32, 48, 64]
export const MAX_CERT_BYTES = 1024
export const MAX_USER_FIELD_BYTES = 1024

export interface AttestationDocument {
  moduleId: string
  digest: 'SHA384'
  /** Milliseconds since the Unix epoch. */
  timestamp: number
  /** PCR index → value, in index order. */
  pcrs: Map<number, Uint8Array>
  /** DER of the certificate that signed the document. */
  certificate: Uint8Array
  /** DER certificates, root first: [ROOT, INTERM_1, …, INTERM_N]. */
  cabundle: Uint8Array[]
  publicKey: Uint8Array | null
  userData: Uint8Array | null
  nonce: Uint8Array | null
}

const KNOWN_KEYS = new Set(['module_id', 'digest', 'timestamp', 'pcrs', 'certificate', 'cabundle', 'public_key', 'user_data', 'nonce'])

function invalid(message: string, cause?: unknown): never {
  throw verifyError('ATTEST_PAYLOAD_INVALID', `Attestation document payload: ${message}`, {
    hint: 'The document does not follow the Nitro attestation document format; it was not produced by a Nitro Secure Module.',
    cause,
  })
}

function optionalBytes(map: Map<unknown, unknown>, key: string, min: number): Uint8Array | null {
  if (!map.has(key)) return null
  const value = map.get(key)
  if (value === null) return null
  if (!isBytes(value)) invalid(`${key} must be a byte string or null.`)
  if (value.length < min || value.length > MAX_USER_FIELD_BYTES) invalid(`${key} is ${value.length} bytes; allowed ${min}..${MAX_USER_FIELD_BYTES}.`)
  return value
}

function certBytes(value: unknown, what: string): Uint8Array {
  if (!isBytes(value)) invalid(`${what} must be a byte string.`)
  if (value.length < 1 || value.length > MAX_CERT_BYTES) invalid(`${what} is ${value.length} bytes; allowed 1..${MAX_CERT_BYTES}.`)
  return value
}

/** Decode and validate the payload bytes. Throws ATTEST_PAYLOAD_INVALID. */
export function parseAttestationPayload(payload: Uint8Array): AttestationDocument {
  let map: unknown
  try {
    map = cborDecode(payload)
  } catch (error) {
    invalid(`not valid CBOR (${(error as Error).message}).`, error)
  }
  if (!isMap(map)) invalid('not a CBOR map.')
  for (const key of map.keys()) {
    if (typeof key !== 'string' || !KNOWN_KEYS.has(key)) invalid(`unknown field ${JSON.stringify(typeof key === 'bigint' ? key.toString() : key)}.`)
  }

  const moduleId = map.get('module_id')
  if (typeof moduleId !== 'string' || moduleId.length === 0) invalid('module_id must be a non-empty text string.')

  const digest = map.get('digest')
  if (digest !== 'SHA384') invalid(`digest must be "SHA384", got ${JSON.stringify(typeof digest === 'string' ? digest : typeof digest)}.`)

  const rawTimestamp = map.get('timestamp')
  let timestamp: number
  if (typeof rawTimestamp === 'bigint') {
    if (rawTimestamp <= 0n || rawTimestamp > BigInt(Number.MAX_SAFE_INTEGER)) invalid('timestamp is out of range.')
    timestamp = Number(rawTimestamp)
  } else if (typeof rawTimestamp === 'number' && Number.isSafeInteger(rawTimestamp) && rawTimestamp > 0) {
    timestamp = rawTimestamp
  } else {
    invalid('timestamp must be a positive integer (milliseconds since the epoch).')
  }

  const rawPcrs = map.get('pcrs')
  if (!isMap(rawPcrs)) invalid('pcrs must be a map.')
  if (rawPcrs.size < 1 || rawPcrs.size > MAX_PCR_INDEX + 1) invalid(`pcrs has ${rawPcrs.size} entries; allowed 1..${MAX_PCR_INDEX + 1}.`)
  const pcrs = new Map<number, Uint8Array>()
  for (const [index, value] of rawPcrs) {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index > MAX_PCR_INDEX) invalid(`PCR index ${String(index)} is not an integer in 0..${MAX_PCR_INDEX}.`)
    if (!isBytes(value) || !PCR_LENGTHS.includes(value.length)) invalid(`PCR${index} must be a byte string of 32, 48 or 64 bytes.`)
    pcrs.set(index, value)
  }
  const sortedPcrs = new Map([...pcrs].sort(([a], [b]) => a - b))

  const certificate = certBytes(map.get('certificate'), 'certificate')
  const rawBundle = map.get('cabundle')
  if (!Array.isArray(rawBundle) || rawBundle.length === 0) invalid('cabundle must be a non-empty array.')
  const cabundle = rawBundle.map((entry, i) => certBytes(entry, `cabundle[${i}]`))

  return {
    moduleId,
    digest: 'SHA384',
    timestamp,
    pcrs: sortedPcrs,
    certificate,
    cabundle,
    publicKey: optionalBytes(map, 'public_key', 1),
    userData: optionalBytes(map, 'user_data', 0),
    nonce: optionalBytes(map, 'nonce', 0),
  }
}

/**
 * Encode a document in the field order real NSM documents use (module_id, digest, timestamp,
 * pcrs, certificate, cabundle, public_key, user_data, nonce); absent optionals as null. The
 * timestamp is written as a CBOR uint64, as AWS does.
 */
export function encodeAttestationPayload(doc: AttestationDocument): Uint8Array {
  return cborEncode(
    new Map<string, unknown>([
      ['module_id', doc.moduleId],
      ['digest', doc.digest],
      ['timestamp', BigInt(doc.timestamp)],
      ['pcrs', new Map(doc.pcrs)],
      ['certificate', doc.certificate],
      ['cabundle', doc.cabundle],
      ['public_key', doc.publicKey],
      ['user_data', doc.userData],
      ['nonce', doc.nonce],
    ]),
  )
}
