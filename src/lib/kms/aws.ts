/**
 * The AWS edges of the policy commands: KMS DescribeKey / GetKeyPolicy / PutKeyPolicy / ListGrants, IAM GetRole,
 * STS GetCallerIdentity. Credentials come from the SDK's standard chain (env, profile, SSO, IMDS);
 * `profile` and `region` override it; `endpointUrl` points all three clients at one endpoint (such
 * as `nle kms serve`, which answers the KMS, STS and IAM calls used here). Every failure becomes a
 * KMS_* NleError; no credentials are ever logged.
 */
import {GetRoleCommand, IAMClient} from '@aws-sdk/client-iam'
import {DescribeKeyCommand, EncryptCommand, GetKeyPolicyCommand, KMSClient, ListGrantsCommand, PutKeyPolicyCommand} from '@aws-sdk/client-kms'
import {GetCallerIdentityCommand, STSClient} from '@aws-sdk/client-sts'

import {kmsError} from './errors.js'

export interface AwsOptions {
  region?: string
  profile?: string
  endpointUrl?: string
  /** Explicit credentials (the local endpoint's dev identities); default: the SDK's chain. */
  credentials?: {accessKeyId: string; secretAccessKey: string}
}

export interface AwsClients {
  kms: KMSClient
  iam: IAMClient
  sts: STSClient
}

export function awsClients(options: AwsOptions): AwsClients {
  const common = {
    ...(options.region ? {region: options.region} : {}),
    ...(options.profile ? {profile: options.profile} : {}),
    ...(options.endpointUrl ? {endpoint: options.endpointUrl} : {}),
    ...(options.credentials ? {credentials: options.credentials} : {}),
    maxAttempts: 2,
  }
  return {kms: new KMSClient(common), iam: new IAMClient(common), sts: new STSClient(common)}
}

interface AwsErrorLike {
  name?: string
  message?: string
  $metadata?: {httpStatusCode?: number; requestId?: string}
}

/** AWS error names for credentials it does not accept (bad signature = wrong secret, unknown key id, expired token). */
const REJECTED_CREDENTIALS = new Set([
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'ExpiredTokenException',
  'ExpiredToken',
])

function awsFailure(service: string, operation: string, error: unknown): never {
  const e = error as AwsErrorLike
  const name = e?.name ?? 'Error'
  const details = {service, operation, awsError: name, httpStatus: e?.$metadata?.httpStatusCode, requestId: e?.$metadata?.requestId}
  if (/AccessDenied/i.test(name)) {
    throw kmsError('KMS_ACCESS_DENIED', `${service} ${operation} was denied: ${e.message ?? name}`, {hint: 'Check the caller\'s IAM permissions and the key policy (nle doctor --for policy).', details, cause: error})
  }
  if (REJECTED_CREDENTIALS.has(name)) {
    // A wrong secret key or an expired session: the region and the network are fine.
    throw kmsError('KMS_CREDENTIALS_REJECTED', `${service} ${operation}: AWS did not accept the credentials (${name}): ${e.message ?? ''}`.trimEnd(), {details, cause: error})
  }
  if (name === 'NotFoundException' && service === 'KMS') {
    throw kmsError('KMS_KEY_NOT_FOUND', `The KMS key was not found: ${e.message ?? name}`, {hint: 'Check kms.keyId and kms.region in nle.yaml.', details, cause: error})
  }
  if (name === 'NoSuchEntityException' || name === 'NoSuchEntity') {
    throw kmsError('KMS_ROLE_NOT_FOUND', `The host role does not exist: ${e.message ?? name}`, {hint: 'Check kms.hostRoleArn in nle.yaml.', details, cause: error})
  }
  if (name === 'CredentialsProviderError' || /credential/i.test(e?.message ?? '')) {
    throw kmsError('KMS_AWS_ERROR', `No AWS credentials for ${service} ${operation}: ${e.message ?? name}`, {hint: 'Set AWS_PROFILE / --profile, or run on a host with an instance role.', details, cause: error})
  }
  throw kmsError('KMS_AWS_ERROR', `${service} ${operation} failed: ${name}: ${e?.message ?? String(error)}`, {details, cause: error})
}

