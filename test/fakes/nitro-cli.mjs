// Fake nitro-cli. Output shapes: aws-nitro-enclaves-cli v1.5.0 src/common/json_output.rs
// (EnclaveBuildInfo, EnclaveRunInfo, EnclaveDescribeInfo, EnclaveTerminateInfo), pretty-printed
// by serde_json on stdout; progress lines on stderr as in src/lib.rs and
// src/enclave_proc/resource_manager.rs; errors as `[ Exx ] …` blocks (src/common/document_errors.rs)
// with the exit status equal to the E-number. A run-enclave failure inside the enclave process
// prints its own block first and E39 last, exiting 39 (issues #232, #644, #516).
//
// Knobs (environment): NLE_FAKE_STATE (state folder), NLE_FAKE_LOG (argv log),
//   FAKE_NITRO_FAIL=<subcommand>:<Exx>  fail that subcommand with that error
//   FAKE_NITRO_LIE=1                    build-enclave prints a PCR0 that is not the EIF's
//   FAKE_NITRO_POOL_MIB / FAKE_NITRO_CPU_POOL  the allocator's reservation (E27 / E22 when exceeded)
//   FAKE_NITRO_EXTRA_MIB                hugepage rounding: MemoryMiB = requested + this (issue #602)
// build-enclave does not sign: with --signing-certificate it records the flags, prints no PCR8.
import {existsSync, statSync} from 'node:fs'
import {basename} from 'node:path'

import {errorBlock, flags, measureEif, pretty, readState, record, writeFakeEif, writeState} from './lib.mjs'

record('nitro-cli')
const [cmd, ...rest] = process.argv.slice(2)
const f = flags(rest)

const TEXT = {
  E11: 'Socket error. This is used as an error for catching any other socket operation errors not covered by previous custom errors.',
  E19: "File operation failure. Such error appears when the system fails to perform the requested file operations, such as opening the EIF file when launching an enclave, or seeking to a specific offset in the EIF file, or writing to the log file.\nFile: '/dev/nitro_enclaves', failing operation: 'Open'.",
  E35: 'EIF file parsing error. Such errors appear when attempting to fill a memory region with a section of the EIF file, but reading the entire section fails. This might indicate that the required hugepages are not available.',
  E36: 'Enclave boot failure. Such error appears when attempting to receive the `ready` signal from a freshly booted enclave. It arises in several contexts, for instance, when the enclave is booted from an invalid EIF file and the enclave process immediately exits, failing to submit the `ready` signal. In this case, the error backtrace provides detailed information on what specifically failed during the enclave boot process.',
  E39: 'Enclave process connection failure. Such error appears when the enclave manager fails to connect to at least one enclave process for retrieving the description information.',
  E44: "Enclave console connection failure. Such error appears when the Nitro CLI process fails to establish a connection to a running enclave's console.",
  E49: 'Docker image build error. Such error appears when trying to build and EIF file, but building the corresponding docker image fails. In this case, the error backtrace provides detailed information on the failure reason.',
  E50: 'Docker image pull error. Such error appears when trying to build an EIF file, but pulling the corresponding docker image fails. In this case, the error backtrace provides detailed informatino on the failure reason.',
  E59: 'EIF signature checker error. Such error appears when validation of the signing certificate fails.',
}

function fail(code, text, {enclaveProcess = false} = {}) {
  let err = errorBlock(code, text ?? TEXT[code] ?? `Fake failure ${code}.`)
  if (enclaveProcess && code !== 'E39') err += errorBlock('E39', TEXT.E39)
  process.stderr.write(err)
  process.exit(enclaveProcess ? 39 : Number(code.slice(1)))
}

const injected = (process.env.FAKE_NITRO_FAIL ?? '').split(':')
if (injected[0] === cmd && injected[1]) fail(injected[1], undefined, {enclaveProcess: cmd === 'run-enclave'})

const enclaves = () => readState('enclaves.json', [])
const ceilDiv = (a, b) => Math.ceil(a / b)

