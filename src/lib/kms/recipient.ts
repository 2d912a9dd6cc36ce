/**
 * CiphertextForRecipient: the CMS EnvelopedData KMS returns when a request carries a `Recipient`
 * (an attestation document with the enclave's ephemeral RSA public key).
 *
 * Layout (real KMS bytes, see ../shared/testdata/kms): BER with indefinite lengths,
 * ContentInfo(envelopedData) → EnvelopedData v2 → one KeyTransRecipientInfo v2 whose rid is a
 * 32-byte subjectKeyIdentifier, RSAES-OAEP with explicit SHA-256 / MGF1-SHA-256 parameters (empty
 * label), and AES-256-CBC content (PKCS#7 padding) whose encryptedContent is either one primitive
 * [0] or a constructed indefinite [0] of OCTET STRING chunks.
 *
 * - `parseEnvelope` / `decryptEnvelope`: the in-enclave side. Parsing uses pkijs/asn1js (BER,
 *   indefinite lengths); decryption uses node:crypto with the enclave's private key.
 * - `buildEnvelope`: the local KMS endpoint's side. It writes the same shape as the real bytes.
 *   The SKI is SHA-256 of the recipient's DER SubjectPublicKeyInfo — an assumption (how KMS
 *   derives it is not documented), so `decryptEnvelope` does not require it to match.
 */
import {type KeyObject, createCipheriv, createDecipheriv, createHash, createPublicKey, constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes} from 'node:crypto'

import * as asn1js from 'asn1js'
import {ContentInfo, EnvelopedData, KeyTransRecipientInfo} from 'pkijs'

import {isNleError} from '../errors.js'
import {cmsError} from './errors.js'

export const OID_ENVELOPED_DATA = '1.2.840.113549.1.7.3'
export const OID_DATA = '1.2.840.113549.1.7.1'
export const OID_RSAES_OAEP = '1.2.840.113549.1.1.7'
export const OID_MGF1 = '1.2.840.113549.1.1.8'
export const OID_SHA256 = '2.16.840.1.101.3.4.2.1'
export const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42'

/** Only RSA keys of at least this size are accepted as recipients (KMS documents RSA-2048). */
export const MIN_RSA_BITS = 2048
/** The largest envelope parsed (a KMS response is a few hundred bytes; GenerateRandom ≤ 1024 B). */
export const MAX_ENVELOPE_BYTES = 64 * 1024

export interface ParsedRecipient {
  version: number
  /** The rid's subjectKeyIdentifier (hex); null when the rid is issuerAndSerialNumber. */
  subjectKeyIdentifier: string | null
  keyEncryptionAlgorithm: string
  /** OAEP hash and MGF1 hash OIDs; SHA-1 (the ASN.1 default) when the parameters omit them. */
  oaepHash: string
  mgf1Hash: string
  /** True when the OAEP parameters carry a pSource (a non-empty label), which nle does not support. */
  hasLabel: boolean
  encryptedKey: Uint8Array
}

export interface ParsedEnvelope {
  version: number
  recipients: ParsedRecipient[]
  contentType: string
  contentEncryptionAlgorithm: string
  iv: Uint8Array
  /** The encrypted content, chunks concatenated. */
  encryptedContent: Uint8Array
}

const SHA1 = '1.3.14.3.2.26'

function malformed(message: string, cause?: unknown): never {
  throw cmsError('CMS_MALFORMED', `CiphertextForRecipient: ${message}`, {
    hint: 'The bytes are not the CMS EnvelopedData KMS returns for a Recipient (pass the raw bytes, base64-decoded).',
    cause,
  })
}

function unsupported(message: string): never {
  throw cmsError('CMS_UNSUPPORTED', `CiphertextForRecipient: ${message}`, {
    hint: 'nle supports what KMS emits: KeyTransRecipientInfo v2, RSAES-OAEP-SHA-256, AES-256-CBC.',
  })
}

const bytesOf = (buffer: ArrayBuffer): Uint8Array => new Uint8Array(buffer.slice(0))

