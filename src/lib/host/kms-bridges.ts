/**
 * KMS mode on a real host: the two vsock paths out of the enclave, and where each end is made.
 *
 *   KMS:          enclave server → /run/nle/kms.sock → socat → vsock 3:<kms.vsockPort>
 *                 → parent `vsock-proxy <kms.vsockPort> kms.<region>.amazonaws.com 443` → KMS
 *                 (TLS from the SDK in the enclave to KMS: the parent relays ciphertext only)
 *   credentials:  enclave server → /run/nle/credentials.sock → socat → vsock 3:<kms.credentialsVsockPort>
 *                 → parent `socat VSOCK-LISTEN:<port> UNIX-CONNECT:<proxy credentials socket>`
 *                 → the parent proxy's GET /v1/credentials (the host role, from IMDSv2)
 *
 * The enclave ends are started by the image's start.sh from nle.runtime.json's kms block (written
 * by `nle build`); the parent ends by `nle run` (managed processes, or the systemd units
 * templates/parent/nle-kms-vsock-proxy.service and nle-credentials-bridge.service).
 * KMS mode is on when nle.yaml names the key: kms.keyId and kms.region.
 */
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {NleConfig} from '../config/schema.js'
import {TEMPLATES_DIR} from '../paths.js'
import {renderTemplate} from '../template.js'

/** The parent's vsock CID, as seen from an enclave. */
export const PARENT_CID = 3
/** The enclave ends of the two paths (nle.runtime.json kms.via / kms.credentialsSocket). */
export const ENCLAVE_KMS_SOCKET = '/run/nle/kms.sock'
export const ENCLAVE_CREDENTIALS_SOCKET = '/run/nle/credentials.sock'
/** A sealed model's path in: the enclave end of the weights server's vsock bridge (model.weightsVsockPort). */
export const ENCLAVE_WEIGHTS_SOCKET = '/run/nle/weights.sock'
export const KMS_PROXY_UNIT = 'nle-kms-vsock-proxy.service' as const
export const CREDENTIALS_BRIDGE_UNIT = 'nle-credentials-bridge.service' as const
/** vsock-proxy connects only to endpoints allowed here (the package's default lists KMS in every region). */
export const VSOCK_PROXY_CONFIG = '/etc/nitro_enclaves/vsock-proxy.yaml'

export interface KmsMode {
  region: string
  keyId: string
  kmsVsockPort: number
  credentialsVsockPort: number
}

/** KMS mode's settings, or undefined when nle.yaml names no key (kms.keyId and kms.region). */
export function kmsMode(config: NleConfig): KmsMode | undefined {
  const {keyId, region, vsockPort, credentialsVsockPort} = config.kms
  if (keyId === undefined || region === undefined) return undefined
  return {region, keyId, kmsVsockPort: vsockPort, credentialsVsockPort}
}

export function kmsHost(region: string): string {
  return `kms.${region}.amazonaws.com`
}

/** nle.runtime.json's kms block (src/lib/server/main.ts runtimeConfigSchema) for an enclave image. */
export function runtimeKmsBlock(mode: KmsMode): {region: string; keyId: string; via: string; credentialsSocket: string; vsock: {kmsPort: number; credentialsPort: number}} {
  return {
    region: mode.region,
    keyId: mode.keyId,
    via: ENCLAVE_KMS_SOCKET,
    credentialsSocket: ENCLAVE_CREDENTIALS_SOCKET,
    vsock: {kmsPort: mode.kmsVsockPort, credentialsPort: mode.credentialsVsockPort},
  }
}

/** vsock-proxy's argv: the same as nle-kms-vsock-proxy.service's. */
export function vsockProxyArgs(mode: KmsMode): string[] {
  return [String(mode.kmsVsockPort), kmsHost(mode.region), '443', '--config', VSOCK_PROXY_CONFIG]
}

/** socat's argv for the parent end of the credentials path: the same as nle-credentials-bridge.service's. */
export function credentialsBridgeArgs(vsockPort: number, socketPath: string): string[] {
  return [`VSOCK-LISTEN:${vsockPort},fork,reuseaddr`, `UNIX-CONNECT:${socketPath}`]
}

/** The parent proxy's credentials socket under systemd: proxy.credentials.socket, else /run/nle/<name>-credentials.sock. */
export function systemdCredentialsSocket(config: NleConfig): string {
  return config.proxy.credentials?.socket ?? `/run/nle/${config.name}-credentials.sock`
}

/**
 * A KMS-mode unit's text: the project's parent/<unit> when the user keeps one there, else nle's
 * template filled from nle.yaml now (the region and ports are usually set after `nle init`).
 */
export async function kmsUnitText(unit: typeof KMS_PROXY_UNIT | typeof CREDENTIALS_BRIDGE_UNIT, config: NleConfig, mode: KmsMode, parentDir: string): Promise<{text: string; from: 'project' | 'template'}> {
  const own = join(parentDir, unit)
  if (existsSync(own)) return {text: await readFile(own, 'utf8'), from: 'project'}
  const template = join('parent', unit)
  const values = {
    name: config.name,
    region: mode.region,
    kmsHost: kmsHost(mode.region),
    kmsVsockPort: mode.kmsVsockPort,
    credentialsVsockPort: mode.credentialsVsockPort,
    credentialsSocket: systemdCredentialsSocket(config),
    vsockProxyConfig: VSOCK_PROXY_CONFIG,
  }
  return {text: renderTemplate(await readFile(join(TEMPLATES_DIR, template), 'utf8'), values, template), from: 'template'}
}
