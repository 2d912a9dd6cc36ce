/**
 * The KMS operations of the local endpoint, on its state. Each request is authorized by evaluating
 * the key policy (./../evaluate.ts) for the calling identity, the action and the request's
 * condition keys — `kms:RecipientAttestation:*` from a verified attestation document, and
 * `kms:EncryptionContext:*`. An explicit Deny wins; no matching Allow is AccessDeniedException.
 * A principal naming the account (`…:root`) counts as allowing: there are no IAM policies here.
 *
 * Ciphertext blobs are AES-256-GCM under the key's material, authenticated with the key ARN and
 * the encryption context as additional data: `"NLK1" | u8 len | key id | iv(12) | tag(16) | ct`.
 */
import {createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual} from 'node:crypto'

import {toHex} from '../../attestation/cbor.js'
import type {TrustedRoot} from '../../attestation/roots.js'
import {inspectAttestation, verifyAttestation} from '../../attestation/verify.js'
import {isNleError} from '../../errors.js'
import {type RequestContextKeys, evaluatePolicy, recipientContextKeys} from '../evaluate.js'
import {type KeyPolicy, canPutKeyPolicy, parsePolicy} from '../policy.js'
import {buildEnvelope, recipientPublicKey} from '../recipient.js'
import {type LocalIdentity, type LocalKey, type LocalState, newKey} from './state.js'

export class KmsApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message)
  }
}

export interface OperationEnv {
  state: LocalState
  /** The attestation trust root: the simulator's dev root, or AWS's (a function: asked each time). */
  root: TrustedRoot | (() => TrustedRoot)
  /** Largest accepted age of an attestation document (ms). */
  maxAttestationAgeMs: number
  now: () => number
  /** Persist the state (after a change). */
  save: () => Promise<void>
}

type Input = Record<string, unknown>
type Output = Record<string, unknown>

const MAGIC = Buffer.from('NLK1')

function str(input: Input, name: string, required: true): string
function str(input: Input, name: string, required?: false): string | undefined
function str(input: Input, name: string, required = false): string | undefined {
  const v = input[name]
  if (v === undefined || v === null) {
    if (required) throw new KmsApiError('ValidationException', `1 validation error detected: Value null at '${name}' failed to satisfy constraint: Member must not be null`)
    return undefined
  }
  if (typeof v !== 'string') throw new KmsApiError('ValidationException', `${name} must be a string.`)
  return v
}

function blob(input: Input, name: string, required: true, max?: number): Buffer
function blob(input: Input, name: string, required: false, max?: number): Buffer | undefined
function blob(input: Input, name: string, required: boolean, max = 6144): Buffer | undefined {
  const v = str(input, name, required as true)
  if (v === undefined) return undefined
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new KmsApiError('ValidationException', `${name} is not base64.`)
  const bytes = Buffer.from(v, 'base64')
  if (bytes.length < 1 || bytes.length > max) throw new KmsApiError('ValidationException', `${name} must be 1..${max} bytes.`)
  return bytes
}

function encryptionContext(input: Input, name = 'EncryptionContext'): Record<string, string> {
  const v = input[name]
  if (v === undefined || v === null) return {}
  if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) throw new KmsApiError('ValidationException', `${name} must map strings to strings.`)
  return v as Record<string, string>
}

/** GenerateDataKey*: the data key's length from exactly one of KeySpec and NumberOfBytes. */
function dataKeyBytes(input: Input): number {
  const spec = str(input, 'KeySpec')
  const n = input.NumberOfBytes
  if ((spec === undefined) === (n === undefined || n === null)) throw new KmsApiError('ValidationException', 'Give exactly one of KeySpec and NumberOfBytes.')
  if (spec !== undefined) {
    if (spec !== 'AES_256' && spec !== 'AES_128') throw new KmsApiError('ValidationException', 'KeySpec must be AES_256 or AES_128.')
    return spec === 'AES_256' ? 32 : 16
  }
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1024) throw new KmsApiError('ValidationException', 'NumberOfBytes must be 1..1024.')
  return n
}

const canonicalContext = (ec: Record<string, string>): string => JSON.stringify(Object.keys(ec).sort().map((k) => [k, ec[k]]))

