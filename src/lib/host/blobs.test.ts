import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {expectCode} from '../../test-support/rejection.js'
import {tempDir} from '../../test-support/tmp.js'
import {QEMU_CMDLINE, QEMU_INIT, resolveBlobs} from './blobs.js'

const tmp = tempDir('nle-blobs-')
afterAll(() => tmp.cleanup())

const VSOCK = ['vsock', 'vmw_vsock_virtio_transport_common', 'vmw_vsock_virtio_transport']

/** A QEMU cache as scripts/qemu-nitro.sh lays it out (dummy files), with its manifest. */
function qemuCache(name: string, omit?: string, o: {vsock?: boolean} = {}): string {
  const dir = join(tmp.dir, name)
  mkdirSync(dir, {recursive: true})
  const files = {kernel: 'vmlinuz', virtioMmioKo: 'virtio_mmio.ko', nsmKo: 'nsm.ko', busybox: 'busybox'} as const
  const manifest: Record<string, unknown> = {qemu: join(dir, 'qemu'), qemuVersion: '10', firmwareDirs: [], kernelConfig: join(dir, 'config'), kernelVersion: '6.12.118+deb12-cloud-amd64'}
  for (const [key, file] of Object.entries(files)) {
    manifest[key] = join(dir, file)
    if (key !== omit) writeFileSync(join(dir, file), file)
  }
  if (o.vsock !== false) {
    manifest.vsockKos = VSOCK.map((m) => join(dir, `6.12.118+deb12-cloud-amd64-${m}.ko`))
    for (const f of manifest.vsockKos as string[]) writeFileSync(f, 'ko')
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest))
  return dir
}

describe('resolveBlobs', () => {
  it('qemu: the cached kernel and nsm.ko, nle\'s busybox init, busybox and virtio_mmio.ko in the bootstrap, the QEMU cmdline', async () => {
    const cache = qemuCache('ok')
    const b = await resolveBlobs({flag: 'qemu', projectDir: tmp.dir, env: {NLE_QEMU_CACHE: cache}})
    expect(b).toEqual({
      kind: 'qemu',
      source: join(cache, 'manifest.json'),
      kernel: join(cache, 'vmlinuz'),
      cmdline: QEMU_CMDLINE,
      init: QEMU_INIT,
      nsmKo: join(cache, 'nsm.ko'),
      extraBootstrap: [
        {name: 'bin/busybox', path: join(cache, 'busybox'), mode: 0o755},
        {name: 'virtio_mmio.ko', path: join(cache, 'virtio_mmio.ko'), mode: 0o644},
        // The vsock transport, under the names init loads, in load order.
        ...VSOCK.map((m) => ({name: `${m}.ko`, path: join(cache, `6.12.118+deb12-cloud-amd64-${m}.ko`), mode: 0o644})),
      ],
      arch: 'x86_64',
      kernelVersion: '6.12.118+deb12-cloud-amd64',
    })
  })

  it('qemu with a file the manifest names missing: BUILD_BLOBS_INCOMPLETE; no manifest: BUILD_BLOBS_MISSING', async () => {
    await expectCode(resolveBlobs({flag: 'qemu', projectDir: tmp.dir, env: {NLE_QEMU_CACHE: qemuCache('no-nsm', 'nsmKo')}}), 'BUILD_BLOBS_INCOMPLETE')
    await expectCode(resolveBlobs({flag: 'qemu', projectDir: tmp.dir, env: {NLE_QEMU_CACHE: join(tmp.dir, 'none')}}), 'BUILD_BLOBS_MISSING')
    // A cache from before the vsock modules: the image's socat could not bridge; rebuild the cache.
    await expectCode(resolveBlobs({flag: 'qemu', projectDir: tmp.dir, env: {NLE_QEMU_CACHE: qemuCache('no-vsock', undefined, {vsock: false})}}), 'BUILD_BLOBS_INCOMPLETE')
  })

  it('the flag wins over build.blobs, which wins over NITRO_CLI_BLOBS; a relative build.blobs is the project\'s; placeholder is no blobs', async () => {
    const project = join(tmp.dir, 'project')
    const blobs = join(project, 'kernel')
    mkdirSync(blobs, {recursive: true})
    for (const f of ['bzImage', 'cmdline', 'init', 'nsm.ko']) writeFileSync(join(blobs, f), f)
    const env = {NITRO_CLI_BLOBS: join(tmp.dir, 'absent'), NLE_QEMU_CACHE: join(tmp.dir, 'none')}
    expect(await resolveBlobs({config: 'kernel', projectDir: project, env})).toMatchObject({kind: 'folder', kernel: join(blobs, 'bzImage'), cmdlineFile: join(blobs, 'cmdline'), extraBootstrap: []})
    expect(await resolveBlobs({flag: 'placeholder', config: 'kernel', projectDir: project, env})).toBeUndefined()
    await expectCode(resolveBlobs({flag: 'qemu', config: 'kernel', projectDir: project, env}), 'BUILD_BLOBS_MISSING')
    await expectCode(resolveBlobs({projectDir: project, env}), 'BUILD_BLOBS_MISSING')
  })
})