/** KMS Encrypt under the caller's own identity (KMS mode's client side wraps its data key with it). */
export async function kmsEncrypt(client: KMSClient, keyId: string, plaintext: Uint8Array, encryptionContext: Record<string, string>): Promise<Uint8Array> {
  try {
    const out = await client.send(new EncryptCommand({KeyId: keyId, Plaintext: plaintext, EncryptionContext: encryptionContext}))
    if (!out.CiphertextBlob) throw Object.assign(new Error('Encrypt returned no CiphertextBlob.'), {name: 'KMSInternalException'})
    return out.CiphertextBlob
  } catch (error) {
    awsFailure('KMS', 'Encrypt', error)
  }
}

export interface KeyInfo {
  keyId: string
  arn: string
  account: string
  region: string
  enabled: boolean
}

export async function describeKey(clients: AwsClients, keyId: string): Promise<KeyInfo> {
  try {
    const out = await clients.kms.send(new DescribeKeyCommand({KeyId: keyId}))
    const meta = out.KeyMetadata
    if (!meta?.Arn || !meta.KeyId) throw new Error('DescribeKey returned no KeyMetadata')
    const parts = meta.Arn.split(':')
    return {keyId: meta.KeyId, arn: meta.Arn, account: meta.AWSAccountId ?? parts[4] ?? '', region: parts[3] ?? '', enabled: meta.Enabled !== false}
  } catch (error) {
    return awsFailure('KMS', 'DescribeKey', error)
  }
}

export async function getKeyPolicy(clients: AwsClients, keyArn: string): Promise<string> {
  try {
    const out = await clients.kms.send(new GetKeyPolicyCommand({KeyId: keyArn, PolicyName: 'default'}))
    if (typeof out.Policy !== 'string') throw new Error('GetKeyPolicy returned no Policy')
    return out.Policy
  } catch (error) {
    return awsFailure('KMS', 'GetKeyPolicy', error)
  }
}

export async function putKeyPolicy(clients: AwsClients, keyArn: string, policy: string): Promise<void> {
  try {
    await clients.kms.send(new PutKeyPolicyCommand({KeyId: keyArn, PolicyName: 'default', Policy: policy}))
  } catch (error) {
    awsFailure('KMS', 'PutKeyPolicy', error)
  }
}

export interface KeyGrant {
  grantId: string
  granteePrincipal: string
  operations: string[]
}

/** The most grants read (KMS allows 50,000 per key; past this the check says it could not see them all). */
export const MAX_GRANTS = 10_000

/** Every grant on the key (grants are not in the key policy and are not bound by its conditions). `complete` is false past MAX_GRANTS. */
export async function listGrants(clients: AwsClients, keyArn: string): Promise<{grants: KeyGrant[]; complete: boolean}> {
  const grants: KeyGrant[] = []
  let marker: string | undefined
  try {
    do {
      const out = await clients.kms.send(new ListGrantsCommand({KeyId: keyArn, Limit: 100, ...(marker ? {Marker: marker} : {})}))
      for (const g of out.Grants ?? []) grants.push({grantId: g.GrantId ?? '', granteePrincipal: g.GranteePrincipal ?? '', operations: (g.Operations ?? []).map(String)})
      marker = out.Truncated ? out.NextMarker : undefined
    } while (marker !== undefined && grants.length < MAX_GRANTS)
  } catch (error) {
    return awsFailure('KMS', 'ListGrants', error)
  }
  return {grants, complete: marker === undefined}
}

/** Resolve the host role; returns its ARN as IAM spells it. */
export async function getRole(clients: AwsClients, roleArn: string): Promise<string> {
  const name = roleArn.split('/').at(-1) ?? ''
  try {
    const out = await clients.iam.send(new GetRoleCommand({RoleName: name}))
    const arn = out.Role?.Arn
    if (!arn) throw new Error('GetRole returned no Role')
    if (arn !== roleArn) {
      throw kmsError('KMS_ROLE_MISMATCH', `The role named ${name} is ${arn}, not ${roleArn}.`, {hint: 'Fix kms.hostRoleArn in nle.yaml (account or path differ).'})
    }
    return arn
  } catch (error) {
    if (error instanceof Error && 'code' in error) throw error
    return awsFailure('IAM', 'GetRole', error)
  }
}

export interface CallerIdentity {
  arn: string
  account: string
}

export async function callerIdentity(clients: AwsClients): Promise<CallerIdentity> {
  try {
    const out = await clients.sts.send(new GetCallerIdentityCommand({}))
    if (!out.Arn || !out.Account) throw new Error('GetCallerIdentity returned no Arn')
    return {arn: out.Arn, account: out.Account}
  } catch (error) {
    return awsFailure('STS', 'GetCallerIdentity', error)
  }
}