switch (cmd) {
  case '--version':
    process.stdout.write('Nitro CLI 1.4.2\n')
    break
  case 'build-enclave': {
    const uri = f['docker-uri'].includes(':') ? f['docker-uri'] : `${f['docker-uri']}:latest`
    process.stderr.write('Start building the Enclave Image...\n')
    const image = readState('images.json', {})[uri]
    if (!image) fail('E50') // not local and the fake cannot pull
    process.stderr.write('Using the locally available Docker image...\n')
    writeFakeEif(f['output-file'], {
      kernel: Buffer.from('fake bzImage (nitro-cli blobs)\n'.repeat(2048)),
      cmdline: 'reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on',
      metadata: {
        ImageName: uri.split(':')[0],
        ImageVersion: image.Id.replace('sha256:', ''),
        BuildMetadata: {BuildTime: '2026-11-26T08:30:00.000000000+00:00', BuildTool: 'nitro-cli', BuildToolVersion: '1.4.2', OperatingSystem: 'Linux', KernelVersion: '4.14.256'},
        DockerInfo: image,
        CustomMetadata: null,
      },
      ramdisks: [Buffer.from('fake bootstrap ramdisk: dev/ init nsm.ko\n'), Buffer.from(`fake customer ramdisk for ${uri} ${image.Id}\n`)],
    })
    const m = measureEif(f['output-file'])
    if (process.env.FAKE_NITRO_LIE) m.PCR0 = m.PCR0.slice(0, -1) + (m.PCR0.endsWith('0') ? '1' : '0')
    process.stderr.write('Enclave Image successfully created.\n')
    process.stdout.write(pretty({Measurements: m}))
    break
  }
  case 'run-enclave': {
    const eif = f['eif-path']
    if (!existsSync(eif)) fail('E19', `File operation failure. Such error appears when the system fails to perform the requested file operations, such as opening the EIF file when launching an enclave, or seeking to a specific offset in the EIF file, or writing to the log file.\nFile: '${eif}', failing operation: 'Open'.`)
    const memory = Number(f.memory)
    const cpus = Number(f['cpu-count'])
    const size = statSync(eif).size
    process.stderr.write('Start allocating memory...\n')
    // resource_manager.rs: 4 * eif_size > memory << 20 fails with E26 (min shown rounded up to MiB, x4).
    if (4 * size > memory * 1024 * 1024) {
      fail('E26', `Insufficient memory requested. User provided \`memory\` is ${memory} MB, but based on the EIF file size, the minimum memory should be ${ceilDiv(ceilDiv(size, 1024), 1024) * 4} MB`, {enclaveProcess: true})
    }
    if (memory > Number(process.env.FAKE_NITRO_POOL_MIB ?? 1_000_000)) {
      fail('E27', `Insufficient memory available. User provided \`memory\` is ${memory} MB, which is more than the available hugepage memory.\nYou can increase the available memory by editing the \`memory_mib\` value from '/etc/nitro_enclaves/allocator.yaml' and then restart the nitro-enclaves-allocator.service.`, {enclaveProcess: true})
    }
    const pool = (process.env.FAKE_NITRO_CPU_POOL ?? '1,5,2,6,3,7').split(',').map(Number)
    if (cpus > pool.length) {
      fail('E22', `Insufficient CPUs available in the pool. User provided \`cpu-count\` is ${cpus}, which is more than the configured CPU pool size.\nYou can increase the CPU pool size by editing the \`cpu_count\` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.`, {enclaveProcess: true})
    }
    const list = enclaves()
    const n = readState('counter.json', 0) + 1
    writeState('counter.json', n)
    const allocated = memory + Number(process.env.FAKE_NITRO_EXTRA_MIB ?? 0)
    const info = {
      EnclaveName: f['enclave-name'] ?? basename(eif).replace(/\.eif$/, ''),
      EnclaveID: `i-06c28848702514cd5-enc${(0x1904e4fea1636f0n + BigInt(n)).toString(16)}`,
      ProcessID: 6000 + n,
      EnclaveCID: Number(f['enclave-cid'] ?? 16),
      NumberOfCPUs: cpus,
      CPUIDs: pool.slice(0, cpus).sort((a, b) => a - b),
      MemoryMiB: allocated,
    }
    list.push({...info, State: 'RUNNING', Flags: f['debug-mode'] ? 'DEBUG_MODE' : 'NONE', Measurements: measureEif(eif)})
    writeState('enclaves.json', list)
    process.stderr.write(`Started enclave with enclave-cid: ${info.EnclaveCID}, memory: ${allocated} MiB, cpu-ids: [${info.CPUIDs.join(', ')}]\n`)
    process.stdout.write(pretty(info))
    break
  }
  case 'describe-enclaves':
    process.stdout.write(pretty(enclaves()))
    break
  case 'terminate-enclave': {
    const list = enclaves()
    const found = list.find((e) => e.EnclaveID === f['enclave-id'])
    if (!found) fail('E11')
    writeState('enclaves.json', list.filter((e) => e !== found))
    process.stderr.write(`Successfully terminated enclave ${found.EnclaveID}.\n`)
    process.stdout.write(pretty({EnclaveName: found.EnclaveName, EnclaveID: found.EnclaveID, Terminated: true}))
    break
  }
  case 'describe-eif': {
    const m = measureEif(f['eif-path'])
    process.stdout.write(pretty({EifVersion: 4, Measurements: m, IsSigned: false, CheckCRC: true}))
    break
  }
  case 'console': {
    const found = enclaves().find((e) => e.EnclaveID === f['enclave-id'])
    if (!found) fail('E11')
    if (found.Flags !== 'DEBUG_MODE') fail('E44')
    process.stdout.write(`Connecting to the console for enclave ${found.EnclaveCID}...\nSuccessfully connected to the console.\n[    0.000000] Linux version 4.14.256-209.484.amzn2.x86_64\n`)
    break
  }
  default:
    process.stderr.write(`error: unrecognized subcommand '${cmd}'\n`)
    process.exit(2)
}
