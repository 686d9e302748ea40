// The original Cluso WebSocketManager algorithm (SPEC A.1/A.2), rewritten faithfully: a Map
// of connection records each with a channels Set; broadcast = JSON.stringify the envelope
// once, loop over ALL connections, ws.send to the subscribed ones whose readyState is 1.
// Used by the baseline server (baseline-ws.mjs) and the drop-in memory micro-benchmark.
import { connId } from './common.mjs'

// The original logs through a logger; per-broadcast logging is silenced here
// (BENCH_LOG=1 prints it to stderr), which can only make the baseline faster.
const log = process.env.BENCH_LOG
  ? { info: (...a) => console.error(...a), warn: (...a) => console.error(...a), error: (...a) => console.error(...a) }
  : { info() {}, warn() {}, error() {} }

export class OriginalManager {
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
