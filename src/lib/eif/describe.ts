/** `nle eif describe`: the same fields, key order and value formats as `nitro-cli describe-eif`. */
import {type SigningCertificateInfo, certificateInfo} from './cert.js'
import {describeMetadata} from './metadata.js'
import type {EifInfo, Measurements} from './reader.js'

export interface EifDescription {
  EifVersion: number
  Measurements: Measurements
  IsSigned: boolean
  SigningCertificate?: SigningCertificateInfo
  CheckCRC: boolean
  SignatureCheck?: boolean
  ImageName?: string
  ImageVersion?: string
  Metadata?: Record<string, unknown>
}

export async function describeEif(info: EifInfo): Promise<EifDescription> {
  const sig = info.signature
  const meta = info.metadata
  return {
    EifVersion: info.layout.version,
    Measurements: info.measurements,
    IsSigned: sig !== undefined,
    ...(sig ? {SigningCertificate: await certificateInfo(sig.check.certificate)} : {}),
    CheckCRC: info.crc.ok,
    ...(sig ? {SignatureCheck: sig.check.signatureValid && sig.check.payloadMatchesPcr0} : {}),
    ...(meta ? {ImageName: meta.ImageName, ImageVersion: meta.ImageVersion, Metadata: describeMetadata(meta)} : {}),
  }
}
