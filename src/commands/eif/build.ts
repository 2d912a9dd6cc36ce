import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {table} from '../../cli/render.js'
import {type EifBuildOutput, buildEifFromFiles, eifBuildOutput, parseInputDigests} from '../../lib/eif/build.js'

export type {EifBuildOutput} from '../../lib/eif/build.js'

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
  // Which flags go together is oclif's to check: a refusal is a usage error (exit 2) before anything is read.
  static override flags = {
    kernel: Flags.file({description: 'Kernel image (bzImage for x86_64, Image for aarch64).', required: true}),
    cmdline: Flags.string({description: 'Kernel command line, stored exactly as given. One of --cmdline and --cmdline-file is required.', exactlyOne: ['cmdline', 'cmdline-file']}),
    'cmdline-file': Flags.string({description: 'File holding the kernel command line (trimmed, like nitro-cli\'s blobs/<arch>/cmdline).', exactlyOne: ['cmdline', 'cmdline-file']}),
    ramdisk: Flags.string({description: 'A ramdisk file, or a directory to pack as cpio. Repeatable; order matters.', multiple: true, atLeastOne: ['ramdisk', 'init', 'rootfs']}),
    init: Flags.string({description: 'init binary for the bootstrap ramdisk (first); needs --nsm-ko.', dependsOn: ['nsm-ko']}),
    'nsm-ko': Flags.string({description: 'nsm.ko for the bootstrap ramdisk (first); needs --init.', dependsOn: ['init']}),
    rootfs: Flags.string({description: 'Application root filesystem for the customer ramdisk (last), stored under rootfs/.'}),
    cmd: Flags.string({description: 'argv element for the customer ramdisk\'s cmd file (needs --rootfs). Repeatable.', multiple: true, dependsOn: ['rootfs']}),
    env: Flags.string({description: 'K=V line for the customer ramdisk\'s env file (needs --rootfs). Repeatable.', multiple: true, dependsOn: ['rootfs']}),
    output: Flags.string({char: 'o', description: 'Where to write the EIF.', required: true}),
    'signing-certificate': Flags.string({description: 'PEM signing certificate (EC P-256/P-384); needs --private-key.', dependsOn: ['private-key']}),
    'private-key': Flags.string({description: 'PEM EC private key (unencrypted) of the signing certificate.', dependsOn: ['signing-certificate']}),
    metadata: Flags.string({description: 'JSON file stored as CustomMetadata (at most 4096 bytes).'}),
    name: Flags.string({description: 'ImageName in the metadata (default: the output file name).'}),
    'image-version': Flags.string({description: 'ImageVersion in the metadata.', default: '0.0.0'}),
    'build-time': Flags.string({description: 'BuildTime in the metadata (default fixed, for reproducible images).'}),
    arch: Flags.option({description: 'Target architecture (header flag).', options: ['x86_64', 'aarch64'] as const, default: 'x86_64' as const})(),
    lockfile: Flags.string({description: 'Also write the measurements lockfile here (e.g. nle.lock.json).'}),
    'input-digest': Flags.string({description: 'Extra lockfile input digest NAME=sha256:HEX (e.g. modelManifest=…), with --lockfile. Repeatable.', multiple: true, dependsOn: ['lockfile']}),
  }

  async run(): Promise<EifBuildOutput> {
    const f = this.flags
    const out = eifBuildOutput(
      await buildEifFromFiles({
        kernel: f.kernel, cmdline: f.cmdline, cmdlineFile: f['cmdline-file'], ramdisks: f.ramdisk ?? [],
        init: f.init, nsmKo: f['nsm-ko'], rootfs: f.rootfs, cmd: f.cmd, env: f.env, output: f.output,
        signingCertificate: f['signing-certificate'], privateKey: f['private-key'], metadataFile: f.metadata,
        imageName: f.name, imageVersion: f['image-version'], buildTime: f['build-time'], arch: f.arch, toolVersion: this.config.version,
        lockfile: f.lockfile, inputDigests: parseInputDigests(f['input-digest'] ?? []),
      }),
    )
    if (!this.jsonEnabled()) {
      const m = out.Measurements
      this.log(`Wrote ${out.Eif.path} (${out.Eif.size} bytes, EIF v${out.Eif.version}${out.Eif.signed ? ', signed' : ''})`)
      this.log(table([['PCR0', m.PCR0], ['PCR1', m.PCR1], ['PCR2', m.PCR2], ...(m.PCR8 ? [['PCR8', m.PCR8]] : [])]).trimEnd())
      if (out.Lockfile) this.log(`Lockfile: ${out.Lockfile}`)
    }
    return out
  }
}
