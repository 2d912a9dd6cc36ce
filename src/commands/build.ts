import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {stageLines, wantsStageLines} from '../cli/progress.js'
import {table} from '../cli/render.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {type BuildReport, buildProject} from '../lib/host/build.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {layoutRows} from '../lib/host/memory.js'

export default class Build extends BaseCommand<typeof Build> {
  static override summary = 'Build the enclave image (EIF), check its measurements and write the lockfile.'
  static override description = `Assembles the build context in .nle/build-context from the project's enclave/ folder, nle's runtime bundle and the saved model (model.path), then:

  docker (default): docker build (tag build.imageTag, SOURCE_DATE_EPOCH passed), then nitro-cli build-enclave (signed when build.signing is set);
  native: no docker; assembles the root filesystem the Dockerfile describes (the runtime package installed from its lockfile and pruned, the pinned Node 24, the model, nle.runtime.json, start.sh, and sh, socat and the shared libraries from this host, each file's SHA-256 in the lockfile) and packs it (or --rootfs, e.g. unpacked \`docker export\` output) with nle's deterministic cpio and EIF writers, with the kernel, init and nsm.ko of --blobs: nitro-cli's blobs (nitro, a folder, NITRO_CLI_BLOBS) for a Nitro host, qemu for the local QEMU kernel. Without blobs (or --blobs placeholder) it uses a placeholder kernel and packs only /app and Node: the EIF is measurable but NOT BOOTABLE, and says so in its metadata (what \`nle dev\` builds).

Each stage is shown as it runs on a terminal (stderr); --json reports them timed in \`stages\`, and the commands to run next in \`nextSteps\` (\`nle dev\` for an EIF that cannot boot, \`nle allocator\` and \`nle run\` for one that can). The model is staged only while the builder reads it: .nle/ keeps no copy of it afterwards.

Either way nle re-reads the EIF and recomputes PCR0/1/2 (and PCR8) itself; if they differ from what the builder reported, the build fails and no lockfile is written. Prints the PCRs, the EIF size and the enclave memory it needs (at least 4x the EIF plus the model and its KV cache), for this EIF and for the other model layout (embedded or sealed, model.sealed; \`memory.layouts\` in --json).`
  static override examples = [
    '<%= config.bin %> build',
    '<%= config.bin %> build --builder native --json',
    '<%= config.bin %> build --builder native --blobs qemu',
    'NITRO_CLI_BLOBS=/usr/share/nitro_enclaves/blobs <%= config.bin %> build --builder native --rootfs ./rootfs',
  ]
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    builder: Flags.string({description: 'Override build.builder.', options: ['docker', 'native']}),
    blobs: Flags.string({
      description: 'native: the kernel, init and nsm.ko: nitro (/usr/share/nitro_enclaves/blobs), qemu (the local QEMU kernel, scripts/qemu-nitro.sh), placeholder (not bootable), or a folder with bzImage (or Image), cmdline, init, nsm.ko. Default: build.blobs, else NITRO_CLI_BLOBS, else nitro if present, else placeholder.',
    }),
    rootfs: Flags.directory({description: 'native: root filesystem folder to pack instead of the runtime bundle and model.'}),
    'source-date-epoch': Flags.integer({description: 'SOURCE_DATE_EPOCH for docker build (default: the environment variable, else 0).', min: 0}),
  }

  async run(): Promise<BuildReport> {
    const loaded = await loadConfig(this.flags.config)
    // One line per stage on a terminal (stderr); --json has them timed in its result (stages).
    const lines = wantsStageLines(this.jsonEnabled()) ? stageLines() : undefined
    const result = await buildProject({
      loaded,
      ctx: defaultHostContext(),
      builder: this.flags.builder as 'docker' | 'native' | undefined,
      blobs: this.flags.blobs,
      rootfs: this.flags.rootfs,
      sourceDateEpoch: this.flags['source-date-epoch'],
      ...(lines ? {onStep: (m: string) => lines.start(m)} : {}),
    }).then(
      (r) => (lines?.end(true), r),
      (error: unknown) => {
        lines?.end(false)
        throw error
      },
    )
    if (!this.jsonEnabled()) {
      for (const w of result.warnings) this.logToStderr(`WARNING: ${w}`)
      this.log(`Built ${result.eif.path} (${result.builder} builder${result.eif.bootable ? '' : ', NOT BOOTABLE'})`)
      this.log(table(Object.entries(result.measurements).map(([k, v]) => [k, v])))
      const m = result.memory
      this.log(`EIF size:        ${result.eif.size} bytes (${(result.eif.size / 1048576).toFixed(1)} MiB)`)
      if (result.blobs) this.log(`Kernel:          ${result.blobs.kind}${result.blobs.kind === 'placeholder' ? '' : ` (${result.blobs.source})`}`)
      this.log(`Enclave memory:  ${m.memoryMiB} MiB (${m.source}; 4x EIF = ${m.eifRuleMiB} MiB${m.runtimeMiB ? `, runtime = ${m.runtimeMiB} MiB` : ''})`)
      if (m.layouts) for (const [label, value] of layoutRows(m.layouts)) this.log(`  ${`${label}:`.padEnd(30)} ${value}`)
      if (result.runtime) this.log(`Enclave runtime: ${result.runtime.packages} packages, ${result.runtime.files} files, ${(result.runtime.bytes / 1e6).toFixed(1)} MB (docs/runtime.md)`)
      this.log(`PCRs checked:    nle's reader agrees with ${result.crossCheck.against}`)
      this.log(`Lockfile:        ${result.lockfile}`)
      this.log('\nNext steps:')
      for (const step of result.nextSteps) this.log(`  ${step}`)
    }
    return result
  }
}
