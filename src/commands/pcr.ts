import {readFile} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {NleError} from '../lib/errors.js'
import {parseSigningCertificate, pcr8Of} from '../lib/eif/cert.js'
import {eifError} from '../lib/eif/errors.js'
import {pcrOfFile} from '../lib/eif/pcr.js'

export default class Pcr extends BaseCommand<typeof Pcr> {
  static override summary = 'Compute the PCR of a file or of a signing certificate, as `nitro-cli pcr` does.'
  static override description = `PCR = SHA384(48 zero bytes || SHA384(content)): the value a Nitro enclave register holds after one extend from zero.
--input FILE measures the file's bytes and prints {"PCR": …}; --signing-certificate PEM measures the certificate's DER encoding and prints {"PCR8": …}, the PCR8 a signed EIF reports. The file is streamed, so any size works.`
  static override examples = [
    '<%= config.bin %> pcr --input customer-initrd.img',
    '<%= config.bin %> pcr --signing-certificate cert.pem',
    '<%= config.bin %> pcr --input /dev/null --json',
  ]
  static override flags = {
    input: Flags.string({description: 'File whose bytes to measure (any readable file).', exclusive: ['signing-certificate']}),
    'signing-certificate': Flags.string({description: 'PEM certificate to measure as PCR8.', exclusive: ['input']}),
  }

  async run(): Promise<{PCR: string} | {PCR8: string}> {
    if (this.flags.input === undefined && this.flags['signing-certificate'] === undefined) {
      throw new NleError('USAGE', 'Give --input FILE or --signing-certificate PEM.', {hint: 'Run `nle pcr --help` for usage.'})
    }
    let result: {PCR: string} | {PCR8: string}
    if (this.flags.input !== undefined) {
      result = {PCR: await pcrOfFile(this.flags.input)}
    } else {
      const path = this.flags['signing-certificate']!
      const pem = await readFile(path).catch((error: unknown) => {
        throw eifError('EIF_INPUT_NOT_FOUND', `Cannot read ${path}: ${(error as Error).message}`, {cause: error})
      })
      result = {PCR8: pcr8Of(parseSigningCertificate(pem))}
    }
    if (!this.jsonEnabled()) this.log(JSON.stringify(result, null, 2))
    return result
  }
}

