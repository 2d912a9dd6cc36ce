import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {type TestSigner, makeSigner} from '../../test-support/eif.js'
import {tempDir} from '../../test-support/tmp.js'
import {readLockfile} from '../lockfile.js'
import {buildEifFromFiles} from './build.js'
import {cpioBuffer, directoryEntries} from './cpio.js'
import {lockfileFromEif} from './lock.js'
import {pcrOf} from './pcr.js'
import {readEif} from './reader.js'

const tmp = tempDir('nle-eifbuild-')
let signer: TestSigner
const d = (p: string): string => join(tmp.dir, p)

beforeAll(async () => {
  signer = await makeSigner('P-384')
  writeFileSync(d('bzImage'), Buffer.alloc(5000, 0x4b))
  writeFileSync(d('cmdline'), 'reboot=k panic=30 console=ttyS0\n')
  writeFileSync(d('init'), 'INIT-BINARY')
  writeFileSync(d('nsm.ko'), 'NSM-MODULE')
  mkdirSync(d('app/bin'), {recursive: true})
  writeFileSync(d('app/bin/server'), 'server')
  writeFileSync(d('cert.pem'), signer.certificatePem)
  writeFileSync(d('key.pem'), signer.privateKeyPem)
  writeFileSync(d('meta.json'), '{"z": 1, "a": {"y": 2, "b": 3}}')
})
afterAll(() => tmp.cleanup())

