import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {table} from '../../cli/render.js'
import {type EifDescription, describeEif} from '../../lib/eif/describe.js'
import {assertTrusted, readEif} from '../../lib/eif/reader.js'
import {bootability} from '../../lib/host/bootable.js'

export default class EifDescribe extends BaseCommand<typeof EifDescribe> {
  static override summary = 'Show an enclave image\'s measurements, signature and metadata, as `nitro-cli describe-eif` does.'
  static override description = `Reads the EIF in one streaming pass (any size, constant memory) and validates its structure strictly: header, section table, section types and order. Prints EifVersion, Measurements (PCR0/1/2, and PCR8 when signed), IsSigned, SigningCertificate, CheckCRC, SignatureCheck, ImageName, ImageVersion and Metadata — with --json, exactly the keys and value formats of nitro-cli describe-eif.

A wrong CRC or signature is reported, not fatal; pass --verify to make them fatal (exit 5), as they are wherever nle trusts an image.`
  static override examples = [
    '<%= config.bin %> eif describe enclave.eif',
    '<%= config.bin %> eif describe enclave.eif --json',
    '<%= config.bin %> eif describe enclave.eif --verify --require-signature',
  ]
  static override args = {
    file: Args.file({description: 'The EIF to describe.', required: true}),
  }
  static override flags = {
    verify: Flags.boolean({description: 'Fail (exit 5) on a CRC mismatch, an invalid signature, or a signing certificate not valid now.'}),
    'require-signature': Flags.boolean({description: 'Also fail when the image is not signed (implies --verify).'}),
  }

  async run(): Promise<EifDescription> {
    const info = await readEif(this.args.file)
    if (this.flags.verify || this.flags['require-signature']) assertTrusted(info, {requireSignature: this.flags['require-signature']})
    const d = await describeEif(info)
    if (!this.jsonEnabled()) {
      const l = info.layout
      this.log(`${this.args.file}: EIF version ${d.EifVersion}, ${l.arch}, ${l.fileSize} bytes, ${l.sections.length} sections`)
      this.log(table(l.sections.map((s) => [String(s.index), s.typeName, String(s.offset), String(s.size)]), ['#', 'section', 'offset', 'size']).trimEnd())
      const m = d.Measurements
      this.log(table([['PCR0', m.PCR0], ['PCR1', m.PCR1], ['PCR2', m.PCR2], ...(m.PCR8 ? [['PCR8', m.PCR8]] : [])]).trimEnd())
      this.log(`CheckCRC: ${d.CheckCRC ? 'ok' : 'MISMATCH'}`)
      if (info.signature) {
        const c = info.signature.check
        this.log(`Signed: yes (${d.SigningCertificate?.Algorithm ?? ''}), SignatureCheck: ${d.SignatureCheck ? 'ok' : 'FAILED'}, certificate ${c.certificateValidNow ? 'valid now' : 'NOT valid now'} (${c.certificate.x509.validFrom} to ${c.certificate.x509.validTo})`)
        this.log(`Issuer: ${Object.entries(d.SigningCertificate?.IssuerName ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')}`)
      } else {
        this.log('Signed: no')
      }
      if (d.ImageName !== undefined) this.log(`Image: ${d.ImageName} ${d.ImageVersion ?? ''}`)
      if (d.Metadata) this.log(`Built: ${String(d.Metadata.BuildTime)} by ${String(d.Metadata.BuildTool)} ${String(d.Metadata.BuildToolVersion)}`)
      this.log(`Cmdline: ${info.cmdline.toString('utf8')}`)
      const boot = bootability(info)
      if (!boot.bootable) this.log(`NOT BOOTABLE: ${boot.reason} (a dev image: its PCRs are real, but no enclave can run it)`)
    }
    return d
  }
}
