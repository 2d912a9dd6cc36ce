// Downloads a model repository from the Hugging Face Hub (or any server that speaks its protocol,
// chosen by HF_ENDPOINT): the revision is resolved to a commit through
// GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true, whose `siblings` carry each
// file's size and, for LFS files, the LFS oid (the sha256 of the content); files are fetched from
// {endpoint}/{repo}/resolve/{commit}/{path} (redirects followed), resumed with `Range` after an
// interruption, and checked against the LFS oid before they are accepted.
import {createWriteStream} from 'node:fs'
import {mkdir, rename, rm, stat} from 'node:fs/promises'
import {dirname} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {ModelError} from './errors.js'
import {sha256File} from './manifest.js'

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co'

export interface HubOptions {
  /** Default: $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string
  /** Default: $HF_TOKEN or $HUGGING_FACE_HUB_TOKEN. Sent as a bearer token; never logged. */
  token?: string
  /** Attempts per file when the connection drops (each resumes where the last stopped). */
  attempts?: number
  fetch?: typeof fetch
}

export interface HubFile {
  path: string
  size: number | undefined
  /** sha256 of the content (the LFS oid), when the file is stored in LFS. */
  lfsSha256: string | undefined
}

export interface HubRevision {
  endpoint: string
  repo: string
  revision: string
  commit: string
  files: HubFile[]
}

export interface DownloadProgress {
  file: string
  received: number
  total: number | undefined
  /** Bytes that were already on disk from an earlier, interrupted download. */
  resumedFrom: number
}

export function hubEndpoint(options: HubOptions = {}): string {
  return (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_HF_ENDPOINT).replace(/\/+$/, '')
}

function hubToken(options: HubOptions): string | undefined {
  const t = options.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN
  return t === undefined || t === '' ? undefined : t
}

export const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/

export class HubClient {
  readonly endpoint: string
  private readonly token: string | undefined
  private readonly attempts: number
  private readonly fetchImpl: typeof fetch

  constructor(options: HubOptions = {}) {
    this.endpoint = hubEndpoint(options)
    this.token = hubToken(options)
    this.attempts = options.attempts ?? 4
    this.fetchImpl = options.fetch ?? fetch
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {...(this.token === undefined ? {} : {authorization: `Bearer ${this.token}`}), 'user-agent': 'nle', ...extra}
  }

  private async request(url: string, init: RequestInit, what: string): Promise<Response> {
    let res: Response
    try {
      res = await this.fetchImpl(url, {redirect: 'follow', ...init})
    } catch (cause) {
      throw new ModelError('MODEL_HUB_UNREACHABLE', `Could not reach the model hub at ${this.endpoint} (${what}).`, {
        cause,
        hint: 'Check the network, or set HF_ENDPOINT to a reachable mirror.',
        details: {endpoint: this.endpoint},
      })
    }
    if (res.ok) return res
    await res.body?.cancel()
    if (res.status === 401 || res.status === 403) {
      throw new ModelError('MODEL_HUB_UNAUTHORIZED', `The hub refused access to ${what} (HTTP ${res.status}).`, {
        hint: this.token === undefined ? 'The repository may be gated or private: set HF_TOKEN or pass --token.' : 'The token does not grant access to this repository.',
        details: {status: res.status},
      })
    }
    if (res.status === 404) {
      throw new ModelError('MODEL_HUB_NOT_FOUND', `The hub has no ${what} (HTTP 404).`, {
        hint: 'Check the repository id and revision.',
        details: {status: 404},
      })
    }
    throw new ModelError('MODEL_HUB_BAD_RESPONSE', `The hub answered HTTP ${res.status} for ${what}.`, {details: {status: res.status}})
  }

