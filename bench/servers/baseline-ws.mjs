// Baseline: the original Cluso WebSocketManager algorithm (SPEC A.1/A.2) on
// the `ws` package, rewritten faithfully: a Map of connection records each
// with a channels Set; broadcast = JSON.stringify the envelope once, loop over
// ALL connections, ws.send to the subscribed ones whose readyState is 1.
import http from 'node:http'
import { createRequire } from 'node:module'
import { WebSocketServer } from 'ws'
import { serve, connId } from './common.mjs'

const require = createRequire(import.meta.url)

// The original logs through a logger; per-broadcast logging is silenced here
// (BENCH_LOG=1 prints it to stderr), which can only make the baseline faster.
const log = process.env.BENCH_LOG
  ? { info: (...a) => console.error(...a), warn: (...a) => console.error(...a), error: (...a) => console.error(...a) }
  : { info() {}, warn() {}, error() {} }

class WebSocketManager {
  constructor(wss) {
    this.wss = wss
    this.connections = new Map()
    this.healthCheckInterval = null
    this.startHealthCheck()
  }

  addConnection(ws, id) {
    const connection = { ws, id, channels: new Set(), isAlive: true }
    this.connections.set(id, connection)
    ws.on('pong', () => { connection.isAlive = true })
    ws.on('close', () => this.removeConnection(id))
    ws.on('error', (error) => log.error(`WebSocket error for ${id}:`, error))
  }

  removeConnection(id) {
    const connection = this.connections.get(id)
    if (!connection) return
    if (connection.ws.readyState === 1) {
      try { connection.ws.close() } catch (e) { log.error(e) }
    }
    this.connections.delete(id)
  }

  subscribe(id, channel) {
    const c = this.connections.get(id)
    if (c) c.channels.add(channel)
  }

  unsubscribe(id, channel) {
    const c = this.connections.get(id)
    if (c) c.channels.delete(channel)
  }

  broadcast(channel, data) {
    const message = JSON.stringify({ type: 'event', channel, data, timestamp: new Date().toISOString() })
    let success = 0
    let failed = 0
    for (const [, connection] of this.connections) {
      if (connection.channels.has(channel)) {
        if (connection.ws.readyState === 1) {
          try {
            connection.ws.send(message)
            success++
          } catch (e) {
            failed++
          }
        } else {
          failed++
        }
      }
    }
    log.info(`Broadcast to ${channel}: ${success} success, ${failed} failed`)
  }

  send(id, data) {
    const c = this.connections.get(id)
    if (!c || c.ws.readyState !== 1) {
      log.warn(`Cannot send to ${id}`)
      return
    }
    c.ws.send(JSON.stringify(data))
  }

  handleConnection(ws, cwd) {
    const id = connId()
    this.addConnection(ws, id)
    this.send(id, { type: 'response', data: { status: 'connected', connectionId: id, cwd } })
    ws.on('message', (raw) => {
      let message
      try {
        message = JSON.parse(raw.toString())
        if (message === null) throw new Error('null message')
      } catch {
        this.send(id, { type: 'response', data: { error: 'Failed to parse message' } })
        return
      }
      switch (message.type) {
        case 'subscribe':
          if (message.channel) {
            this.subscribe(id, message.channel)
            this.send(id, { type: 'response', id: message.id, data: { status: 'subscribed', channel: message.channel } })
          }
          break
        case 'unsubscribe':
          if (message.channel) {
            this.unsubscribe(id, message.channel)
            this.send(id, { type: 'response', id: message.id, data: { status: 'unsubscribed', channel: message.channel } })
          }
          break
        case 'request':
          this.send(id, { type: 'response', id: message.id, data: { error: 'No handler for request type' } })
          break
        default:
          log.warn(`Unknown message type: ${message.type}`)
      }
    })
  }

  startHealthCheck() {
    this.healthCheckInterval = setInterval(() => {
      for (const [id, c] of this.connections) {
        if (!c.isAlive) { this.removeConnection(id); continue }
        c.isAlive = false
        try { c.ws.ping() } catch { this.removeConnection(id) }
      }
    }, 30000)
  }

  shutdown() {
    clearInterval(this.healthCheckInterval)
    for (const [, c] of this.connections) if (c.ws.readyState === 1) c.ws.close()
    this.connections.clear()
  }
}

const server = http.createServer((req, res) => res.end('ok'))
const wss = new WebSocketServer({ server })
const manager = new WebSocketManager(wss)
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
