import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {NleError} from '../../lib/errors.js'
import {table} from '../../cli/render.js'
import {buildEifFromFiles} from '../../lib/eif/build.js'
import {eifError} from '../../lib/eif/errors.js'
import type {Measurements} from '../../lib/eif/reader.js'

export interface EifBuildOutput {
  Measurements: Measurements
  Eif: {path: string; size: number; sha384: string; version: number; signed: boolean}
  Lockfile?: string
}

export default class EifBuild extends BaseCommand<typeof EifBuild> {
  static override summary = 'Build an enclave image (EIF) from a kernel, a cmdline and ramdisks, without docker or nitro-cli.'
  static override description = `Writes a version-4 EIF laid out as nitro-cli writes it (kernel, cmdline, metadata, ramdisks, signature) and prints its measurements. The output is deterministic: the same inputs give the same bytes (BuildTime is fixed unless --build-time is given; signatures use deterministic ECDSA).

Ramdisks, in order: the bootstrap ramdisk built from --init and --nsm-ko (dev/, init, nsm.ko), then each --ramdisk (a file is used as is, a directory is packed as a deterministic cpio), then the customer ramdisk built from --rootfs, --cmd and --env (rootfs/…, cmd, env). PCR1 covers the kernel, cmdline and first ramdisk; PCR2 the rest.

With --signing-certificate and --private-key (EC P-256 or P-384, PEM) the image is signed and gets a PCR8. With --lockfile the measurements lockfile is written too (see docs/lockfile.md).`
  static override examples = [
    '<%= config.bin %> eif build --kernel bzImage --cmdline-file cmdline --init init --nsm-ko nsm.ko --rootfs ./app --cmd /app/server --output enclave.eif',
    '<%= config.bin %> eif build --kernel bzImage --cmdline "console=ttyS0" --ramdisk boot.cpio --ramdisk app/ --output enclave.eif --lockfile nle.lock.json',
    '<%= config.bin %> eif build --kernel bzImage --cmdline "console=ttyS0" --ramdisk rd.cpio --output e.eif --signing-certificate cert.pem --private-key key.pem --json',
  ]
  static override flags = {
    kernel: Flags.file({description: 'Kernel image (bzImage for x86_64, Image for aarch64).', required: true}),
    cmdline: Flags.string({description: 'Kernel command line, stored exactly as given. One of --cmdline and --cmdline-file is required.'}),
    'cmdline-file': Flags.string({description: 'File holding the kernel command line (trimmed, like nitro-cli\'s blobs/<arch>/cmdline).'}),
    ramdisk: Flags.string({description: 'A ramdisk file, or a directory to pack as cpio. Repeatable; order matters.', multiple: true}),
    init: Flags.string({description: 'init binary for the bootstrap ramdisk (first); needs --nsm-ko.'}),
    'nsm-ko': Flags.string({description: 'nsm.ko for the bootstrap ramdisk (first); needs --init.'}),
    rootfs: Flags.string({description: 'Application root filesystem for the customer ramdisk (last), stored under rootfs/.'}),
    cmd: Flags.string({description: 'argv element for the customer ramdisk\'s cmd file (needs --rootfs). Repeatable.', multiple: true}),
    env: Flags.string({description: 'K=V line for the customer ramdisk\'s env file (needs --rootfs). Repeatable.', multiple: true}),
    output: Flags.string({char: 'o', description: 'Where to write the EIF.', required: true}),
    'signing-certificate': Flags.string({description: 'PEM signing certificate (EC P-256/P-384); needs --private-key.'}),
    'private-key': Flags.string({description: 'PEM EC private key (unencrypted) of the signing certificate.'}),
    metadata: Flags.string({description: 'JSON file stored as CustomMetadata (at most 4096 bytes).'}),
    name: Flags.string({description: 'ImageName in the metadata (default: the output file name).'}),
    'image-version': Flags.string({description: 'ImageVersion in the metadata.', default: '0.0.0'}),
    'build-time': Flags.string({description: 'BuildTime in the metadata (default fixed, for reproducible images).'}),
    arch: Flags.string({description: 'Target architecture (header flag).', options: ['x86_64', 'aarch64'], default: 'x86_64'}),
    lockfile: Flags.string({description: 'Also write the measurements lockfile here (e.g. nle.lock.json).'}),
    'input-digest': Flags.string({description: 'Extra lockfile input digest NAME=sha256:HEX (e.g. modelManifest=…), with --lockfile. Repeatable.', multiple: true}),
  }

