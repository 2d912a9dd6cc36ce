/**
 * Typed wrappers over the docker CLI: `docker build` and `docker image inspect`. The inspect shape
 * is the Engine API's ImageInspect (what `docker image inspect` prints as a JSON array).
 */
import {z} from 'zod'

import {ToolError} from '../errors.js'
import type {HostErrorCode} from './errors.js'
import {type HostContext, type ToolResult, badShape, parseToolJson, runTool} from './exec.js'

function dockerFailure(args: readonly string[], r: ToolResult, fallback: HostErrorCode, what: string): ToolError<HostErrorCode> {
  if (/Cannot connect to the Docker daemon|Is the docker daemon running|permission denied while trying to connect to the Docker daemon/i.test(r.stderr)) {
    return new ToolError<HostErrorCode>('DOCKER_DAEMON_UNREACHABLE', 'The docker daemon is not reachable.', {
      tool: 'docker',
      argv: args,
      toolExitCode: r.exitCode,
      stderr: r.stderr,
      hint: 'Start it (`sudo systemctl enable --now docker`) and add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again). `--builder native` needs no docker.',
    })
  }
  if (/No such image/i.test(r.stderr)) {
    return new ToolError<HostErrorCode>('DOCKER_IMAGE_NOT_FOUND', `${what}: no such image.`, {
      tool: 'docker',
      argv: args,
      toolExitCode: r.exitCode,
      stderr: r.stderr,
      hint: 'Build it first: `nle build` runs docker build with build.imageTag.',
    })
  }
  return new ToolError<HostErrorCode>(fallback, `${what} failed (exit ${r.exitCode}).`, {
    tool: 'docker',
    argv: args,
    toolExitCode: r.exitCode,
    stderr: r.stderr,
    hint: fallback === 'DOCKER_BUILD_FAILED' ? 'The Dockerfile step shown above failed; fix it in enclave/Dockerfile (the build context is in .nle/build-context).' : undefined,
  })
}

export interface DockerBuildOptions {
  context: string
  tag: string
  /** SOURCE_DATE_EPOCH for reproducible layers: passed as a build arg and in the environment. */
  sourceDateEpoch: number
  dockerfile?: string
  buildArgs?: Record<string, string>
}

export function dockerBuildArgs(o: DockerBuildOptions): string[] {
  const args = ['build', '--tag', o.tag, '--build-arg', `SOURCE_DATE_EPOCH=${o.sourceDateEpoch}`]
  for (const [k, v] of Object.entries(o.buildArgs ?? {}).sort(([a], [b]) => a.localeCompare(b))) args.push('--build-arg', `${k}=${v}`)
  if (o.dockerfile) args.push('--file', o.dockerfile)
  args.push(o.context)
  return args
}

export async function dockerBuild(ctx: HostContext, o: DockerBuildOptions): Promise<{argv: string[]}> {
  const args = dockerBuildArgs(o)
  const r = await runTool(ctx, 'docker', args, {env: {SOURCE_DATE_EPOCH: String(o.sourceDateEpoch)}})
  if (r.exitCode !== 0) throw dockerFailure(args, r, 'DOCKER_BUILD_FAILED', `docker build of ${o.tag}`)
  return {argv: args}
}

const inspectSchema = z.object({
  Id: z.string(),
  RepoTags: z.array(z.string()).nullish(),
  Created: z.string().optional(),
  Architecture: z.string().optional(),
  Os: z.string().optional(),
  Size: z.number().optional(),
  Config: z
    .object({
      Cmd: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Env: z.array(z.string()).nullish(),
      WorkingDir: z.string().nullish(),
    })
    .nullish(),
})

export interface DockerImage {
  /** "sha256:<hex>" */
  id: string
  repoTags: string[]
  created?: string
  architecture?: string
  os?: string
  size?: number
  cmd: string[]
  entrypoint: string[]
  env: string[]
  /** The whole inspect object, as nitro-cli stores it in the EIF metadata (DockerInfo). */
  raw: Record<string, unknown>
}

export async function dockerImageInspect(ctx: HostContext, ref: string): Promise<DockerImage> {
  const args = ['image', 'inspect', ref]
  const r = await runTool(ctx, 'docker', args)
  if (r.exitCode !== 0) throw dockerFailure(args, r, 'DOCKER_FAILED', `docker image inspect ${ref}`)
  const value = parseToolJson('docker', args, r)
  const first = Array.isArray(value) ? (value[0] as unknown) : undefined
  const result = inspectSchema.safeParse(first)
  if (!result.success) throw badShape('docker', args, r, 'expected a JSON array with one image object')
  const img = result.data
  return {
    id: img.Id,
    repoTags: img.RepoTags ?? [],
    ...(img.Created ? {created: img.Created} : {}),
    ...(img.Architecture ? {architecture: img.Architecture} : {}),
    ...(img.Os ? {os: img.Os} : {}),
    ...(img.Size === undefined ? {} : {size: img.Size}),
    cmd: img.Config?.Cmd ?? [],
    entrypoint: img.Config?.Entrypoint ?? [],
    env: img.Config?.Env ?? [],
    raw: first as Record<string, unknown>,
  }
}
