export {type ChannelError, type ChannelErrorCode, channelError} from './errors.js'
export {type KeyConfig, KEY_CONFIG_BYTES, PROTOCOL_VERSION, decodeKeyConfig, encodeKeyConfig} from './suite.js'
export {type OpenedRequest, type PreparedSeal, type SealedRequest, REQUEST_PAD_BLOCK, parseSealedRequest, prepareSeal, sealRequest} from './request.js'
export {
  CHUNK_PAD_BLOCK,
  WHOLE_PAD_BLOCK,
  RESPONSE_NONCE_BYTES,
  type OpenedChunk,
  ResponseOpener,
  type ResponseKeys,
  ResponseSealer,
  openWholeResponse,
  sealWholeResponse,
} from './response.js'
export {type KeyRingOptions, type KeyRingStats, ServerKeyRing} from './keyring.js'
export {pad, padToBucket, unpad} from './bytes.js'

/** Media types of sealed bodies on the wire. */
