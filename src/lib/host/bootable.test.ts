import {describe, expect, it} from 'vitest'

import type {EifInfo} from '../eif/reader.js'
import {bootability, nitroBootability} from './bootable.js'

const withNle = (nle: unknown): Pick<EifInfo, 'metadata'> => ({metadata: {CustomMetadata: {nle}}}) as never

describe('bootability from the EIF metadata', () => {
  it('a placeholder kernel boots nowhere; the QEMU kernel boots (in QEMU) but not on a Nitro host; nitro-cli blobs boot on Nitro', () => {
    const placeholder = withNle({bootable: false, kernel: 'placeholder', reason: 'no blobs'})
    expect(bootability(placeholder)).toEqual({bootable: false, reason: 'no blobs'})
    expect(nitroBootability(placeholder)).toEqual({bootable: false, reason: 'no blobs'})
    const qemu = withNle({bootable: true, kernel: 'qemu'})
    expect(bootability(qemu)).toEqual({bootable: true})
    expect(nitroBootability(qemu)).toMatchObject({bootable: false, reason: expect.stringContaining('QEMU') as string})
    expect(nitroBootability(withNle({bootable: true, kernel: 'blobs'}))).toEqual({bootable: true})
    // An EIF nle did not build (nitro-cli's, no nle block) is taken as bootable.
    expect(nitroBootability({metadata: {CustomMetadata: null}} as never)).toEqual({bootable: true})
  })
})
