import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {percentDetail, stageLines, wantsStageLines} from '../../cli/progress.js'
import {DEFAULT_CONFIG_FILE} from '../../lib/config/load.js'
import {type SealReport, sealProject, sealReport} from '../../lib/model/seal/project.js'

export default class ModelSeal extends BaseCommand<typeof ModelSeal> {
  static override summary = 'Seal the saved model so only the attested enclave can read it (model.sealed).'
  static override description = `Encrypts every file of model.path (as its nle-model.json lists them) into model.sealedPath: AES-256-GCM chunks of --chunk-mib MiB under a fresh data key from KMS GenerateDataKey under kms.modelKeyId (else kms.keyId), with the encryption context {"nle:model-manifest": "sha256:<manifest digest>"}. Each chunk's associated data names the model, the file and the chunk's place, so chunks cannot be reordered, dropped, swapped or cut off. Writes nle-sealed.json (files, sizes, chunk digests, the wrapped data key) next to the sealed files; the plaintext is only read, never written.
With model.sealed: true, \`nle build\` puts nle-sealed.json (not the weights) into the image, and at start the enclave unwraps the data key with KMS Decrypt and its attestation (the key policy admits only the image's PCRs), streams the sealed files from the parent's weights server, checks and decrypts them in memory. \`nle dev\` seals the model itself against its local KMS when the sealed folder is missing or stale.
Runs with your AWS credentials (the SDK's chain, --profile), which need kms:GenerateDataKey on the key.`
  static override examples = [
    '<%= config.bin %> model seal',
    '<%= config.bin %> model seal --key-id alias/my-model --force --json',
    '<%= config.bin %> model seal --endpoint-url http://127.0.0.1:4599 --region us-east-1',
  ]
  static override flags = {
    config: Flags.file({char: 'c', description: 'Path to nle.yaml.', default: DEFAULT_CONFIG_FILE}),
    out: Flags.directory({char: 'o', description: 'Folder for the sealed files (default: model.sealedPath).'}),
    'key-id': Flags.string({description: 'KMS key id, alias or ARN (default: kms.modelKeyId, then kms.keyId).'}),
    region: Flags.string({description: 'AWS region (default: kms.region, then the SDK\'s chain).'}),
    profile: Flags.string({description: 'AWS profile from ~/.aws/config.'}),
    'endpoint-url': Flags.url({description: 'Send the KMS call here (e.g. a local `nle kms serve`).'}),
    'chunk-mib': Flags.integer({description: 'Plaintext MiB per chunk.', default: 4, min: 1, max: 64}),
    force: Flags.boolean({description: 'Replace a sealed folder that already holds files.'}),
  }

  async run(): Promise<SealReport> {
    const {flags} = this
    const lines = wantsStageLines(this.jsonEnabled()) ? stageLines() : undefined
    lines?.start('sealing the model')
    const detail = lines ? percentDetail((t) => lines.detail(t)) : undefined
    const r = await sealProject({
      configFile: flags.config,
      ...(flags.out ? {outDir: flags.out} : {}),
      ...(flags['key-id'] ? {keyId: flags['key-id']} : {}),
      ...(flags.region ? {region: flags.region} : {}),
      ...(flags.profile ? {profile: flags.profile} : {}),
      ...(flags['endpoint-url'] ? {endpointUrl: flags['endpoint-url'].toString()} : {}),
      chunkBytes: flags['chunk-mib'] << 20,
      force: flags.force,
      ...(detail ? {onProgress: (p) => detail(p.bytesDone, p.bytesTotal)} : {}),
    }).catch((error: unknown) => {
      lines?.end(false)
      throw error
    })
    lines?.end(true)
    const report = sealReport(r)
    if (!this.jsonEnabled()) {
      this.log(`Sealed ${r.files} files (${(r.plainBytes / 1e6).toFixed(1)} MB, ${r.chunks} chunks) into ${r.outDir}`)
      this.log(`  model      ${r.modelDigest}`)
      this.log(`  key        ${r.keyId}`)
      this.log(`  manifest   ${r.manifestPath} (${r.sealedManifestDigest})`)
      this.log('Set model.sealed: true in nle.yaml, then `nle build`: the image carries nle-sealed.json, not the weights.')
    }
    return report
  }
}