function oaepParams(params: unknown): {hash: string; mgf1: string; hasLabel: boolean} {
  // RSAES-OAEP-params ::= SEQUENCE { [0] hashAlgorithm DEFAULT sha1, [1] maskGenAlgorithm DEFAULT mgf1SHA1, [2] pSourceAlgorithm DEFAULT pSpecifiedEmpty }
  let hash = SHA1
  let mgf1 = SHA1
  let hasLabel = false
  if (params === undefined || params instanceof asn1js.Null) return {hash, mgf1, hasLabel}
  if (!(params instanceof asn1js.Sequence)) malformed('the RSAES-OAEP parameters are not a SEQUENCE.')
  for (const item of params.valueBlock.value) {
    if (item.idBlock.tagClass !== 3 || !(item instanceof asn1js.Constructed)) malformed('unexpected element in the RSAES-OAEP parameters.')
    const inner = item.valueBlock.value[0]
    if (!(inner instanceof asn1js.Sequence)) malformed('an RSAES-OAEP parameter is not an AlgorithmIdentifier.')
    const oid = inner.valueBlock.value[0]
    if (!(oid instanceof asn1js.ObjectIdentifier)) malformed('an RSAES-OAEP parameter has no algorithm OID.')
    const tag = item.idBlock.tagNumber
    if (tag === 0) hash = oid.valueBlock.toString()
    else if (tag === 1) {
      if (oid.valueBlock.toString() !== OID_MGF1) unsupported(`mask generation ${oid.valueBlock.toString()} (only MGF1).`)
      const mgfHash = inner.valueBlock.value[1]
      const mgfOid = mgfHash instanceof asn1js.Sequence ? mgfHash.valueBlock.value[0] : undefined
      if (!(mgfOid instanceof asn1js.ObjectIdentifier)) malformed('the MGF1 parameters name no hash.')
      mgf1 = mgfOid.valueBlock.toString()
    } else if (tag === 2) hasLabel = true
    else malformed(`unknown RSAES-OAEP parameter [${tag}].`)
  }
  return {hash, mgf1, hasLabel}
}

/**
 * Parse a CiphertextForRecipient (BER or DER). Throws CMS_MALFORMED / CMS_UNSUPPORTED, and only
 * those: asn1js and pkijs throw their own errors (RangeError, "Wrong input string…") on some
 * malformed inputs, deep inside field accessors, so every failure below is mapped here once.
 */
export function parseEnvelope(bytes: Uint8Array): ParsedEnvelope {
  try {
    return parseEnvelopeInner(bytes)
  } catch (error) {
    if (isNleError(error)) throw error
    malformed(`unreadable structure (${(error as Error)?.name ?? 'error'}).`, error)
  }
}

function parseEnvelopeInner(bytes: Uint8Array): ParsedEnvelope {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) malformed('no bytes.')
  if (bytes.length > MAX_ENVELOPE_BYTES) malformed(`${bytes.length} bytes is more than the ${MAX_ENVELOPE_BYTES} accepted.`)
  const copy = new Uint8Array(bytes)
  const decoded = asn1js.fromBER(copy.buffer)
  if (decoded.offset === -1 || decoded.result.error) malformed(`not BER: ${decoded.result.error || 'decode failed'}.`)
  if (decoded.offset !== copy.length) malformed(`${copy.length - decoded.offset} trailing bytes after the ContentInfo.`)
  let enveloped: EnvelopedData
  try {
    const info = new ContentInfo({schema: decoded.result})
    if (info.contentType !== OID_ENVELOPED_DATA) malformed(`content type ${info.contentType} is not envelopedData.`)
    enveloped = new EnvelopedData({schema: info.content})
  } catch (error) {
    if (isNleError(error)) throw error
    malformed(`not a ContentInfo/EnvelopedData: ${(error as Error).message}`, error)
  }
  const recipients: ParsedRecipient[] = enveloped.recipientInfos.map((info) => {
    if (!(info.value instanceof KeyTransRecipientInfo)) unsupported('a recipient is not a KeyTransRecipientInfo.')
    const ktri = info.value
    const params = oaepParams(ktri.keyEncryptionAlgorithm.algorithmParams as unknown)
    return {
      version: ktri.version,
      subjectKeyIdentifier: ktri.rid instanceof asn1js.OctetString ? Buffer.from(ktri.rid.valueBlock.valueHexView).toString('hex') : null,
      keyEncryptionAlgorithm: ktri.keyEncryptionAlgorithm.algorithmId,
      oaepHash: params.hash,
      mgf1Hash: params.mgf1,
      hasLabel: params.hasLabel,
      encryptedKey: bytesOf(ktri.encryptedKey.getValue()),
    }
  })
  const eci = enveloped.encryptedContentInfo
  const ivParam = eci.contentEncryptionAlgorithm.algorithmParams as unknown
  if (!(ivParam instanceof asn1js.OctetString)) malformed('the content-encryption algorithm carries no IV.')
  if (!eci.encryptedContent) malformed('the envelope carries no encrypted content.')
  return {
    version: enveloped.version,
    recipients,
    contentType: eci.contentType,
    contentEncryptionAlgorithm: eci.contentEncryptionAlgorithm.algorithmId,
    iv: bytesOf(ivParam.getValue()),
    encryptedContent: bytesOf(eci.getEncryptedContent()),
  }
}

