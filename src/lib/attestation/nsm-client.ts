/**
 * One interface to the Nitro Secure Module, whoever answers: the real device (/dev/nsm, see
 * ./nsm-device.ts) or the simulator (./simulator.ts). Both speak the same CBOR messages
 * (./nsm-protocol.ts); this base class turns typed calls into those messages and back.
 */

import {attestError} from './errors.js'
import {
  NSM_MAX_USER_FIELD,
  NSM_REQUEST_MAX_SIZE,
  type NsmDescription,
  NsmProtocolViolation,
  type NsmRequest,
  type NsmResponse,
  decodeNsmResponse,
  encodeNsmRequest,
} from './nsm-protocol.js'

export interface AttestationRequest {
  userData?: Uint8Array | null
  nonce?: Uint8Array | null
  publicKey?: Uint8Array | null
}

export interface NsmClient {
  describeNsm(): Promise<NsmDescription>
  describePcr(index: number): Promise<{lock: boolean; data: Uint8Array}>
  /** Extend PCR `index` with `data`; resolves with the new value. */
  extendPcr(index: number, data: Uint8Array): Promise<Uint8Array>
  lockPcr(index: number): Promise<void>
  /** Lock PCRs [0, range). */
  lockPcrs(range: number): Promise<void>
  /** Entropy from the NSM (up to 256 bytes per call). */
  getRandom(): Promise<Uint8Array>
  /** A signed attestation document (COSE_Sign1 bytes). */
  attestation(request?: AttestationRequest): Promise<Uint8Array>
  close(): Promise<void>
}

type Of<T extends NsmResponse['type']> = Extract<NsmResponse, {type: T}>

/** Implements NsmClient over a byte exchange: encode the request, exchange, decode the response. */
export abstract class CborNsmClient implements NsmClient {
  /** Send one encoded request; resolve with the encoded response. */
  protected abstract exchange(request: Uint8Array): Promise<Uint8Array>
  abstract close(): Promise<void>

  /** Send a request and return the raw decoded response (Error responses included). */
  async send(request: NsmRequest): Promise<NsmResponse> {
    const bytes = encodeNsmRequest(request)
    if (bytes.length > NSM_REQUEST_MAX_SIZE) {
      throw attestError('ATTEST_NSM_BAD_REQUEST', `The NSM request is ${bytes.length} bytes; the device accepts at most ${NSM_REQUEST_MAX_SIZE}.`, {details: {nsmError: 'InputTooLarge'}})
    }
    const answer = await this.exchange(bytes)
    try {
      return decodeNsmResponse(answer)
    } catch (error) {
      if (error instanceof NsmProtocolViolation) {
        throw attestError('ATTEST_NSM_BAD_RESPONSE', `The NSM answered with a message the protocol does not define: ${error.message}`, {cause: error})
      }
      throw error
    }
  }

  private async call<T extends NsmResponse['type']>(request: NsmRequest, expect: T): Promise<Of<T>> {
    const response = await this.send(request)
    if (response.type === 'Error') {
      throw attestError('ATTEST_NSM_ERROR', `The NSM refused ${request.type}: ${response.error}.`, {
        details: {request: request.type, nsmError: response.error},
      })
    }
    if (response.type !== expect) {
      throw attestError('ATTEST_NSM_BAD_RESPONSE', `The NSM answered ${request.type} with ${response.type}.`)
    }
    return response as Of<T>
  }

  async describeNsm(): Promise<NsmDescription> {
    const {type: _type, ...description} = await this.call({type: 'DescribeNSM'}, 'DescribeNSM')
    return description
  }

  async describePcr(index: number): Promise<{lock: boolean; data: Uint8Array}> {
    const r = await this.call({type: 'DescribePCR', index}, 'DescribePCR')
    return {lock: r.lock, data: r.data}
  }

  async extendPcr(index: number, data: Uint8Array): Promise<Uint8Array> {
    return (await this.call({type: 'ExtendPCR', index, data}, 'ExtendPCR')).data
  }

  async lockPcr(index: number): Promise<void> {
    await this.call({type: 'LockPCR', index}, 'LockPCR')
  }

  async lockPcrs(range: number): Promise<void> {
    await this.call({type: 'LockPCRs', range}, 'LockPCRs')
  }

  async getRandom(): Promise<Uint8Array> {
    return (await this.call({type: 'GetRandom'}, 'GetRandom')).random
  }

  async attestation(request: AttestationRequest = {}): Promise<Uint8Array> {
    const fields = {userData: request.userData ?? null, nonce: request.nonce ?? null, publicKey: request.publicKey ?? null}
    for (const [name, value] of Object.entries(fields)) {
      if (value !== null && value.length > NSM_MAX_USER_FIELD) {
        throw attestError('ATTEST_NSM_BAD_REQUEST', `Attestation ${name} is ${value.length} bytes; the NSM attests at most ${NSM_MAX_USER_FIELD}.`)
      }
    }
    return (await this.call({type: 'Attestation', ...fields}, 'Attestation')).document
  }
}
