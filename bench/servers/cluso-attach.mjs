// cluso-ws, attach: the app's own http.Server keeps its port; upgrades on
// /ws are handed to Rust (manager.attach) and owned by the native core.
import http from 'node:http'
import { serve } from './common.mjs'
import { WebSocketManager, nativeQueued, nativeBacklog, clusoStats, versions } from './cluso-common.mjs'

const server = http.createServer((req, res) => res.end('ok'))
const manager = new WebSocketManager(undefined, {})
manager.attach(server, { path: '/ws', cwd: process.cwd() })
await new Promise((r) => server.listen(0, '127.0.0.1', r))

serve({
  name: 'cluso-attach',
  url: `ws://127.0.0.1:${server.address().port}/ws`,
  versions: versions(),
  broadcast: (channel, data) => manager.broadcast(channel, data),
  queuedBytes: () => nativeQueued(manager),
  backlogBytes: () => nativeBacklog(manager),
  stats: () => clusoStats(manager),
  connections: () => manager.getStats().connections,
  close: () => { manager.shutdown(); server.close() },
})