function rsaKeyBits(key: KeyObject): number {
  if (key.asymmetricKeyType !== 'rsa') {
    throw cmsError('CMS_BAD_KEY', `The recipient key is ${key.asymmetricKeyType ?? 'not asymmetric'}, not RSA.`, {hint: 'KMS encrypts to an RSA key (RSAES_OAEP_SHA_256).'})
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
  if (bits < MIN_RSA_BITS) throw cmsError('CMS_BAD_KEY', `The recipient RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required.`, {hint: 'Generate an RSA-2048 key pair.'})
  return bits
}

/**
 * Decrypt a CiphertextForRecipient with the enclave's RSA private key. Checks every algorithm
 * against what KMS uses before touching the key; returns the plaintext (never logged).
 */
export function decryptEnvelope(bytes: Uint8Array, privateKey: KeyObject): Buffer {
  if (privateKey.type !== 'private') throw cmsError('CMS_BAD_KEY', 'decryptEnvelope needs a private key.', {hint: 'Pass the enclave\'s ephemeral RSA private key.'})
  rsaKeyBits(privateKey)
  const envelope = parseEnvelope(bytes)
  if (envelope.version !== 2) unsupported(`EnvelopedData version ${envelope.version} (KMS sends 2).`)
  if (envelope.contentType !== OID_DATA) unsupported(`content type ${envelope.contentType} (expected data).`)
  if (envelope.contentEncryptionAlgorithm !== OID_AES256_CBC) unsupported(`content encryption ${envelope.contentEncryptionAlgorithm} (expected AES-256-CBC).`)
  if (envelope.iv.length !== 16) malformed(`the IV is ${envelope.iv.length} bytes, not 16.`)
  if (envelope.encryptedContent.length === 0 || envelope.encryptedContent.length % 16 !== 0) malformed('the encrypted content is not a whole number of AES blocks.')
  if (envelope.recipients.length === 0) malformed('the envelope has no recipient.')
  let lastError: unknown
  for (const recipient of envelope.recipients) {
    if (recipient.version !== 2 || recipient.subjectKeyIdentifier === null) unsupported('the recipient is not identified by a subjectKeyIdentifier (KeyTransRecipientInfo v2).')
    if (recipient.keyEncryptionAlgorithm !== OID_RSAES_OAEP) unsupported(`key transport ${recipient.keyEncryptionAlgorithm} (expected RSAES-OAEP).`)
    if (recipient.oaepHash !== OID_SHA256 || recipient.mgf1Hash !== OID_SHA256) unsupported('RSAES-OAEP must use SHA-256 and MGF1-SHA-256.')
    if (recipient.hasLabel) unsupported('RSAES-OAEP with a label (pSource) is not supported.')
    let cek: Buffer
    try {
      cek = privateDecrypt({key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256'}, recipient.encryptedKey)
    } catch (error) {
      lastError = error
      continue
    }
    if (cek.length !== 32) {
      cek.fill(0)
      throw cmsError('CMS_DECRYPT_FAILED', `The content-encryption key is ${cek.length} bytes, not 32.`)
    }
    try {
      const decipher = createDecipheriv('aes-256-cbc', cek, envelope.iv)
      return Buffer.concat([decipher.update(envelope.encryptedContent), decipher.final()])
    } catch (error) {
      throw cmsError('CMS_DECRYPT_FAILED', 'The content could not be decrypted (bad padding): the envelope is corrupt.', {cause: error})
    } finally {
      cek.fill(0)
    }
  }
  throw cmsError('CMS_DECRYPT_FAILED', 'The content-encryption key could not be decrypted with this private key.', {
    hint: 'The envelope was made for another key: use the key whose public half went into the attestation document.',
    cause: lastError,
  })
}

/**
 * The enclave's ephemeral recipient key: an RSA-2048 pair whose public half (DER SPKI) goes into the
 * attestation document's public_key; the private half never leaves the enclave's memory.
 */
export function generateRecipientKeyPair(): {publicKeyDer: Uint8Array; privateKey: KeyObject} {
  const {publicKey, privateKey} = generateKeyPairSync('rsa', {modulusLength: MIN_RSA_BITS})
  return {publicKeyDer: new Uint8Array(publicKey.export({type: 'spki', format: 'der'})), privateKey}
}

/** SHA-256 of the DER SubjectPublicKeyInfo: the subjectKeyIdentifier nle writes (32 bytes). */
export function subjectKeyIdentifier(spkiDer: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(spkiDer).digest())
}

/** Parse a recipient public key given as DER SubjectPublicKeyInfo (the attestation document's public_key). */
export function recipientPublicKey(spkiDer: Uint8Array): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey({key: Buffer.from(spkiDer), format: 'der', type: 'spki'})
  } catch (error) {
    throw cmsError('CMS_BAD_KEY', 'The recipient public key is not a DER SubjectPublicKeyInfo.', {hint: 'Put the DER SPKI of an RSA-2048 key in the attestation document\'s public_key.', cause: error})
  }
  rsaKeyBits(key)
  return key
}

