// A small server wired exactly like the original Cluso app.ts, with cluso-ws in place of
// the TypeScript module. It watches the current directory and broadcasts file changes.
//
//   node examples/server.mjs            drop-in: ws package sockets handed to the manager
//   node examples/server.mjs --native   the same server, upgrades owned by the native core
//
// Then connect: websocat ws://127.0.0.1:3000/ws  and send {"type":"subscribe","channel":"files"}
import { watch } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import { WebSocketServer } from 'ws'

const require = createRequire(import.meta.url)
const { WebSocketManager, EventBroadcaster } = require('../index.js')

const native = process.argv.includes('--native')
const port = Number(process.env.PORT ?? 3000)
const cwd = process.cwd()

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ ok: true, websocket: `ws://127.0.0.1:${port}/ws`, stats: wsManager.getStats() }))
})

let wsManager
if (native) {
  wsManager = new WebSocketManager()
  wsManager.attach(server, { path: '/ws', cwd })
} else {
  const wss = new WebSocketServer({ server, path: '/ws' })
  wsManager = new WebSocketManager(wss)
  wss.on('connection', (ws) => wsManager.handleConnection(ws, cwd))
}
const broadcaster = new EventBroadcaster(wsManager)

const watcher = watch(cwd, { recursive: true }, (eventType, file) => {
  if (file && !file.startsWith('node_modules') && !file.startsWith('target') && !file.startsWith('.git')) {
    broadcaster.fileChanged(file, eventType === 'rename' ? 'add' : 'change')
  }
})

server.listen(port, '127.0.0.1', () => {
  console.log(`cluso-ws demo (${native ? 'native attach' : 'drop-in'}) serving ${cwd}`)
  console.log(`connect to ws://127.0.0.1:${port}/ws — stats at http://127.0.0.1:${port}/`)
})

function stop() {
  watcher.close()
  wsManager.shutdown()
  server.close()
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
