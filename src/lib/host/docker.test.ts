import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterEach, describe, expect, it} from 'vitest'

import {type FakeHost, fakeHost} from '../../../test/fakes/host.js'
import {hasCode, isNleError} from '../errors.js'
import {dockerBuild, dockerImageInspect} from './docker.js'
import {rejection} from '../../test-support/rejection.js'

let host: FakeHost
afterEach(() => host?.cleanup())

function context(h: FakeHost): string {
  const dir = join(h.dir, 'ctx')
  mkdirSync(dir)
  writeFileSync(join(dir, 'Dockerfile'), 'FROM scratch\n')
  return dir
}

describe('docker', () => {
  it('builds with the exact argv, SOURCE_DATE_EPOCH as build arg and in the environment, then inspects', async () => {
    host = fakeHost()
    const ctx = context(host)
    await dockerBuild({env: host.env}, {context: ctx, tag: 'demo-enclave:latest', sourceDateEpoch: 1_700_000_000, buildArgs: {B: '2', A: '1'}})
    const call = host.calls('docker')[0]!
    expect(call.argv).toEqual(['build', '--tag', 'demo-enclave:latest', '--build-arg', 'SOURCE_DATE_EPOCH=1700000000', '--build-arg', 'A=1', '--build-arg', 'B=2', ctx])
    expect(call.SOURCE_DATE_EPOCH).toBe('1700000000')
    const img = await dockerImageInspect({env: host.env}, 'demo-enclave:latest')
    expect(host.calls('docker')[1]!.argv).toEqual(['image', 'inspect', 'demo-enclave:latest'])
    expect(img.id).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(img).toMatchObject({repoTags: ['demo-enclave:latest'], architecture: 'amd64', os: 'linux', cmd: ['/bin/sh', '/app/start.sh'], entrypoint: []})
    expect(img.created).toBe('2023-11-14T22:13:20.000Z')
  })

  it('maps a failed step, a missing image and an unreachable daemon to their codes', async () => {
    host = fakeHost({FAKE_DOCKER_FAIL: 'build'})
    const ctx = context(host)
    const build = await rejection(dockerBuild({env: host.env}, {context: ctx, tag: 't', sourceDateEpoch: 0}))
    expect(hasCode(build, 'DOCKER_BUILD_FAILED')).toBe(true)
    expect(isNleError(build) && build.toJSON().details).toMatchObject({toolExitCode: 100, stderrTail: expect.stringContaining('returned a non-zero code: 100')})
    expect(hasCode(await rejection(dockerImageInspect({env: host.env}, 'nope')), 'DOCKER_IMAGE_NOT_FOUND')).toBe(true)
    const down = await rejection(dockerImageInspect({env: {...host.env, FAKE_DOCKER_DAEMON: 'down'}}, 'x'))
    expect(hasCode(down, 'DOCKER_DAEMON_UNREACHABLE')).toBe(true)
    expect(isNleError(down) && down.hint).toMatch(/systemctl enable --now docker/)
  })

  it('names the package when docker is not installed', async () => {
    host = fakeHost()
    const e = await rejection(dockerBuild({env: host.envWithOnly(['nitro-cli'])}, {context: '.', tag: 't', sourceDateEpoch: 0}))
    expect(hasCode(e, 'HOST_TOOL_MISSING')).toBe(true)
    expect(isNleError(e) && e.hint).toMatch(/dnf install -y docker/)
  })
})
