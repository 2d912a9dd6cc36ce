/**
 * KMS mode's client side: where the data keys are wrapped (KMS Encrypt under the caller's own
 * identity). The caller's credentials stay on the caller's machine: they sign a call to KMS, and
 * nothing of them is sent to the proxy or the enclave.
 *
 * - Against a running `nle dev`: its local KMS endpoint, its key, and the dev client identity from
 *   the endpoint's state file (development identities only).
 * - Against a real host: kms.keyId / kms.region of nle.yaml (or flags) and the AWS SDK's standard
 *   credential chain (env, profile, SSO, instance role).
 */
import type {KMSClient} from '@aws-sdk/client-kms'

import type {WrapDataKey} from '../channel/kms-request.js'
import {loadConfig} from '../config/load.js'
import type {DevEndpoints} from '../dev/endpoints.js'
import {NleError, isNleError} from '../errors.js'
import {awsClients, kmsEncrypt} from '../kms/aws.js'
import {DEV_CLIENT_ROLE, loadIdentities, loadState} from '../kms/local/state.js'

export interface ClientKmsSettings {
  /** Key ARN, id or alias. */
  keyId: string
  region?: string
  profile?: string
  endpointUrl?: string
  credentials?: {accessKeyId: string; secretAccessKey: string; sessionToken?: string}
  /** Where the settings came from (for messages and `--json`). */
  source: 'dev' | 'config'
}

export interface ClientKms {
  wrap: WrapDataKey
  settings: Omit<ClientKmsSettings, 'credentials'>
  close(): void
}

export function clientKms(settings: ClientKmsSettings): ClientKms {
  const kms: KMSClient = awsClients({
    ...(settings.region ? {region: settings.region} : {}),
    ...(settings.profile ? {profile: settings.profile} : {}),
    ...(settings.endpointUrl ? {endpointUrl: settings.endpointUrl} : {}),
    ...(settings.credentials ? {credentials: settings.credentials} : {}),
  }).kms
  const {credentials: _secret, ...shown} = settings
  return {
    wrap: (dataKey, encryptionContext) => kmsEncrypt(kms, settings.keyId, dataKey, encryptionContext),
    settings: shown,
    close: () => kms.destroy(),
  }
}

/** The KMS of a running dev stack, with its development client identity. */
export async function devClientKms(endpoints: DevEndpoints): Promise<ClientKmsSettings> {
  if (!endpoints.kms) {
    throw new NleError('CLIENT_KMS_UNCONFIGURED', 'The running `nle dev` publishes no KMS key (it predates KMS mode).', {hint: 'Restart `nle dev`.'})
  }
  const {state} = await loadState(endpoints.kms.stateFile)
  const identities = endpoints.kms.identitiesFile ? await loadIdentities(endpoints.kms.identitiesFile) : state.identities
  const client = identities.find((i) => i.arn.endsWith(`:role/${DEV_CLIENT_ROLE}`))
  if (!client) {
    throw new NleError('CLIENT_KMS_UNCONFIGURED', `The dev KMS state has no ${DEV_CLIENT_ROLE} identity.`, {hint: 'Restart `nle dev` (it adds one).'})
  }
  return {
    keyId: endpoints.kms.keyArn,
    region: endpoints.kms.region,
    endpointUrl: endpoints.kmsUrl,
    credentials: {accessKeyId: client.accessKeyId, secretAccessKey: client.secretAccessKey},
    source: 'dev',
  }
}

/** kms.keyId and kms.region from nle.yaml (flags override); credentials from the SDK's chain. */
export async function configClientKms(configFile: string, overrides: {keyId?: string; region?: string; profile?: string; endpointUrl?: string} = {}): Promise<ClientKmsSettings> {
  let config: {kms: {keyId?: string | undefined; region?: string | undefined}} = {kms: {}}
  try {
    config = (await loadConfig(configFile)).config
  } catch (error) {
    if (!(isNleError(error) && error.code === 'CONFIG_NOT_FOUND')) throw error
    // Flags alone are enough.
    if (!overrides.keyId) {
      throw new NleError('CLIENT_KMS_UNCONFIGURED', `KMS mode needs the KMS key, and there is no ${configFile} here to name it.`, {
        hint: 'Pass --kms-key-id (and --kms-region), run in the project folder, or use --mode attested.',
      })
    }
  }
  const keyId = overrides.keyId ?? config.kms.keyId
  if (!keyId) {
    throw new NleError('CLIENT_KMS_UNCONFIGURED', 'KMS mode needs the KMS key the enclave is allowed to use.', {hint: 'Set kms.keyId in nle.yaml or pass --kms-key-id.'})
  }
  const region = overrides.region ?? config.kms.region
  return {
    keyId,
    ...(region ? {region} : {}),
    ...(overrides.profile ? {profile: overrides.profile} : {}),
    ...(overrides.endpointUrl ? {endpointUrl: overrides.endpointUrl} : {}),
    source: 'config',
  }
}

export interface KmsFlags {
  keyId?: string
  region?: string
  profile?: string
  endpointUrl?: string
}

/**
 * What `nle chat` and `nle gateway` use: a running dev stack's KMS when the target is that stack
 * (and no key was named), else nle.yaml and flags with the SDK's credential chain.
 */
export function resolveClientKms(options: {dev?: DevEndpoints; configFile: string; flags: KmsFlags}): () => Promise<ClientKmsSettings> {
  return async () => (options.dev && !options.flags.keyId ? devClientKms(options.dev) : configClientKms(options.configFile, options.flags))
}
