export * from './chat.js'
export * from './routes.js'
export * from './sse.js'
export * from './sse-reader.js'