function contextKeys(ec: Record<string, string>): RequestContextKeys {
  const keys: RequestContextKeys = {}
  for (const [k, v] of Object.entries(ec)) keys[`kms:EncryptionContext:${k}`] = v
  if (Object.keys(ec).length > 0) keys['kms:EncryptionContextKeys'] = Object.keys(ec)
  return keys
}

/** Enabled, Disabled, or PendingDeletion (after ScheduleKeyDeletion, until CancelKeyDeletion). */
export function keyState(key: LocalKey): 'Enabled' | 'Disabled' | 'PendingDeletion' {
  return key.deletionDate !== undefined ? 'PendingDeletion' : key.enabled ? 'Enabled' : 'Disabled'
}

function keyMetadata(state: LocalState, key: LocalKey): Output {
  return {
    AWSAccountId: state.accountId,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: key.createdAt,
    Enabled: key.enabled,
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: keyState(key),
    ...(key.deletionDate === undefined ? {} : {DeletionDate: key.deletionDate, PendingDeletionWindowInDays: key.pendingWindowInDays}),
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
    KeySpec: 'SYMMETRIC_DEFAULT',
    EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    MultiRegion: false,
  }
}

/** Markers are signed with a secret of this process: a Marker this endpoint did not give is refused. */
const MARKER_KEY = randomBytes(32)
const markerMac = (after: string): string => createHmac('sha256', MARKER_KEY).update(after).digest('base64url').slice(0, 22)

/** A page of `items` (sorted by `keyOf`) after `Marker` (an opaque token this endpoint gave), at most `Limit`. */
function page<T>(input: Input, items: readonly T[], keyOf: (item: T) => string, limits: {default: number; max: number}): {items: T[]; Truncated: boolean; NextMarker?: string} {
  const max = limits.max
  const limit = input.Limit ?? limits.default
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > max) throw new KmsApiError('ValidationException', `Limit must be an integer 1..${max}.`)
  const marker = str(input, 'Marker')
  let start = 0
  if (marker !== undefined) {
    const m = /^([A-Za-z0-9_-]{1,1400})\.([A-Za-z0-9_-]{22})$/.exec(marker)
    const after = m ? Buffer.from(m[1]!, 'base64url').toString('utf8') : ''
    const expected = Buffer.from(markerMac(after))
    if (!m || !timingSafeEqual(expected, Buffer.from(m[2]!))) throw new KmsApiError('InvalidMarkerException', 'The Marker is not one this endpoint gave.')
    start = items.findIndex((item) => keyOf(item) > after)
    if (start < 0) start = items.length
  }
  const out = items.slice(start, start + limit)
  const truncated = start + limit < items.length
  const last = truncated ? keyOf(out[out.length - 1]!) : ''
  return {items: out, Truncated: truncated, ...(truncated ? {NextMarker: `${Buffer.from(last).toString('base64url')}.${markerMac(last)}`} : {})}
}

type Tag = {TagKey: string; TagValue: string}

const MAX_TAGS = 50

function tagList(input: Input): Tag[] {
  const v = input.Tags
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) throw new KmsApiError('ValidationException', 'Tags must be a list of {TagKey, TagValue}.')
  return v.map((t: unknown) => {
    const tag = t as Partial<Tag> | null
    if (typeof tag !== 'object' || tag === null || typeof tag.TagKey !== 'string' || typeof tag.TagValue !== 'string') throw new KmsApiError('ValidationException', 'Each tag must be {TagKey, TagValue} with string values.')
    if (tag.TagKey.length < 1 || tag.TagKey.length > 128 || tag.TagValue.length > 256) throw new KmsApiError('TagException', 'A TagKey is 1..128 characters and a TagValue 0..256.')
    if (tag.TagKey.toLowerCase().startsWith('aws:')) throw new KmsApiError('TagException', 'Tag keys beginning with aws: are reserved for AWS.')
    return {TagKey: tag.TagKey, TagValue: tag.TagValue}
  })
}

