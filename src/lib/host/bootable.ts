/**
 * Whether an EIF can boot. `nle build --builder native` without the Nitro blobs writes a
 * placeholder kernel and records `{"nle": {"bootable": false, "reason": …}}` in the EIF's custom
 * metadata; every command that shows or runs an EIF reads it from there.
 */
import {SectionType} from '../eif/format.js'
import {parseMetadata} from '../eif/metadata.js'
import {type EifInfo, readLayout} from '../eif/reader.js'
import {withFileSource} from '../eif/source.js'

export interface Bootability {
  bootable: boolean
  reason?: string
}

/** What nle marks in an EIF's custom metadata when it cannot boot (placeholder kernel). */
export function bootability(info: Pick<EifInfo, 'metadata'>): Bootability {
  const custom = info.metadata?.CustomMetadata
  const nle = custom !== null && typeof custom === 'object' ? (custom as {nle?: unknown}).nle : undefined
  if (nle !== null && typeof nle === 'object' && (nle as {bootable?: unknown}).bootable === false) {
    const reason = (nle as {reason?: unknown}).reason
    return {bootable: false, reason: typeof reason === 'string' ? reason : 'marked not bootable'}
  }
  return {bootable: true}
}

/**
 * Whether `nle run` may start it on a Nitro host: not a placeholder, and not built with the local
 * QEMU kernel (`--blobs qemu`, `{"nle": {"kernel": "qemu"}}`), which boots in QEMU only.
 */
export function nitroBootability(info: Pick<EifInfo, 'metadata'>): Bootability {
  const boot = bootability(info)
  if (!boot.bootable) return boot
  const custom = info.metadata?.CustomMetadata
  const nle = custom !== null && typeof custom === 'object' ? (custom as {nle?: unknown}).nle : undefined
  if (nle !== null && typeof nle === 'object' && (nle as {kernel?: unknown}).kernel === 'qemu') {
    return {bootable: false, reason: 'built with the local QEMU kernel (--blobs qemu): it boots in QEMU\'s nitro-enclave machine, not on a Nitro host'}
  }
  return boot
}

/** Bootability from the metadata section alone (no pass over the whole, possibly large, EIF). */
export async function eifBootability(path: string): Promise<Bootability> {
  return withFileSource(path, async (src) => {
    const layout = await readLayout(src)
    const section = layout.sections.find((s) => s.type === SectionType.Metadata)
    if (!section) return {bootable: true}
    const bytes = Buffer.alloc(section.size)
    await src.readInto(bytes, section.dataOffset, section.size)
    return bootability({metadata: parseMetadata(bytes)})
  })
}

