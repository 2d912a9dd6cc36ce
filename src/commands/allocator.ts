import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {table} from '../cli/render.js'
import {DEFAULT_CONFIG_FILE, loadConfig} from '../lib/config/load.js'
import {DEFAULT_ALLOCATOR_YAML} from '../lib/host/allocator-yaml.js'
import {layoutRows} from '../lib/host/memory.js'
import {DEFAULT_HOST_PATHS} from '../lib/host/procfs.js'
import {defaultHostContext} from '../lib/host/exec.js'
import {type AllocatorPlan, type ApplyResult, applyAllocator, planAllocator} from '../lib/host/resources.js'

export type AllocatorOutput = Omit<AllocatorPlan, 'text'> & {applied?: ApplyResult}

export default class Allocator extends BaseCommand<typeof Allocator> {
  static override summary = 'Size the Nitro Enclaves allocator for this project and show (or --apply) the allocator.yaml change.'
  static override description = `Computes memory_mib (at least 4x the EIF size, nitro-cli's E26 rule, plus the runtime's resident need: the model and its KV cache, plus runtime overhead; at least 64 MiB; rounded up to 2 MiB hugepages) and cpu_count (enclave.cpuCount rounded up to full cores; CPU 0's core is never used), shows the same figures for the model embedded in the EIF and sealed (model.sealed: the EIF carries the runtime and the sealed manifest, the enclave holds the decrypted model once) — the built EIF's layout read, the other's EIF derived from it by swapping the model's ramdisk entries for the sealed manifest's (\`memory.layouts\` in --json) —, checks that this host has that much memory and CPU (/proc/meminfo, /sys/devices/system/cpu), and shows the diff of /etc/nitro_enclaves/allocator.yaml. Comments and key order in the file are kept.

--apply writes the file atomically (the old one is kept as allocator.yaml.<time>.bak) and restarts nitro-enclaves-allocator.service. It refuses while any enclave runs.`
  static override examples = ['<%= config.bin %> allocator', 'sudo <%= config.bin %> allocator --apply', '<%= config.bin %> allocator --file ./allocator.yaml --json']
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    file: Flags.string({description: 'The allocator config to update.', default: DEFAULT_ALLOCATOR_YAML}),
    eif: Flags.file({description: 'Size for this EIF instead of build.eifPath.'}),
    apply: Flags.boolean({description: 'Write the file and restart nitro-enclaves-allocator.service.', default: false}),
    meminfo: Flags.string({description: 'meminfo file to read (tests).', default: DEFAULT_HOST_PATHS.meminfo, hidden: true}),
    'cpu-dir': Flags.string({description: 'sysfs cpu folder to read (tests).', default: DEFAULT_HOST_PATHS.cpuDir, hidden: true}),
  }

  async run(): Promise<AllocatorOutput> {
    const loaded = await loadConfig(this.flags.config)
    const plan = await planAllocator({
      loaded,
      file: this.flags.file,
      eifPath: this.flags.eif,
      hostPaths: {meminfo: this.flags.meminfo, cpuDir: this.flags['cpu-dir']},
    })
    const applied = this.flags.apply ? await applyAllocator(plan, defaultHostContext()) : undefined
    if (!this.jsonEnabled()) {
      const m = plan.memory
      this.log(
        table(
          [
            ['EIF', `${plan.eif.path} (${plan.eif.bytes} bytes${plan.eif.bootable === false ? `; NOT BOOTABLE: ${plan.eif.reason}` : ''})`],
            ['4x EIF (E26 rule)', `${m.eifRuleMiB} MiB`],
            ['runtime (model + KV cache + overhead)', m.runtime ? `${m.runtimeMiB} MiB` : 'unknown (no saved model found)'],
            ['memory_mib', `${plan.proposed.memory_mib} MiB (${m.source}; host can reserve ${plan.host.capacityMiB} of ${plan.host.memTotalMiB} MiB)`],
            ['cpu_count', `${plan.proposed.cpu_count} (${plan.cpus.threadsPerCore} threads/core; ${plan.cpus.available} CPUs outside CPU 0's core)`],
            ...(m.layouts ? layoutRows(m.layouts) : []),
          ],
          ['', 'value'],
        ),
      )
      if (!plan.changed) this.log(`${plan.file} already has these values.`)
      else {
        this.log(`${applied?.written ? 'Changed' : 'Proposed change to'} ${plan.file}:\n`)
        this.log(plan.diff)
        if (applied?.written) this.log(`Backup: ${applied.backup ?? '(new file)'}; nitro-enclaves-allocator.service restarted.`)
        else this.log('Run with --apply (as root) to write it and restart nitro-enclaves-allocator.service.')
      }
    }
    const {text: _text, ...rest} = plan
    return {...rest, ...(applied ? {applied} : {})}
  }
}