/** `tags` with `more` set (a TagKey given again replaces its value), at most MAX_TAGS. */
function mergeTags(tags: readonly Tag[], more: readonly Tag[]): Tag[] {
  const out = tags.map((t) => ({...t}))
  for (const t of more) {
    const existing = out.find((o) => o.TagKey === t.TagKey)
    if (existing) existing.TagValue = t.TagValue
    else out.push({...t})
  }
  if (out.length > MAX_TAGS) throw new KmsApiError('LimitExceededException', `A key has at most ${MAX_TAGS} tags.`)
  return out
}

const DAY_S = 86_400

function defaultPolicy(accountId: string): string {
  return JSON.stringify(
    {Version: '2012-10-17', Id: 'key-default-1', Statement: [{Sid: 'Enable IAM User Permissions', Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${accountId}:root`}, Action: 'kms:*', Resource: '*'}]},
    null,
    2,
  )
}

/**
 * Why a Recipient was refused, in KMS's words: what is wrong with the attestation document or its
 * public key, never an nle error code (a KMS client shows this message as it is).
 */
export function recipientRefusal(code: string | undefined): string {
  const why: Record<string, string> = {
    ATTEST_COSE_MALFORMED: 'it is not a COSE_Sign1 attestation document',
    ATTEST_UNSUPPORTED_ALG: 'it is not signed with ECDSA P-384 (ES384)',
    ATTEST_PAYLOAD_INVALID: 'its payload is not a well-formed attestation document',
    ATTEST_CERT_MALFORMED: 'a certificate in it is malformed',
    ATTEST_ROOT_MISMATCH: 'its certificate chain does not lead to the trusted Nitro Enclaves root',
    ATTEST_CHAIN_BROKEN: 'its certificate chain is broken',
    ATTEST_CERT_CONSTRAINTS: 'a certificate in its chain may not issue certificates',
    ATTEST_LEAF_IS_CA: 'its signing certificate is a CA certificate',
    ATTEST_CERT_EXPIRED: 'a certificate in its chain has expired',
    ATTEST_CERT_NOT_YET_VALID: 'a certificate in its chain is not yet valid',
    ATTEST_BAD_SIGNATURE: 'its signature does not verify',
    ATTEST_PCR_MISSING: 'it lacks PCR0, PCR1 or PCR2',
    ATTEST_TOO_OLD: 'it is too old',
    ATTEST_FROM_FUTURE: 'its timestamp is in the future',
    CMS_BAD_KEY: 'its public key is not an RSA key of at least 2048 bits',
  }
  return `The attestation document in the Recipient parameter is not valid: ${(code !== undefined ? why[code] : undefined) ?? 'it could not be verified'}.`
}

interface VerifiedRecipient {
  publicKeyDer: Uint8Array
  keys: RequestContextKeys
}

export class LocalKms {
  constructor(private readonly env: OperationEnv) {}

  private get state(): LocalState {
    return this.env.state
  }

  private resolveKey(keyIdOrAlias: string): LocalKey {
    const s = this.state
    let id = keyIdOrAlias
    const aliasArn = /^arn:aws:kms:[^:]+:\d{12}:(alias\/.+)$/.exec(id)
    if (aliasArn) id = aliasArn[1]!
    if (id.startsWith('alias/')) {
      const target = s.aliases[id]
      if (!target) throw new KmsApiError('NotFoundException', `Alias ${keyIdOrAlias} is not found.`)
      id = target
    }
    const keyArn = /^arn:aws:kms:[^:]+:\d{12}:key\/(.+)$/.exec(id)
    if (keyArn) id = keyArn[1]!
    this.purgeDeleted()
    const key = s.keys[id]
    if (!key || (keyArn && key.arn !== keyIdOrAlias)) throw new KmsApiError('NotFoundException', `Key '${keyIdOrAlias}' does not exist`)
    return key
  }

  private policyOf(key: LocalKey): KeyPolicy {
    try {
      return parsePolicy(key.policy)
    } catch {
      throw new KmsApiError('KMSInternalException', 'The stored key policy is unreadable.', 500)
    }
  }

  private authorize(identity: LocalIdentity, action: string, key: LocalKey, keys: RequestContextKeys = {}): void {
    const decision = evaluatePolicy(this.policyOf(key), {principalArn: identity.arn, action: `kms:${action}`, resourceArn: key.arn, keys}, {accountRoot: 'grant'})
    if (decision.decision !== 'allow') {
      const why = decision.decision === 'deny' ? 'with an explicit deny in a resource-based policy' : 'because no resource-based policy allows the action'
      throw new KmsApiError('AccessDeniedException', `User: ${identity.arn} is not authorized to perform: kms:${action} on resource: ${key.arn} ${why}`)
    }
  }

  /** Keys whose deletion date has passed are gone, with their aliases (as on AWS, where it happens in the background). */
  private purgeDeleted(): void {
    const now = this.env.now() / 1000
    for (const [id, key] of Object.entries(this.state.keys)) {
      if (key.deletionDate === undefined || key.deletionDate > now) continue
      delete this.state.keys[id]
      for (const [alias, target] of Object.entries(this.state.aliases)) if (target === id) delete this.state.aliases[alias]
    }
  }

  /** Cryptographic operations need an enabled key. */
  private requireEnabled(key: LocalKey): void {
    this.requireNotPendingDeletion(key)
    if (!key.enabled) throw new KmsApiError('DisabledException', `${key.arn} is disabled.`)
  }

  private requireNotPendingDeletion(key: LocalKey): void {
    if (key.deletionDate !== undefined) throw new KmsApiError('KMSInvalidStateException', `${key.arn} is pending deletion.`)
  }

  /** Verify a Recipient's attestation document; its PCRs become condition keys, its public key the envelope's recipient. */
  private async recipient(input: Input): Promise<VerifiedRecipient | undefined> {
    const r = input.Recipient
    if (r === undefined || r === null) return undefined
    if (typeof r !== 'object' || Array.isArray(r)) throw new KmsApiError('ValidationException', 'Recipient must be an object.')
    const recipient = r as Input
    if (str(recipient, 'KeyEncryptionAlgorithm') !== 'RSAES_OAEP_SHA_256') throw new KmsApiError('ValidationException', 'Recipient.KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256.')
    const document = blob(recipient, 'AttestationDocument', true, 262_144)
    try {
      // The verifier requires expected PCRs (fail closed). Here the PCR gate is the key policy, so
      // the expectation is what the document claims; the verifier still checks structure, the chain
      // to the configured root, the COSE signature and the document's age.
      const claimed = inspectAttestation(document)
      const pcr = (i: number): string | undefined => {
        const v = claimed.pcrs.get(i)
        return v === undefined ? undefined : toHex(v)
      }
      const [p0, p1, p2, p8] = [pcr(0), pcr(1), pcr(2), pcr(8)]
      if (p0 === undefined || p1 === undefined || p2 === undefined) throw new KmsApiError('ValidationException', 'The attestation document has no PCR0, PCR1 or PCR2.')
      const root = typeof this.env.root === 'function' ? this.env.root() : this.env.root
      const verified = await verifyAttestation(document, {
        expectedPcrs: {PCR0: p0, PCR1: p1, PCR2: p2, ...(p8 !== undefined && p8.length === 96 ? {PCR8: p8} : {})},
        expectedNonce: null,
        maxAgeMs: this.env.maxAttestationAgeMs,
        at: this.env.now(),
        allowDebug: true,
        ...(root.name === 'insecure-dev-root' ? {insecureDevRoot: root} : {}),
      })
      if (verified.publicKey === null) throw new KmsApiError('ValidationException', 'The attestation document carries no public_key.')
      recipientPublicKey(verified.publicKey)
      return {publicKeyDer: verified.publicKey, keys: recipientContextKeys(verified.pcrs)}
    } catch (error) {
      if (error instanceof KmsApiError) throw error
      throw new KmsApiError('ValidationException', recipientRefusal(isNleError(error) ? error.code : undefined))
    }
  }

  private seal(key: LocalKey, plaintext: Buffer, ec: Record<string, string>): Buffer {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', Buffer.from(key.material, 'base64'), iv)
    cipher.setAAD(Buffer.from(`${key.arn}\u0000${canonicalContext(ec)}`))
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()])
    const id = Buffer.from(key.keyId)
    return Buffer.concat([MAGIC, Buffer.from([id.length]), id, iv, cipher.getAuthTag(), ct])
  }

  private keyOfBlob(ciphertext: Buffer): LocalKey {
    if (ciphertext.length < 5 + 36 + 28 || !ciphertext.subarray(0, 4).equals(MAGIC)) throw new KmsApiError('InvalidCiphertextException', 'The ciphertext is not a blob of this endpoint.')
    const idLength = ciphertext[4]!
    const key = this.state.keys[ciphertext.subarray(5, 5 + idLength).toString()]
    if (!key) throw new KmsApiError('InvalidCiphertextException', 'The ciphertext refers to a key this endpoint does not have.')
    return key
  }

  private open(key: LocalKey, ciphertext: Buffer, ec: Record<string, string>): Buffer {
    const offset = 5 + ciphertext[4]!
    const iv = ciphertext.subarray(offset, offset + 12)
    const tag = ciphertext.subarray(offset + 12, offset + 28)
    try {
      const decipher = createDecipheriv('aes-256-gcm', Buffer.from(key.material, 'base64'), iv)
      decipher.setAAD(Buffer.from(`${key.arn}\u0000${canonicalContext(ec)}`))
      decipher.setAuthTag(tag)
      return Buffer.concat([decipher.update(ciphertext.subarray(offset + 28)), decipher.final()])
    } catch {
      throw new KmsApiError('InvalidCiphertextException', 'The ciphertext or its encryption context is not the one this key produced.')
    }
  }

  /** The plaintext answer: in clear, or only inside CiphertextForRecipient when a Recipient was given. */
  private deliver(plaintext: Buffer, recipient: VerifiedRecipient | undefined): Output {
    if (!recipient) return {Plaintext: plaintext.toString('base64')}
    const envelope = buildEnvelope(plaintext, recipient.publicKeyDer)
    plaintext.fill(0)
    return {CiphertextForRecipient: Buffer.from(envelope).toString('base64')}
  }

  private validatePolicyText(text: string, identity: LocalIdentity, bypass: boolean): void {
    if (Buffer.byteLength(text) > 32 * 1024) throw new KmsApiError('LimitExceededException', 'The key policy is larger than 32 KB.')
    let policy: KeyPolicy
    try {
      policy = parsePolicy(text)
    } catch (error) {
      throw new KmsApiError('MalformedPolicyDocumentException', isNleError(error) ? error.message : 'The policy is malformed.')
    }
    if (!bypass && !canPutKeyPolicy(policy, identity.arn)) {
      throw new KmsApiError('MalformedPolicyDocumentException', 'The new key policy will not allow you to update the key policy in the future.')
    }
  }

  async handle(operation: string, input: Input, identity: LocalIdentity): Promise<Output> {
    switch (operation) {
      case 'CreateKey': {
        const spec = str(input, 'KeySpec') ?? str(input, 'CustomerMasterKeySpec') ?? 'SYMMETRIC_DEFAULT'
        const usage = str(input, 'KeyUsage') ?? 'ENCRYPT_DECRYPT'
        if (spec !== 'SYMMETRIC_DEFAULT' || usage !== 'ENCRYPT_DECRYPT') {
          throw new KmsApiError('UnsupportedOperationException', `The local endpoint makes only symmetric encryption keys (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT), not KeySpec ${spec} with KeyUsage ${usage}.`)
        }
        const origin = str(input, 'Origin') ?? 'AWS_KMS'
        if (origin !== 'AWS_KMS' || input.MultiRegion === true || input.XksKeyId !== undefined || input.CustomKeyStoreId !== undefined) {
          throw new KmsApiError('UnsupportedOperationException', 'The local endpoint makes only single-region keys with Origin AWS_KMS (no imported, custom key store or multi-Region keys).')
        }
        const policy = str(input, 'Policy') ?? defaultPolicy(this.state.accountId)
        this.validatePolicyText(policy, identity, input.BypassPolicyLockoutSafetyCheck === true)
        const tags = mergeTags([], tagList(input))
        const key = newKey(this.state, policy, str(input, 'Description') ?? '', this.env.now())
        if (tags.length > 0) key.tags = tags
        this.state.keys[key.keyId] = key
        await this.env.save()
        return {KeyMetadata: keyMetadata(this.state, key)}
      }
      case 'DescribeKey': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        this.authorize(identity, 'DescribeKey', key)
        return {KeyMetadata: keyMetadata(this.state, key)}
      }
      case 'CreateAlias': {
        const name = str(input, 'AliasName', true)
        if (!/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(name) || name.startsWith('alias/aws/')) throw new KmsApiError('ValidationException', `Alias ${name} must be alias/<name> and not alias/aws/…`)
        const key = this.resolveKey(str(input, 'TargetKeyId', true))
        this.authorize(identity, 'CreateAlias', key)
        if (this.state.aliases[name]) throw new KmsApiError('AlreadyExistsException', `An alias with the name ${name} already exists`)
        this.state.aliases[name] = key.keyId
        await this.env.save()
        return {}
      }
      case 'ListAliases': {
        const only = str(input, 'KeyId')
        const target = only === undefined ? undefined : this.resolveKey(only).keyId
        this.purgeDeleted()
        const aliases = Object.entries(this.state.aliases)
          .filter(([, keyId]) => target === undefined || keyId === target)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([AliasName, TargetKeyId]) => ({AliasName, AliasArn: `arn:aws:kms:${this.state.region}:${this.state.accountId}:${AliasName}`, TargetKeyId}))
        const {items, ...rest} = page(input, aliases, (a) => a.AliasName, {default: 50, max: 100})
        return {Aliases: items, ...rest}
      }
      case 'ListKeys': {
        // IAM governs ListKeys on AWS (it names no key); there is no IAM here, so any known identity may.
        this.purgeDeleted()
        const keys = Object.values(this.state.keys)
          .map((k) => ({KeyId: k.keyId, KeyArn: k.arn}))
          .sort((a, b) => (a.KeyId < b.KeyId ? -1 : a.KeyId > b.KeyId ? 1 : 0))
        const {items, ...rest} = page(input, keys, (k) => k.KeyId, {default: 100, max: 1000})
        return {Keys: items, ...rest}
      }
      case 'UpdateAlias': {
        const name = str(input, 'AliasName', true)
        const current = this.state.aliases[name]
        if (current === undefined || !this.state.keys[current]) throw new KmsApiError('NotFoundException', `Alias ${name} is not found.`)
        const from = this.resolveKey(current)
        const to = this.resolveKey(str(input, 'TargetKeyId', true))
        // AWS asks for kms:UpdateAlias on both the key the alias leaves and the one it comes to.
        this.authorize(identity, 'UpdateAlias', from)
        this.authorize(identity, 'UpdateAlias', to)
        this.requireNotPendingDeletion(to)
        this.state.aliases[name] = to.keyId
        await this.env.save()
        return {}
      }
      case 'DeleteAlias': {
        const name = str(input, 'AliasName', true)
        const current = this.state.aliases[name]
        if (current === undefined) throw new KmsApiError('NotFoundException', `Alias ${name} is not found.`)
        const key = this.resolveKey(current)
        this.authorize(identity, 'DeleteAlias', key)
        delete this.state.aliases[name]
        await this.env.save()
        return {}
      }
      case 'EnableKey':
      case 'DisableKey': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        this.authorize(identity, operation, key)
        this.requireNotPendingDeletion(key)
        key.enabled = operation === 'EnableKey'
        await this.env.save()
        return {}
      }
      case 'ScheduleKeyDeletion': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        const days = input.PendingWindowInDays ?? 30
        if (typeof days !== 'number' || !Number.isInteger(days) || days < 7 || days > 30) throw new KmsApiError('ValidationException', 'PendingWindowInDays must be an integer 7..30.')
        this.authorize(identity, 'ScheduleKeyDeletion', key)
        this.requireNotPendingDeletion(key)
        key.deletionDate = Math.floor(this.env.now() / 1000) + days * DAY_S
        key.pendingWindowInDays = days
        key.enabled = false
        await this.env.save()
        return {KeyId: key.arn, DeletionDate: key.deletionDate, KeyState: 'PendingDeletion', PendingWindowInDays: days}
      }
      case 'CancelKeyDeletion': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        this.authorize(identity, 'CancelKeyDeletion', key)
        if (key.deletionDate === undefined) throw new KmsApiError('KMSInvalidStateException', `${key.arn} is not pending deletion.`)
        // As on AWS, a key whose deletion is cancelled comes back disabled.
        delete key.deletionDate
        delete key.pendingWindowInDays
        key.enabled = false
        await this.env.save()
        return {KeyId: key.arn}
      }
      case 'TagResource': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        const tags = tagList(input)
        if (tags.length === 0) throw new KmsApiError('ValidationException', 'Tags must name at least one tag.')
        this.authorize(identity, 'TagResource', key)
        this.requireNotPendingDeletion(key)
        key.tags = mergeTags(key.tags ?? [], tags)
        await this.env.save()
        return {}
      }
      case 'UntagResource': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        const names = input.TagKeys
        if (!Array.isArray(names) || names.length === 0 || names.some((n) => typeof n !== 'string')) throw new KmsApiError('ValidationException', 'TagKeys must be a non-empty list of strings.')
        this.authorize(identity, 'UntagResource', key)
        this.requireNotPendingDeletion(key)
        key.tags = (key.tags ?? []).filter((t) => !names.includes(t.TagKey))
        if (key.tags.length === 0) delete key.tags
        await this.env.save()
        return {}
      }
      case 'ListResourceTags': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        this.authorize(identity, 'ListResourceTags', key)
        const tags = [...(key.tags ?? [])].sort((a, b) => (a.TagKey < b.TagKey ? -1 : a.TagKey > b.TagKey ? 1 : 0))
        const {items, ...rest} = page(input, tags, (t) => t.TagKey, {default: 50, max: 50})
        return {Tags: items, ...rest}
      }
      case 'ListKeyPolicies': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        this.authorize(identity, 'ListKeyPolicies', key)
        return {PolicyNames: ['default'], Truncated: false}
      }
      case 'ListGrants': {
        // The local endpoint has no CreateGrant, so no key ever has a grant.
        const key = this.resolveKey(str(input, 'KeyId', true))
        this.authorize(identity, 'ListGrants', key)
        return {Grants: [], Truncated: false}
      }
      case 'GetKeyPolicy': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        if ((str(input, 'PolicyName') ?? 'default') !== 'default') throw new KmsApiError('NotFoundException', 'Only the policy named "default" exists.')
        this.authorize(identity, 'GetKeyPolicy', key)
        return {Policy: key.policy, PolicyName: 'default'}
      }
      case 'PutKeyPolicy': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        if ((str(input, 'PolicyName') ?? 'default') !== 'default') throw new KmsApiError('ValidationException', 'PolicyName must be "default".')
        this.authorize(identity, 'PutKeyPolicy', key)
        const text = str(input, 'Policy', true)
        this.validatePolicyText(text, identity, input.BypassPolicyLockoutSafetyCheck === true)
        key.policy = text
        await this.env.save()
        return {}
      }
      case 'Encrypt': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        const plaintext = blob(input, 'Plaintext', true, 4096)
        const ec = encryptionContext(input)
        this.authorize(identity, 'Encrypt', key, contextKeys(ec))
        this.requireEnabled(key)
        return {CiphertextBlob: this.seal(key, plaintext, ec).toString('base64'), KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT'}
      }
      case 'Decrypt': {
        const ciphertext = blob(input, 'CiphertextBlob', true)
        const key = this.keyOfBlob(ciphertext)
        const named = str(input, 'KeyId')
        if (named !== undefined && this.resolveKey(named).keyId !== key.keyId) throw new KmsApiError('IncorrectKeyException', 'The key ID in the request does not identify the key that encrypted the ciphertext.')
        const algorithm = str(input, 'EncryptionAlgorithm') ?? 'SYMMETRIC_DEFAULT'
        if (algorithm !== 'SYMMETRIC_DEFAULT') throw new KmsApiError('InvalidKeyUsageException', `${algorithm} is not valid for this key.`)
        const ec = encryptionContext(input)
        const recipient = await this.recipient(input)
        this.authorize(identity, 'Decrypt', key, {...contextKeys(ec), ...recipient?.keys})
        this.requireEnabled(key)
        const plaintext = this.open(key, ciphertext, ec)
        return {KeyId: key.arn, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT', ...this.deliver(plaintext, recipient)}
      }
      case 'GenerateDataKey': {
        const key = this.resolveKey(str(input, 'KeyId', true))
        const bytes = dataKeyBytes(input)
        const ec = encryptionContext(input)
        const recipient = await this.recipient(input)
        this.authorize(identity, 'GenerateDataKey', key, {...contextKeys(ec), ...recipient?.keys})
        this.requireEnabled(key)
        const plaintext = randomBytes(bytes)
        const ciphertext = this.seal(key, plaintext, ec)
        return {CiphertextBlob: ciphertext.toString('base64'), KeyId: key.arn, ...this.deliver(plaintext, recipient)}
      }
      case 'GenerateDataKeyWithoutPlaintext': {
        if (input.Recipient !== undefined) throw new KmsApiError('ValidationException', 'GenerateDataKeyWithoutPlaintext takes no Recipient parameter.')
        const key = this.resolveKey(str(input, 'KeyId', true))
        const bytes = dataKeyBytes(input)
        const ec = encryptionContext(input)
        this.authorize(identity, 'GenerateDataKeyWithoutPlaintext', key, contextKeys(ec))
        this.requireEnabled(key)
        const plaintext = randomBytes(bytes)
        const ciphertext = this.seal(key, plaintext, ec)
        plaintext.fill(0)
        return {CiphertextBlob: ciphertext.toString('base64'), KeyId: key.arn}
      }
      case 'ReEncrypt': {
        // Two key-policy decisions: kms:ReEncryptFrom on the source key and kms:ReEncryptTo on the
        // destination. A ReEncrypt carries no Recipient, so a statement conditioned on
        // kms:RecipientAttestation:* never allows it: ciphertext a policy releases only to an
        // attested enclave cannot be moved to a key with a looser policy.
        const ciphertext = blob(input, 'CiphertextBlob', true)
        const source = this.keyOfBlob(ciphertext)
        const named = str(input, 'SourceKeyId')
        if (named !== undefined && this.resolveKey(named).keyId !== source.keyId) throw new KmsApiError('IncorrectKeyException', 'The SourceKeyId does not identify the key that encrypted the ciphertext.')
        for (const name of ['SourceEncryptionAlgorithm', 'DestinationEncryptionAlgorithm']) {
          const algorithm = str(input, name) ?? 'SYMMETRIC_DEFAULT'
          if (algorithm !== 'SYMMETRIC_DEFAULT') throw new KmsApiError('InvalidKeyUsageException', `${name} ${algorithm} is not valid for this key.`)
        }
        if (input.Recipient !== undefined) throw new KmsApiError('ValidationException', 'ReEncrypt takes no Recipient parameter.')
        const destination = this.resolveKey(str(input, 'DestinationKeyId', true))
        const sourceEc = encryptionContext(input, 'SourceEncryptionContext')
        const destinationEc = encryptionContext(input, 'DestinationEncryptionContext')
        this.authorize(identity, 'ReEncryptFrom', source, contextKeys(sourceEc))
        this.authorize(identity, 'ReEncryptTo', destination, contextKeys(destinationEc))
        this.requireEnabled(source)
        this.requireEnabled(destination)
        const plaintext = this.open(source, ciphertext, sourceEc)
        const sealed = this.seal(destination, plaintext, destinationEc)
        plaintext.fill(0)
        return {CiphertextBlob: sealed.toString('base64'), SourceKeyId: source.arn, KeyId: destination.arn, SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT', DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT'}
      }
      case 'GenerateRandom': {
        const n = input.NumberOfBytes
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1024) throw new KmsApiError('ValidationException', 'NumberOfBytes must be 1..1024.')
        // Not a key operation: no key policy applies (IAM governs it on AWS; there is no IAM here).
        const recipient = await this.recipient(input)
        return this.deliver(randomBytes(n), recipient)
      }
      default:
        throw new KmsApiError('UnknownOperationException', `The local endpoint does not implement ${operation}.`)
    }
  }
}
