// cluso-ws, drop-in: the app's wiring unchanged (SPEC A) — sockets from the
// `ws` package handed to manager.handleConnection(ws, cwd); only the import
// differs from the baseline.
import http from 'node:http'
import { createRequire } from 'node:module'
import { WebSocketServer } from 'ws'
import { serve } from './common.mjs'
import { WebSocketManager, nativeQueued, nativeBacklog, clusoStats, versions } from './cluso-common.mjs'

const require = createRequire(import.meta.url)
const server = http.createServer((req, res) => res.end('ok'))
const wss = new WebSocketServer({ server })
const manager = new WebSocketManager(wss)
wss.on('connection', (ws) => manager.handleConnection(ws, process.cwd()))
await new Promise((r) => server.listen(0, '127.0.0.1', r))

serve({
  name: 'cluso-dropin',
  url: `ws://127.0.0.1:${server.address().port}/ws`,
  versions: { ...versions(), ws: require('ws/package.json').version },
  broadcast: (channel, data) => manager.broadcast(channel, data),
  queuedBytes() {
    let max = nativeQueued(manager)
    for (const ws of wss.clients) if (ws.bufferedAmount > max) max = ws.bufferedAmount
    return max
  },
  backlogBytes() {
    let max = nativeBacklog(manager)
    for (const ws of wss.clients) if (ws.bufferedAmount > max) max = ws.bufferedAmount
    return max
  },
  stats: () => clusoStats(manager),
  connections: () => wss.clients.size,
  close: () => { manager.shutdown(); server.close() },
})