/** A fresh ArrayBuffer with exactly these bytes (a Buffer's .buffer may be a shared pool). */
const ab = (bytes: Uint8Array): ArrayBuffer => Uint8Array.from(bytes).buffer
const indefinite = {isIndefiniteForm: true}
const algorithm = (oid: string, params?: asn1js.AsnType): asn1js.Sequence =>
  new asn1js.Sequence({value: params ? [new asn1js.ObjectIdentifier({value: oid}), params] : [new asn1js.ObjectIdentifier({value: oid})]})

/**
 * Encrypt `plaintext` to the RSA public key given as DER SPKI, in the layout of the real KMS bytes
 * (BER, indefinite lengths, constructed encryptedContent). A fresh CEK and IV per call.
 */
export function buildEnvelope(plaintext: Uint8Array, spkiDer: Uint8Array): Uint8Array {
  const publicKey = recipientPublicKey(spkiDer)
  const cek = randomBytes(32)
  const iv = randomBytes(16)
  try {
    const cipher = createCipheriv('aes-256-cbc', cek, iv)
    const encryptedContent = Buffer.concat([cipher.update(plaintext), cipher.final()])
    const encryptedKey = publicEncrypt({key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256'}, cek)
    const sha256 = algorithm(OID_SHA256, new asn1js.Null())
    const oaep = new asn1js.Sequence({
      value: [
        new asn1js.Constructed({idBlock: {tagClass: 3, tagNumber: 0}, value: [sha256]}),
        new asn1js.Constructed({idBlock: {tagClass: 3, tagNumber: 1}, value: [algorithm(OID_MGF1, algorithm(OID_SHA256, new asn1js.Null()))]}),
      ],
    })
    const recipientInfo = new asn1js.Sequence({
      value: [
        new asn1js.Integer({value: 2}),
        new asn1js.Primitive({idBlock: {tagClass: 3, tagNumber: 0}, valueHex: ab(subjectKeyIdentifier(spkiDer))}),
        algorithm(OID_RSAES_OAEP, oaep),
        new asn1js.OctetString({valueHex: ab(encryptedKey)}),
      ],
    })
    const encryptedContentInfo = new asn1js.Sequence({
      lenBlock: indefinite,
      value: [
        new asn1js.ObjectIdentifier({value: OID_DATA}),
        algorithm(OID_AES256_CBC, new asn1js.OctetString({valueHex: ab(iv)})),
        new asn1js.Constructed({idBlock: {tagClass: 3, tagNumber: 0}, lenBlock: indefinite, value: [new asn1js.OctetString({valueHex: ab(encryptedContent)})]}),
      ],
    })
    const envelopedData = new asn1js.Sequence({
      lenBlock: indefinite,
      value: [new asn1js.Integer({value: 2}), new asn1js.Set({value: [recipientInfo]}), encryptedContentInfo],
    })
    const contentInfo = new asn1js.Sequence({
      lenBlock: indefinite,
      value: [
        new asn1js.ObjectIdentifier({value: OID_ENVELOPED_DATA}),
        new asn1js.Constructed({idBlock: {tagClass: 3, tagNumber: 0}, lenBlock: indefinite, value: [envelopedData]}),
      ],
    })
    return new Uint8Array(contentInfo.toBER())
  } finally {
    cek.fill(0)
  }
}
