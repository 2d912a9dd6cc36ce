/** What `nle model save` reports: the `--json` data and the human summary, from a SaveResult. */
import type {ModelManifest} from './manifest.js'
import type {SaveResult} from './save.js'

/** What `nle model save --json` prints. */
export interface SaveReport {
  dir: string
  manifest: string
  manifestDigest: string
  source: ModelManifest['source']
  files: number
  totalBytes: number
}

export function saveReport(r: SaveResult): SaveReport {
  return {dir: r.dir, manifest: r.manifestPath, manifestDigest: r.manifestDigest, source: r.manifest.source, files: r.manifest.files.length, totalBytes: r.manifest.totalBytes}
}

/** The human summary of a save. */
export function saveLines(r: SaveReport): string[] {
  return [`Saved ${r.files} files (${(r.totalBytes / 1e6).toFixed(1)} MB) to ${r.dir}`, `Manifest: ${r.manifest} (${r.manifestDigest})`]
}
