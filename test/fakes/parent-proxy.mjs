// Stand-in for runtime/parent-proxy (not written yet), started by `nle run` when NLE_PARENT_PROXY
// points here: records its argv and listens on 127.0.0.1:$FAKE_PROXY_PORT until SIGTERM.
import {createServer} from 'node:http'

import {record} from './lib.mjs'

record('parent-proxy')
const server = createServer((_req, res) => res.end('ok'))
server.listen(Number(process.env.FAKE_PROXY_PORT), '127.0.0.1')
process.on('SIGTERM', () => {
  server.close()
  process.exit(0)
})
