// Baseline: the original Cluso WebSocketManager algorithm (SPEC A.1/A.2,
// original-manager.mjs) on the `ws` package.
import http from 'node:http'
import { createRequire } from 'node:module'
import { WebSocketServer } from 'ws'
import { serve } from './common.mjs'
import { OriginalManager } from './original-manager.mjs'

const require = createRequire(import.meta.url)

const server = http.createServer((req, res) => res.end('ok'))
const wss = new WebSocketServer({ server })
const manager = new OriginalManager(wss)
wss.on('connection', (ws) => manager.handleConnection(ws, process.cwd()))
await new Promise((r) => server.listen(0, '127.0.0.1', r))

serve({
  name: 'baseline-ws',
  url: `ws://127.0.0.1:${server.address().port}/ws`,
  versions: { ws: require('ws/package.json').version },
  broadcast: (channel, data) => manager.broadcast(channel, data),
  queuedBytes() {
    let max = 0
    for (const ws of wss.clients) if (ws.bufferedAmount > max) max = ws.bufferedAmount
    return max
  },
  connections: () => manager.connections.size,
  close: () => { manager.shutdown(); server.close() },
})
