/**
 * The local KMS endpoint's state: keys (material, policy), aliases and the identities whose
 * SigV4 signatures it accepts. Persisted as JSON, atomically (temp file + rename), mode 0600 —
 * it holds key material and secret access keys of local, development-only identities.
 */
import {randomBytes, randomUUID} from 'node:crypto'
import {readFile} from 'node:fs/promises'

import {z} from 'zod'

import {writeFileAtomic} from '../../files.js'
import {kmsError} from '../errors.js'

const identitySchema = z.strictObject({
  accessKeyId: z.string().regex(/^[A-Z0-9]{16,128}$/),
  secretAccessKey: z.string().min(16),
  /** The IAM principal the key authenticates as: arn:aws:iam::<acct>:role/<name> or :user/<name>. */
  arn: z.string().regex(/^arn:aws:iam::\d{12}:(role|user)\/.+$/),
})

const keySchema = z.strictObject({
  keyId: z.uuid(),
  arn: z.string(),
  /** 32 bytes, base64. */
  material: z.string(),
  policy: z.string(),
  description: z.string(),
  enabled: z.boolean(),
  /** Seconds since the epoch. */
  createdAt: z.number(),
  /** TagResource's tags, in the order they were first set. */
  tags: z.array(z.strictObject({TagKey: z.string(), TagValue: z.string()})).optional(),
  /** ScheduleKeyDeletion: when the key is deleted (seconds since the epoch), and the window it was given. */
  deletionDate: z.number().optional(),
  pendingWindowInDays: z.number().int().optional(),
})

const stateSchema = z.strictObject({
  version: z.literal(1),
  accountId: z.string().regex(/^\d{12}$/),
  region: z.string().min(1),
  keys: z.record(z.string(), keySchema),
  aliases: z.record(z.string(), z.string()),
  identities: z.array(identitySchema),
})

export type LocalIdentity = z.infer<typeof identitySchema>
export type LocalKey = z.infer<typeof keySchema>
export type LocalState = z.infer<typeof stateSchema>

export const DEV_ACCOUNT = '000000000000'
/** The development identities: who administers the key, who the enclave host runs as, who asks. */
export const DEV_ADMIN_ROLE = 'nle-dev-admin'
export const DEV_HOST_ROLE = 'nle-dev-host'
export const DEV_CLIENT_ROLE = 'nle-dev-client'

/** A fresh development identity (random credentials) for a role of the account. */
export function newIdentity(accountId: string, roleName: string): LocalIdentity {
  return {
    accessKeyId: `AKIANLE${randomBytes(8).toString('hex').toUpperCase().slice(0, 13)}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
    arn: `arn:aws:iam::${accountId}:role/${roleName}`,
  }
}

/** An empty state with three identities: an administrator, the enclave host and a client (KMS mode). */
export function newState(options: {accountId?: string; region?: string} = {}): LocalState {
  const accountId = options.accountId ?? DEV_ACCOUNT
  return {
    version: 1,
    accountId,
    region: options.region ?? 'us-east-1',
    keys: {},
    aliases: {},
    identities: [newIdentity(accountId, DEV_ADMIN_ROLE), newIdentity(accountId, DEV_HOST_ROLE), newIdentity(accountId, DEV_CLIENT_ROLE)],
  }
}

export function newKey(state: LocalState, policy: string, description: string, now: number): LocalKey {
  const keyId = randomUUID()
  return {keyId, arn: `arn:aws:kms:${state.region}:${state.accountId}:key/${keyId}`, material: randomBytes(32).toString('base64'), policy, description, enabled: true, createdAt: Math.floor(now / 1000)}
}

export function parseState(value: unknown, source: string): LocalState {
  const result = stateSchema.safeParse(value)
  if (!result.success) {
    throw kmsError('KMS_STATE_INVALID', `${source} is not a valid local KMS state: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, {
      hint: 'Delete it to start over (its keys are lost), or restore a good copy.',
    })
  }
  return result.data
}

/** Identities given in a separate file: `[{accessKeyId, secretAccessKey, arn}, …]`. */
export function parseIdentities(value: unknown, source: string): LocalIdentity[] {
  const result = z.array(identitySchema).min(1).safeParse(value)
  if (!result.success) {
    throw kmsError('KMS_STATE_INVALID', `${source} is not a list of identities: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, {
      hint: 'Write [{"accessKeyId": "AKIA…", "secretAccessKey": "…", "arn": "arn:aws:iam::000000000000:role/name"}].',
    })
  }
  return result.data
}

async function readJson(path: string): Promise<unknown | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw kmsError('KMS_STATE_INVALID', `Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {cause: error})
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    throw kmsError('KMS_STATE_INVALID', `${path} is not JSON.`, {hint: 'Delete it to start over, or restore a good copy.', cause: error})
  }
}

/** Load the state file; a missing file gives a fresh state (not yet written). */
export async function loadState(path: string, options: {accountId?: string; region?: string} = {}): Promise<{state: LocalState; created: boolean}> {
  const value = await readJson(path)
  if (value === undefined) return {state: newState(options), created: true}
  return {state: parseState(value, path), created: false}
}

export async function loadIdentities(path: string): Promise<LocalIdentity[]> {
  const value = await readJson(path)
  if (value === undefined) throw kmsError('KMS_STATE_INVALID', `No identities file at ${path}.`)
  return parseIdentities(value, path)
}

/** Write the state atomically (../../files.ts), mode 0600 even over an older, looser file. */
export async function saveState(path: string, state: LocalState): Promise<void> {
  try {
    await writeFileAtomic(path, JSON.stringify(state, null, 2) + '\n', {mode: 0o600})
  } catch (error) {
    throw kmsError('KMS_STATE_WRITE_FAILED', `Cannot write the local KMS state ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {cause: error})
  }
}