  /** Resolves a revision (branch, tag or commit) to a commit and lists its files. */
  async revision(repo: string, revision = 'main'): Promise<HubRevision> {
    if (!REPO_ID.test(repo)) {
      throw new ModelError('MODEL_SOURCE_NOT_FOUND', `"${repo}" is neither a model folder nor a hub repository id (owner/name).`)
    }
    const url = `${this.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`
    const res = await this.request(url, {headers: this.headers()}, `repository ${repo} at revision ${revision}`)
    let body: unknown
    try {
      body = await res.json()
    } catch (cause) {
      throw new ModelError('MODEL_HUB_BAD_RESPONSE', 'The hub sent a revision listing that is not JSON.', {cause})
    }
    const b = body as {sha?: unknown; siblings?: unknown}
    if (typeof b.sha !== 'string' || !/^[0-9a-f]{40}$/.test(b.sha) || !Array.isArray(b.siblings)) {
      throw new ModelError('MODEL_HUB_BAD_RESPONSE', 'The hub sent a revision listing without a commit sha or files.')
    }
    const files: HubFile[] = []
    for (const s of b.siblings as {rfilename?: unknown; size?: unknown; lfs?: {sha256?: unknown; size?: unknown}}[]) {
      if (typeof s.rfilename !== 'string') continue
      const lfsSha = typeof s.lfs?.sha256 === 'string' ? s.lfs.sha256.toLowerCase() : undefined
      const size = typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : undefined
      files.push({path: s.rfilename, size, lfsSha256: lfsSha})
    }
    return {endpoint: this.endpoint, repo, revision, commit: b.sha, files}
  }

  /**
   * Downloads one file of a commit to `dest`, resuming a partial `dest.incomplete` with Range and
   * retrying a dropped connection. LFS files are checked against their oid; a mismatch deletes
   * the download and fails. Returns the sha256 of what was written.
   */
  async download(rev: HubRevision, file: HubFile, dest: string, onProgress?: (p: DownloadProgress) => void): Promise<string> {
    const partial = `${dest}.incomplete`
    const url = `${this.endpoint}/${rev.repo}/resolve/${rev.commit}/${file.path.split('/').map(encodeURIComponent).join('/')}`
    await mkdir(dirname(dest), {recursive: true})
    let lastError: unknown
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      const have = await sizeOf(partial)
      if (file.size !== undefined && have > file.size) await rm(partial, {force: true})
      const start = file.size !== undefined && have > file.size ? 0 : have
      if (file.size !== undefined && start === file.size && start > 0) break
      const res = await this.request(url, {headers: this.headers(start > 0 ? {range: `bytes=${start}-`} : {})}, `file ${file.path}`)
      const resumed = start > 0 && res.status === 206
      if (start > 0 && !resumed) await rm(partial, {force: true})
      const from = resumed ? start : 0
      const total = file.size ?? (res.headers.get('content-length') === null ? undefined : from + Number(res.headers.get('content-length')))
      let received = from
      onProgress?.({file: file.path, received, total, resumedFrom: from})
      if (res.body === null) throw new ModelError('MODEL_HUB_BAD_RESPONSE', `The hub sent no body for ${file.path}.`)
      const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>)
      body.on('data', (chunk: Buffer) => {
        received += chunk.length
        onProgress?.({file: file.path, received, total, resumedFrom: from})
      })
      try {
        await pipeline(body, createWriteStream(partial, {flags: resumed ? 'a' : 'w'}))
        lastError = undefined
      } catch (cause) {
        lastError = cause
        continue
      }
      if (file.size === undefined || (await sizeOf(partial)) >= file.size) break
      lastError = new Error(`connection closed after ${received} of ${file.size} bytes`)
    }
    if (lastError !== undefined) {
      throw new ModelError('MODEL_HUB_UNREACHABLE', `The download of ${file.path} kept failing; run the command again to resume it.`, {
        cause: lastError,
        details: {file: file.path, kept: await sizeOf(partial)},
      })
    }
    const size = await sizeOf(partial)
    if (file.size !== undefined && size !== file.size) {
      await rm(partial, {force: true})
      throw new ModelError('MODEL_HUB_BAD_RESPONSE', `${file.path} has ${size} bytes; the hub listed ${file.size}.`, {details: {file: file.path}})
    }
    const sha = await sha256File(partial)
    if (file.lfsSha256 !== undefined && sha !== file.lfsSha256) {
      await rm(partial, {force: true})
      throw new ModelError('MODEL_HASH_MISMATCH', `${file.path} does not match its LFS oid: the download is corrupt or was tampered with.`, {
        hint: 'The damaged file was deleted; run the command again.',
        details: {file: file.path, expected: file.lfsSha256, actual: sha},
      })
    }
    await rename(partial, dest)
    return sha
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size
  } catch {
    return 0
  }
}
