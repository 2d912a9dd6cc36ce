import {chmodSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {expectCode} from '../../test-support/rejection.js'
import {tempDir} from '../../test-support/tmp.js'
import {elfFiles, sharedLibraries, systemInputs} from './rootfs.js'

const tmp = tempDir('nle-rootfs-')
afterAll(() => tmp.cleanup())

/** A fake `ldd` on PATH that prints `output` and exits with `code`. */
function fakeLdd(name: string, output: string, code = 0): NodeJS.ProcessEnv {
  const bin = join(tmp.dir, name)
  mkdirSync(bin, {recursive: true})
  writeFileSync(join(bin, 'ldd'), `#!/bin/sh\ncat <<'OUT'\n${output}\nOUT\nexit ${code}\n`)
  chmodSync(join(bin, 'ldd'), 0o755)
  return {PATH: `${bin}:/usr/bin:/bin`}
}

describe('the host files of the bootable image', () => {
  it('sharedLibraries: the interpreter and the resolved libraries, sorted, without the image\'s own (under the rootfs)', async () => {
    const env = fakeLdd('ok', ['\tlinux-vdso.so.1 (0x00007ffd)', '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x1)', '\tlibonnxruntime.so.1 => /stage/app/nle/x/libonnxruntime.so.1 (0x2)', '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x3)', '\t/lib64/ld-linux-x86-64.so.2 (0x4)'].join('\n'))
    expect(await sharedLibraries({env}, ['/stage/app/x.node'], '/stage')).toEqual(['/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-gnu/libstdc++.so.6', '/lib64/ld-linux-x86-64.so.2'])
  })

  it('a library the host lacks fails the build (BUILD_SYSTEM_FILE_MISSING), and so does ldd failing; a static binary needs none', async () => {
    await expectCode(sharedLibraries({env: fakeLdd('missing', '\tlibwrap.so.0 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)')}, ['/usr/bin/socat']), 'BUILD_SYSTEM_FILE_MISSING')
    await expectCode(sharedLibraries({env: fakeLdd('broken', 'error while loading shared libraries', 1)}, ['/x']), 'BUILD_SYSTEM_FILE_MISSING')
    expect(await sharedLibraries({env: fakeLdd('static', '\tnot a dynamic executable', 1)}, ['/x'])).toEqual([])
  })

  it('elfFiles: native modules and shared objects by their ELF magic, musl builds left out', async () => {
    const nm = join(tmp.dir, 'nm')
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(12)])
    for (const f of ['koffi/build/koffi/linux_x64/koffi.node', 'koffi/build/koffi/musl_x64/koffi.node', 'ort/bin/libonnxruntime.so.1', 'cbor/node.abi137.musl.node', 'cbor/node.abi137.glibc.node']) {
      mkdirSync(join(nm, f, '..'), {recursive: true})
      writeFileSync(join(nm, f), elf)
    }
    mkdirSync(join(nm, 'text'), {recursive: true})
    writeFileSync(join(nm, 'text', 'fake.node'), 'not an ELF file')
    expect((await elfFiles(nm)).map((p) => p.slice(nm.length + 1))).toEqual(['cbor/node.abi137.glibc.node', 'koffi/build/koffi/linux_x64/koffi.node', 'ort/bin/libonnxruntime.so.1'])
  })

  it('systemInputs: one lockfile input per file, named by its path in the image', () => {
    expect(systemInputs({'bin/sh': 'ab'.repeat(32), 'lib/x86_64-linux-gnu/libstdc++.so.6': 'cd'.repeat(32)})).toEqual({
      'system/bin/sh': `sha256:${'ab'.repeat(32)}`,
      'system/lib/x86_64-linux-gnu/libstdc++.so.6': `sha256:${'cd'.repeat(32)}`,
    })
  })
})
