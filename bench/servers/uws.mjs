// uWebSockets.js pub/sub (npm @btc-vision/uwebsockets.js, patched copy in
// bench/.uws made by bench/setup-uws.sh; run under LD_PRELOAD of its shim).
// Same wire protocol as SPEC A.2: welcome, subscribe -> ws.subscribe(channel)
// + ack; broadcast = app.publish(channel, envelope).
import { createRequire } from 'node:module'
import { serve, connId, envelope } from './common.mjs'

const require = createRequire(import.meta.url)
const uWS = require('../.uws/uws.js')
const { version } = require('../.uws/package.json')

const sockets = new Set()
const cwd = process.cwd()
const enc = new TextDecoder()

const app = uWS.App().ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  // uWS silently skips a subscriber whose backlog exceeds maxBackpressure
  // while publishing; scenarios A-E pace at 64 KiB so this cap (the same
  // 1 MiB as cluso-ws's default) is never the limit there. Scenario F paces
  // at 1 MiB on purpose: what uWS skips shows in F's delivered ratio.
  maxBackpressure: 1024 * 1024,
  idleTimeout: 120,
  open(ws) {
    const id = connId()
    ws.getUserData().id = id
    sockets.add(ws)
    ws.send(JSON.stringify({ type: 'response', data: { status: 'connected', connectionId: id, cwd } }), false)
  },
  message(ws, buf, isBinary) {
    let m
    try {
      m = JSON.parse(enc.decode(buf))
      if (m === null) throw new Error('null')
    } catch {
      ws.send(JSON.stringify({ type: 'response', data: { error: 'Failed to parse message' } }), false)
      return
    }
    if ((m.type === 'subscribe' || m.type === 'unsubscribe') && m.channel) {
      if (m.type === 'subscribe') ws.subscribe(m.channel)
      else ws.unsubscribe(m.channel)
      const status = m.type === 'subscribe' ? 'subscribed' : 'unsubscribed'
      ws.send(JSON.stringify({ type: 'response', id: m.id, data: { status, channel: m.channel } }), false)
    } else if (m.type === 'request') {
      ws.send(JSON.stringify({ type: 'response', id: m.id, data: { error: 'No handler for request type' } }), false)
    }
  },
  close(ws) {
    sockets.delete(ws)
  },
})

const port = await new Promise((resolve, reject) => {
  app.listen('127.0.0.1', 0, (token) => (token ? resolve(uWS.us_socket_local_port(token)) : reject(new Error('uWS listen failed'))))
})

serve({
  name: 'uws',
  url: `ws://127.0.0.1:${port}/ws`,
  versions: { 'uWebSockets.js': version },
  broadcast: (channel, data) => app.publish(channel, envelope(channel, data), false),
  queuedBytes() {
    let max = 0
    for (const ws of sockets) {
      const b = ws.getBufferedAmount()
      if (b > max) max = b
    }
    return max
  },
  connections: () => sockets.size,
  close: () => app.close?.(),
})
