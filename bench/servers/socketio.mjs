// Socket.IO rooms, websocket transport only. Protocol over socket.io events:
// the client emits "subscribe" with a SPEC A.2 subscribe message, the server
// joins the room and emits "response" with the ack; broadcast =
// io.to(channel).emit('event', envelope) (encoded once per broadcast by
// socket.io). The load generator speaks engine.io v4 itself (mode socketio).
import http from 'node:http'
import { createRequire } from 'node:module'
import { Server } from 'socket.io'
import { serve, connId } from './common.mjs'

const require = createRequire(import.meta.url)
const cwd = process.cwd()

const httpServer = http.createServer()
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  // Heartbeat comparable to the original's 30 s health check; the load
  // generator answers engine.io pings.
  pingInterval: 30000,
  pingTimeout: 60000,
})

const redisUrl = process.env.BENCH_REDIS_URL
let redis = []
if (redisUrl) {
  const { createAdapter } = await import('@socket.io/redis-adapter')
  const { Redis } = await import('ioredis')
  const pub = new Redis(redisUrl)
  const sub = pub.duplicate()
  redis = [pub, sub]
  await Promise.all(redis.map((c) => (c.status === 'ready' ? null : new Promise((r, j) => c.once('ready', r).once('error', j)))))
  io.adapter(createAdapter(pub, sub))
}

io.on('connection', (socket) => {
  const id = connId()
  socket.emit('response', { type: 'response', data: { status: 'connected', connectionId: id, cwd } })
  socket.on('subscribe', (m) => {
    if (!m?.channel) return
    socket.join(m.channel)
    socket.emit('response', { type: 'response', id: m.id, data: { status: 'subscribed', channel: m.channel } })
  })
  socket.on('unsubscribe', (m) => {
    if (!m?.channel) return
    socket.leave(m.channel)
    socket.emit('response', { type: 'response', id: m.id, data: { status: 'unsubscribed', channel: m.channel } })
  })
})

await new Promise((r) => httpServer.listen(0, '127.0.0.1', r))

let lastLen = 256
serve({
  name: redisUrl ? 'socketio-redis' : 'socketio',
  mode: 'socketio',
  url: `ws://127.0.0.1:${httpServer.address().port}`,
  versions: {
    'socket.io': require('socket.io/package.json').version,
    ...(redisUrl ? { '@socket.io/redis-adapter': require('@socket.io/redis-adapter/package.json').version, ioredis: require('ioredis/package.json').version } : {}),
  },
  broadcast(channel, data) {
    const env = { type: 'event', channel, data, timestamp: new Date().toISOString() }
    io.to(channel).emit('event', env)
  },
  queuedBytes() {
    // engine.io keeps packets in conn.writeBuffer until the websocket
    // transport is writable again; ws keeps the rest in bufferedAmount.
    let max = 0
    for (const [, s] of io.of('/').sockets) {
      const conn = s.conn
      const b = conn.writeBuffer.length * lastLen + (conn.transport?.socket?.bufferedAmount ?? 0)
      if (b > max) max = b
    }
    return max
  },
  connections: () => io.of('/').sockets.size,
  close: async () => {
    await new Promise((r) => io.close(() => r()))
    for (const c of redis) c.disconnect()
  },
})