  async run(): Promise<EifBuildOutput> {
    const f = this.flags
    const usage = (message: string): NleError => new NleError('USAGE', message, {hint: 'Run `nle eif build --help` for usage.'})
    if ((f.cmdline === undefined) === (f['cmdline-file'] === undefined)) throw usage('Give exactly one of --cmdline and --cmdline-file.')
    if ((f.init === undefined) !== (f['nsm-ko'] === undefined)) throw usage('--init and --nsm-ko go together (the bootstrap ramdisk).')
    if ((f['signing-certificate'] === undefined) !== (f['private-key'] === undefined)) throw usage('--signing-certificate and --private-key go together.')
    if (f.rootfs === undefined && (f.cmd !== undefined || f.env !== undefined)) throw usage('--cmd and --env need --rootfs (the customer ramdisk).')
    if (f.lockfile === undefined && f['input-digest'] !== undefined) throw usage('--input-digest needs --lockfile.')
    if (f.init === undefined && f.rootfs === undefined && (f.ramdisk ?? []).length === 0) throw usage('Give at least one ramdisk: --ramdisk, --init/--nsm-ko or --rootfs.')
    const inputDigests: Record<string, string> = {}
    for (const d of f['input-digest'] ?? []) {
      const i = d.indexOf('=')
      if (i <= 0) throw eifError('EIF_BAD_INPUT', `--input-digest must be NAME=DIGEST, got ${JSON.stringify(d)}.`)
      inputDigests[d.slice(0, i)] = d.slice(i + 1)
    }
    const built = await buildEifFromFiles({
      kernel: f.kernel,
      ...(f.cmdline !== undefined ? {cmdline: f.cmdline} : {cmdlineFile: f['cmdline-file']!}),
      ramdisks: f.ramdisk ?? [],
      ...(f.init !== undefined ? {init: f.init, nsmKo: f['nsm-ko']!} : {}),
      ...(f.rootfs !== undefined ? {rootfs: f.rootfs, cmd: f.cmd ?? [], env: f.env ?? []} : {}),
      output: f.output,
      ...(f['signing-certificate'] !== undefined ? {signingCertificate: f['signing-certificate'], privateKey: f['private-key']!} : {}),
      ...(f.metadata !== undefined ? {metadataFile: f.metadata} : {}),
      ...(f.name !== undefined ? {imageName: f.name} : {}),
      imageVersion: f['image-version'],
      ...(f['build-time'] !== undefined ? {buildTime: f['build-time']} : {}),
      arch: f.arch as 'x86_64' | 'aarch64',
      toolVersion: this.config.version,
      ...(f.lockfile !== undefined ? {lockfile: f.lockfile, inputDigests} : {}),
    })
    const r = built.result
    const out: EifBuildOutput = {
      Measurements: r.measurements,
      Eif: {path: built.output, size: r.size, sha384: r.sha384, version: r.version, signed: r.signed},
      ...(built.lockfile ? {Lockfile: built.lockfile.path} : {}),
    }
    if (!this.jsonEnabled()) {
      const m = r.measurements
      this.log(`Wrote ${built.output} (${r.size} bytes, EIF v${r.version}${r.signed ? ', signed' : ''})`)
      this.log(table([['PCR0', m.PCR0], ['PCR1', m.PCR1], ['PCR2', m.PCR2], ...(m.PCR8 ? [['PCR8', m.PCR8]] : [])]).trimEnd())
      if (built.lockfile) this.log(`Lockfile: ${built.lockfile.path}`)
    }
    return out
  }
}
