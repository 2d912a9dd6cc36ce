/**
 * The metadata section (type 5): compact JSON of EifIdentityInfo, keys in the reference's struct
 * order. Not measured by any PCR; nle fixes BuildTime so that its images are reproducible.
 */
import {eifError} from './errors.js'

export interface EifMetadata {
  ImageName: string
  ImageVersion: string
  BuildMetadata: {
    BuildTime: string
    BuildTool: string
    BuildToolVersion: string
    OperatingSystem: string
    KernelVersion: string
  }
  DockerInfo: unknown
  CustomMetadata: unknown
}

/** The BuildTime nle writes unless told otherwise: the epoch, in chrono's RFC 3339 form. */
export const FIXED_BUILD_TIME = '1970-01-01T00:00:00+00:00'
/** nitro-cli's limit for --metadata files. */
export const MAX_CUSTOM_METADATA_SIZE = 4096

export interface MetadataInput {
  imageName: string
  imageVersion: string
  buildTime?: string
  buildTool?: string
  buildToolVersion?: string
  operatingSystem?: string
  kernelVersion?: string
  dockerInfo?: unknown
  customMetadata?: unknown
}

/** serde_json (without preserve_order) writes object keys sorted; do the same for free-form values. */
function sortedJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedJson)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(value).sort()) out[k] = sortedJson((value as Record<string, unknown>)[k])
    return out
  }
  return value
}

export function buildMetadata(input: MetadataInput): EifMetadata {
  return {
    ImageName: input.imageName,
    ImageVersion: input.imageVersion,
    BuildMetadata: {
      BuildTime: input.buildTime ?? FIXED_BUILD_TIME,
      BuildTool: input.buildTool ?? 'nle',
      BuildToolVersion: input.buildToolVersion ?? '0.0.0',
      OperatingSystem: input.operatingSystem ?? 'Linux',
      KernelVersion: input.kernelVersion ?? 'unknown',
    },
    DockerInfo: sortedJson(input.dockerInfo ?? null),
    CustomMetadata: sortedJson(input.customMetadata ?? null),
  }
}

export function encodeMetadata(meta: EifMetadata): Buffer {
  // Explicit key order (struct order), compact like serde_json::to_vec.
  const ordered = {
    ImageName: meta.ImageName,
    ImageVersion: meta.ImageVersion,
    BuildMetadata: buildFields(meta),
    DockerInfo: meta.DockerInfo,
    CustomMetadata: meta.CustomMetadata,
  }
  return Buffer.from(JSON.stringify(ordered), 'utf8')
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Parse a metadata section as the reference does (unknown keys ignored, missing JSON values = null). */
export function parseMetadata(bytes: Buffer): EifMetadata {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(bytes))
  } catch (error) {
    throw eifError('EIF_BAD_METADATA', `The EIF metadata section is not UTF-8 JSON: ${(error as Error).message}`, {cause: error})
  }
  const bad = (what: string): never => {
    throw eifError('EIF_BAD_METADATA', `The EIF metadata section is invalid: ${what}.`)
  }
  if (!isObj(value)) return bad('not a JSON object')
  if (typeof value.ImageName !== 'string') bad('ImageName is not a string')
  if (typeof value.ImageVersion !== 'string') bad('ImageVersion is not a string')
  const b = value.BuildMetadata
  if (!isObj(b)) return bad('BuildMetadata is not an object')
  for (const k of ['BuildTime', 'BuildTool', 'BuildToolVersion', 'OperatingSystem', 'KernelVersion']) {
    if (typeof b[k] !== 'string') bad(`BuildMetadata.${k} is not a string`)
  }
  return {
    ImageName: value.ImageName as string,
    ImageVersion: value.ImageVersion as string,
    BuildMetadata: {
      BuildTime: b.BuildTime as string,
      BuildTool: b.BuildTool as string,
      BuildToolVersion: b.BuildToolVersion as string,
      OperatingSystem: b.OperatingSystem as string,
      KernelVersion: b.KernelVersion as string,
    },
    DockerInfo: value.DockerInfo ?? null,
    CustomMetadata: value.CustomMetadata ?? null,
  }
}

/** describe-eif's "Metadata": build fields, DockerInfo, and CustomMetadata's keys flattened in (omitted when null). */
export function describeMetadata(meta: EifMetadata): Record<string, unknown> {
  const out: Record<string, unknown> = {...buildFields(meta), DockerInfo: meta.DockerInfo}
  if (isObj(meta.CustomMetadata)) Object.assign(out, meta.CustomMetadata)
  else if (meta.CustomMetadata !== null) out.CustomMetadata = meta.CustomMetadata
  return out
}

/** The build fields in nitro-cli's order (the serialized metadata and describe-eif print them so). */
function buildFields(meta: EifMetadata): EifMetadata['BuildMetadata'] {
  const b = meta.BuildMetadata
  return {BuildTime: b.BuildTime, BuildTool: b.BuildTool, BuildToolVersion: b.BuildToolVersion, OperatingSystem: b.OperatingSystem, KernelVersion: b.KernelVersion}
}
