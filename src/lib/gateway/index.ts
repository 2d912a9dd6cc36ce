export {type AccessLogEntry, type AttestationState, Gateway, type GatewayEvent, type GatewayOptions, type GatewayUpstream, ROUTES, modelIdFromLockfile, startGateway} from './gateway.js'
export {type GatewayErrorCode, type HttpFailure, STATUS, gatewayError, toHttpFailure} from './errors.js'
export {DEFAULT_LISTEN, isLoopbackHost, listenUrl, parseListen} from './listen.js'
export {DEFAULT_TOKEN_FILE, type GatewayToken, TOKEN_ENV, gatewayToken} from './token.js'
