export * from './chat.js'
export * from './routes.js'
