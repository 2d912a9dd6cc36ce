import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {durationFlag} from '../../cli/flags.js'
import {kmsListeningEvent, kmsListeningLines, serveLocalKms} from '../../lib/kms/local/serve.js'
import {DEFAULT_MAX_ATTESTATION_AGE_MS} from '../../lib/kms/local/server.js'
import {untilStopSignal} from '../../lib/net/signals.js'

export default class KmsServe extends BaseCommand<typeof KmsServe> {
  static override jsonLines = true
  static override summary = 'Run a local KMS endpoint (loopback only) that enforces attestation conditions.'
  static override description = `Speaks the KMS JSON protocol of the AWS SDKs and the AWS CLI (CreateKey — symmetric keys only —, DescribeKey, ListKeys, EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias, UpdateAlias, DeleteAlias, ListAliases, GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, TagResource, UntagResource, ListResourceTags, ListGrants, Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom; the List* calls paginate with Limit and Marker) plus STS GetCallerIdentity and IAM GetRole, for development and tests. Point a client at it with --endpoint-url (or AWS_ENDPOINT_URL).

Every request must be SigV4-signed by a configured identity, for the endpoint's region (--region; a signature for another region is refused, as AWS does) (--identities FILE, or the development identities nle-dev-admin, nle-dev-host and nle-dev-client created in the state file, mode 0600). Each request is checked against the key policy: principal, action, explicit Deny over Allow, and kms:RecipientAttestation:* conditions from the Recipient's attestation document, which is verified against --dev-root (the NSM simulator's root) or else the AWS Nitro root. With a Recipient, the answer is only inside CiphertextForRecipient (CMS EnvelopedData to the document's public key).

Listens on 127.0.0.1 (or ::1) only. Stop with Ctrl-C. With --json, stdout is one JSON envelope per line (docs/json.md), the events: listening (url, state file, root, identities without their secrets), stopped, error.`
  static override examples = [
    '<%= config.bin %> kms serve --dev-root .nle/sim-root.pem',
    '<%= config.bin %> kms serve --port 4599 --state .nle/kms-state.json --identities identities.json',
  ]
  static override flags = {
    host: Flags.string({description: 'Loopback address to listen on.', options: ['127.0.0.1', '::1', 'localhost'], default: '127.0.0.1'}),
    port: Flags.integer({description: 'TCP port (0 = any free port).', default: 4599, min: 0, max: 65535}),
    state: Flags.file({description: 'State file (keys, aliases, identities), written atomically.', default: '.nle/kms-state.json'}),
    identities: Flags.file({description: 'JSON list of {accessKeyId, secretAccessKey, arn} to accept instead of the state file\'s.'}),
    'dev-root': Flags.file({description: 'PEM root that attestation documents must chain to (the NSM simulator\'s). Default: the AWS Nitro Enclaves root.'}),
    'max-attestation-age': durationFlag({description: 'Oldest attestation document accepted', defaultMs: DEFAULT_MAX_ATTESTATION_AGE_MS}),
    account: Flags.string({description: 'Account id of a new state.', default: '000000000000'}),
    region: Flags.string({description: 'Region of a new state.', default: 'us-east-1'}),
  }

  async run(): Promise<void> {
    const f = this.flags
    const served = await serveLocalKms({
      host: f.host,
      port: f.port,
      state: f.state,
      identities: f.identities,
      devRoot: f['dev-root'],
      maxAttestationAgeMs: f['max-attestation-age'],
      account: f.account,
      region: f.region,
      log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
    })
    // Listen for SIGINT/SIGTERM before saying it listens: a script may send one as soon as it reads that.
    const signalled = untilStopSignal()
    if (this.jsonEnabled()) this.emitEvent('listening', kmsListeningEvent(served))
    for (const line of kmsListeningLines(served)) this.log(line)
    await signalled
    await served.server.close()
    if (this.jsonEnabled()) this.emitEvent('stopped', {url: served.server.url})
  }
}