describe('buildEifFromFiles (nle eif build)', () => {
  it('builds the bootstrap and customer layouts, trims the cmdline file, writes a lockfile; rebuilds are identical', async () => {
    const opts = {
      kernel: d('bzImage'),
      cmdlineFile: d('cmdline'),
      init: d('init'),
      nsmKo: d('nsm.ko'),
      rootfs: d('app'),
      cmd: ['/bin/server'],
      env: ['PORT=8000'],
      signingCertificate: d('cert.pem'),
      privateKey: d('key.pem'),
      metadataFile: d('meta.json'),
      imageName: 'app', // the default is the output file name, which differs between a.eif and b.eif
      toolVersion: '0.1.0',
      inputDigests: {modelManifest: 'sha256:' + 'ab'.repeat(32)},
    }
    mkdirSync(d('out'), {recursive: true})
    await buildEifFromFiles({...opts, output: d('out/a.eif'), lockfile: d('out/a.lock.json')})
    const b = await buildEifFromFiles({...opts, output: d('out/b.eif'), lockfile: d('out/b.lock.json')})
    const bytesA = readFileSync(d('out/a.eif'))
    expect(readFileSync(d('out/b.eif')).equals(bytesA)).toBe(true)

    const info = await readEif(d('out/a.eif'), {fileDigest: true})
    expect(info.cmdline.toString()).toBe('reboot=k panic=30 console=ttyS0')
    expect(info.metadata?.CustomMetadata).toEqual({a: {b: 3, y: 2}, z: 1})
    expect(info.signature?.check.signatureValid).toBe(true)
    // PCR1 = kernel ‖ cmdline ‖ the bootstrap cpio built from init and nsm.ko.
    const bootstrap = await cpioBuffer([
      {name: 'dev', type: 'dir'},
      {name: 'init', type: 'file', mode: 0o755, data: Buffer.from('INIT-BINARY')},
      {name: 'nsm.ko', type: 'file', mode: 0o755, data: Buffer.from('NSM-MODULE')},
    ])
    expect(info.measurements.PCR1).toBe(pcrOf(Buffer.concat([Buffer.alloc(5000, 0x4b), Buffer.from('reboot=k panic=30 console=ttyS0'), bootstrap])))
    expect((await directoryEntries(d('app'), 'rootfs/')).map((e) => e.name)).toEqual(['rootfs/bin', 'rootfs/bin/server'])

    const lock = await readLockfile(d('out/a.lock.json'))
    expect(lock.measurements).toEqual({PCR0: info.measurements.PCR0, PCR1: info.measurements.PCR1, PCR2: info.measurements.PCR2, PCR8: info.measurements.PCR8})
    expect(lock.eif).toEqual({path: 'a.eif', sha384: info.fileSha384, size: bytesA.length, version: 4, signed: true})
    expect(lock.builder).toEqual({name: 'nle', version: '0.1.0'})
    expect(Object.keys(lock.inputs).sort()).toEqual(['cmdline', 'kernel', 'modelManifest', 'ramdisk0', 'ramdisk1'])
    expect(lock.inputs.kernel).toMatch(/^sha384:[0-9a-f]{96}$/)
    expect(b.lockfile?.content.measurements).toEqual(lock.measurements)
    // The lockfile bytes of two identical builds differ only in the EIF path.
    expect(readFileSync(d('out/b.lock.json'), 'utf8')).toBe(readFileSync(d('out/a.lock.json'), 'utf8').replace('"a.eif"', '"b.eif"'))
    // Recording the same EIF read back gives the same lockfile.
    expect(lockfileFromEif({...info, fileSha384: info.fileSha384!}, {lockfilePath: d('out/a.lock.json'), eifPath: d('out/a.eif'), builder: {name: 'nle', version: '0.1.0'}, inputs: lock.inputs})).toEqual(lock)
  })

  it('packs --ramdisk directories and passes files through', async () => {
    mkdirSync(d('rd'), {recursive: true})
    writeFileSync(d('rd/f'), 'file')
    writeFileSync(d('raw.img'), 'RAW')
    mkdirSync(d('out2'), {recursive: true})
    const r = await buildEifFromFiles({kernel: d('bzImage'), cmdline: 'c', ramdisks: [d('raw.img'), d('rd')], output: d('out2/x.eif'), toolVersion: '1'})
    expect(r.result.measurements.PCR1).toBe(pcrOf(Buffer.concat([Buffer.alloc(5000, 0x4b), Buffer.from('c'), Buffer.from('RAW')])))
    expect(r.result.measurements.PCR2).toBe(pcrOf(await cpioBuffer(await directoryEntries(d('rd')))))
  })

  it('rejects inconsistent options with EIF_BAD_INPUT / EIF_INPUT_NOT_FOUND', async () => {
    const base = {kernel: d('bzImage'), ramdisks: [d('raw.img')], output: d('out2/y.eif'), toolVersion: '1'}
    await expect(buildEifFromFiles({...base})).rejects.toMatchObject({code: 'EIF_BAD_INPUT'})
    await expect(buildEifFromFiles({...base, cmdline: 'c', init: d('init')})).rejects.toMatchObject({code: 'EIF_BAD_INPUT'})
    await expect(buildEifFromFiles({...base, cmdline: 'c', cmd: ['x']})).rejects.toMatchObject({code: 'EIF_BAD_INPUT'})
    await expect(buildEifFromFiles({...base, cmdline: 'c', signingCertificate: d('cert.pem')})).rejects.toMatchObject({code: 'EIF_BAD_INPUT'})
    await expect(buildEifFromFiles({...base, cmdline: 'c', kernel: d('nope')})).rejects.toMatchObject({code: 'EIF_INPUT_NOT_FOUND'})
    await expect(buildEifFromFiles({...base, cmdline: 'c', ramdisks: [d('nope')]})).rejects.toMatchObject({code: 'EIF_INPUT_NOT_FOUND'})
    writeFileSync(d('big.json'), JSON.stringify({x: 'y'.repeat(5000)}))
    await expect(buildEifFromFiles({...base, cmdline: 'c', metadataFile: d('big.json')})).rejects.toMatchObject({code: 'EIF_BAD_INPUT'})
    writeFileSync(d('bad.json'), '{')
    await expect(buildEifFromFiles({...base, cmdline: 'c', metadataFile: d('bad.json')})).rejects.toMatchObject({code: 'EIF_BAD_INPUT'})
  })
})
