import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {durationFlag, enclaveTrustFlags} from '../../cli/flags.js'
import {attestRefusedLines, attestVerifiedLines} from '../../cli/attest-lines.js'
import {type AttestVerifyResult, attestVerify} from '../../lib/attest-verify.js'
import {parseTime} from '../../lib/attestation/source.js'
import {ExitCode} from '../../lib/errors.js'

const pcrFlag = (n: number) => Flags.string({description: `Expected PCR${n} (96 hex characters); overrides the lockfile's.`, helpGroup: 'EXPECTED MEASUREMENTS'})

export default class AttestVerify extends BaseCommand<typeof AttestVerify> {
  static override description = `Verify a Nitro Enclave attestation document.

Checks the COSE signature, the certificate chain up to the AWS Nitro Enclaves root (G1), and the
enclave's measurements against the lockfile (or --pcrN flags). Given a URL (https://, with --ca for a
self-signed proxy certificate, or http://) or an enclave socket (unix:/path.sock), it fetches
GET /v1/attestation?nonce=<hex> there with a fresh random nonce and checks the document answers it.
Exits 0 only when the document is verified; every refusal exits ${ExitCode.VERIFY} with its own ATTEST_* code.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> attestation.cbor',
    '<%= config.bin %> <%= command.id %> http://127.0.0.1:5001 --lockfile build/nle.lock.json',
    '<%= config.bin %> <%= command.id %> doc.bin --pcr0 <hex> --pcr1 <hex> --pcr2 <hex> --at 2025-05-05T23:27:32Z --max-age 1h',
    '<%= config.bin %> <%= command.id %> http://127.0.0.1:5001 --dev-root simulator-root.pem --allow-debug --json',
    '<%= config.bin %> <%= command.id %> https://127.0.0.1:8443 --ca .nle/dev/proxy-cert.pem --dev-root .nle/dev/nsm-root.pem',
    '<%= config.bin %> <%= command.id %> unix:.nle/dev/enclave.sock --dev-root .nle/dev/nsm-root.pem',
  ]

  static override args = {
    target: Args.string({description: 'A file holding the raw document (COSE_Sign1 CBOR), the http(s) URL of a running enclave\'s proxy, or unix:/path.sock of its server.', required: true}),
  }

  static override flags = {
    ...enclaveTrustFlags,
    pcr0: pcrFlag(0),
    pcr1: pcrFlag(1),
    pcr2: pcrFlag(2),
    pcr3: pcrFlag(3),
    pcr4: pcrFlag(4),
    pcr8: pcrFlag(8),
    at: Flags.string({description: 'Verify as of this time (ISO 8601 or epoch ms) instead of now.'}),
    'max-age': durationFlag({description: 'Refuse documents older than this', defaultMs: 300_000}),
    timeout: durationFlag({description: 'URL mode: how long to wait for the enclave', defaultMs: 10_000}),
  }

  async run(): Promise<AttestVerifyResult> {
    const {flags, args} = this
    const human = !this.jsonEnabled()
    if (human && flags['dev-root'] !== undefined) this.warn(`Trusting a root that is not AWS's (${flags['dev-root']}): a document it accepts was not signed by AWS.`)
    if (human && flags['allow-debug']) this.warn('Debug-mode enclaves are accepted (--allow-debug): their code is not measured.')
    const data = await attestVerify(
      {
        target: args.target,
        lockfile: flags.lockfile,
        pcrs: flags,
        ...(flags.at === undefined ? {} : {at: parseTime(flags.at)}),
        maxAgeMs: flags['max-age'],
        allowDebug: flags['allow-debug'],
        rootFile: flags['dev-root'],
        caFile: flags.ca,
        timeoutMs: flags.timeout,
      },
      human ? (doc, code) => attestRefusedLines(doc, code).forEach((line) => this.log(line)) : undefined,
    )
    if (human) for (const line of attestVerifiedLines(data)) this.log(line)
    return data
  }
}
