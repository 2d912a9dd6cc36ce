export {CHAT_PATH, type ChatRequest, NleClient, type NleClientOptions} from './client.js'
export {type ClientErrorCode, clientError} from './errors.js'
export {type TlsOptions, parseTarget} from './transport.js'
export type {ChatCompletion, ChatCompletionChunk} from '../server/chat.js'
