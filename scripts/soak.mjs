#!/usr/bin/env node
// Soak test for cluso-ws (issue 4, item 10). Not part of CI: `npm run soak`.
//
//   npm run soak                          # builds (release), then 10 minutes, 2 000 clients
//   npm run soak -- --minutes=2           # shorter
//   node scripts/soak.mjs --seconds=90 --clients=500 --rate=4
//
// One process is the server: a WebSocketManager listening on 127.0.0.1, broadcasting
// sequence-numbered events on a few channels at a steady rate. Client processes (so their
// memory and CPU do not blur the server's figures) hold the clients, which churn:
//
//   - healthy clients subscribe to a few channels and check every channel's sequence for
//     gaps, duplicates and reordering from their first event on;
//   - churners disconnect after a random lifetime (a clean close or a dropped socket) and
//     come back as new clients;
//   - stallers also take the `bulk` channel (large events) and stop reading for a while;
//     the server cuts them off at `maxBufferedBytesPerConnection` (close 4008, which cannot
//     get through buffers that are already full, so they usually just see the connection
//     end) — expected, counted as slow-consumer disconnects, never as loss — and they come
//     back.
//
// Options (also as SOAK_<NAME> environment variables): --minutes / --seconds, --clients,
// --workers (client processes), --rate (events/s per channel), --channels, --per-client,
// --churn and --stall (shares of clients), --pad / --bulk-pad (event sizes), --cap
// (maxBufferedBytesPerConnection), --report-every (seconds). 2 000 clients need about
// 4 200 descriptors across the processes: check `ulimit -n`.
//
// At the end the server stops broadcasting, waits for every queue to drain, and tells the
// clients the last sequence number of each channel, so a healthy client that silently
// missed the tail of a stream counts it as lost too.
//
// Prints the server's RSS (and counters) every 30 s and a summary at the end; exits 1 if a
// healthy client lost or misordered anything, or was disconnected by the server.
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const here = fileURLToPath(import.meta.url)

// ------------------------------------------------------------------ options

function parseArgs(argv) {
  const args = {}
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    if (m) args[m[1]] = m[2] ?? 'true'
  }
  return args
}

const args = parseArgs(process.argv.slice(2))
const num = (name, fallback) => {
  const v = args[name] ?? process.env[`SOAK_${name.toUpperCase().replace(/-/g, '_')}`]
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name} must be a non-negative number, got ${v}`)
    process.exit(2)
  }
  return n
}

const CONFIG = {
  seconds: args.seconds !== undefined || process.env.SOAK_SECONDS ? num('seconds', 600) : num('minutes', 10) * 60,
  clients: num('clients', 2000),
  /** Client processes the clients are spread over. */
  workers: num('workers', 2),
  /** Events per second on each regular channel. */
  rate: num('rate', 5),
  /** Regular channels; each client subscribes to `perClient` of them. */
  channels: num('channels', 8),
  perClient: num('per-client', 3),
  /** Share of clients that churn (disconnect and come back). */
  churn: num('churn', 0.2),
  /** Share of clients that stall (stop reading) now and then. */
  stall: num('stall', 0.03),
  /** Bytes of padding in a regular event, and in a `bulk` event. */
  pad: num('pad', 200),
  bulkPad: num('bulk-pad', 32 * 1024),
  /** The outbound cap: a staller is cut off when it crosses it. */
  cap: num('cap', 256 * 1024),
  reportEvery: num('report-every', 30),
}

// ------------------------------------------------------------------ client process

if (args.role === 'clients') {
  await runClients()
} else {
  await runServer()
}

async function runServer() {
  // Cut-off stallers and reaped dead peers are expected here; keep the addon's per-event
  // warnings out of the report (CLUSO_WS_LOG=warn shows them).
  process.env.CLUSO_WS_LOG ??= 'error'
  const { WebSocketManager } = require('../index.js')
  const rss = () => process.memoryUsage().rss
  const mib = (n) => (n / 1024 / 1024).toFixed(1)
  const rssStart = rss()
  const manager = new WebSocketManager(undefined, {
    maxBufferedBytesPerConnection: CONFIG.cap,
    // Clients subscribe at once after the welcome; stallers send nothing. The default rate
    // limit is far above what a client sends here.
    maxConnections: CONFIG.clients + 100,
  })
  const { port } = await manager.listen({ port: 0, host: '127.0.0.1', path: '/ws', cwd: '/soak' })
  const channels = Array.from({ length: CONFIG.channels }, (_, i) => `ch-${i}`)
  const seq = Object.fromEntries([...channels, 'bulk'].map((c) => [c, 0]))
  const pad = 'p'.repeat(CONFIG.pad)
  const bulkPad = 'b'.repeat(CONFIG.bulkPad)

  console.log(
    `soak: ${CONFIG.clients} clients over ${CONFIG.workers} processes, ${CONFIG.seconds}s, ` +
      `${CONFIG.channels} channels at ${CONFIG.rate}/s (${CONFIG.pad} B) + bulk (${CONFIG.bulkPad} B), ` +
      `cap ${CONFIG.cap} B, churn ${CONFIG.churn}, stall ${CONFIG.stall}, ulimit -n must exceed ${CONFIG.clients * 2 + 200}`,
  )

  // Workers: each holds a share of the clients and reports its counters.
  const workers = []
  const reports = new Map()
  for (let w = 0; w < CONFIG.workers; w++) {
    const count = Math.floor(CONFIG.clients / CONFIG.workers) + (w < CONFIG.clients % CONFIG.workers ? 1 : 0)
    const child = fork(here, [...process.argv.slice(2), '--role=clients', `--port=${port}`, `--count=${count}`, `--worker=${w}`], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    child.on('message', (m) => {
      if (m.type === 'report') reports.set(w, m.counters)
    })
    child.on('exit', (code) => {
      if (code !== 0 && !finishing) console.error(`worker ${w} exited with ${code}`)
    })
    workers.push(child)
  }
  let finishing = false
  const total = (key) => [...reports.values()].reduce((n, c) => n + (c[key] ?? 0), 0)

  // Wait for the ramp-up: every client connected and subscribed.
  const rampDeadline = Date.now() + 120_000
  while (total('ready') < CONFIG.clients) {
    if (Date.now() > rampDeadline) {
      console.error(`only ${total('ready')} of ${CONFIG.clients} clients connected after 120 s`)
      break
    }
    await sleep(200)
  }
  const rssRamped = rss()
  let rssPeak = rssRamped
  console.log(`ramp-up: ${total('ready')} clients ready; server RSS ${mib(rssStart)} MiB at start, ${mib(rssRamped)} MiB now`)

  // The steady broadcast: one tick every 1000/rate ms publishes one event on every channel,
  // and one bulk event. Ticks are scheduled against the clock, so a slow tick does not
  // lower the rate.
  const started = Date.now()
  const tickMs = 1000 / CONFIG.rate
  let ticks = 0
  let lastReport = started
  let broadcastTimer
  await new Promise((resolve) => {
    const tick = () => {
      const now = Date.now()
      while (ticks * tickMs <= now - started) {
        for (const channel of channels) manager.broadcast(channel, { seq: ++seq[channel], pad })
        manager.broadcast('bulk', { seq: ++seq.bulk, pad: bulkPad })
        ticks++
      }
      rssPeak = Math.max(rssPeak, rss())
      if (now - lastReport >= CONFIG.reportEvery * 1000) {
        lastReport = now
        report(now)
      }
      if (now - started >= CONFIG.seconds * 1000) {
        if (now - lastReport > 1000) report(now)
        return resolve()
      }
      broadcastTimer = setTimeout(tick, Math.max(0, started + (ticks + 0) * tickMs - Date.now()))
    }
    tick()
  })
  clearTimeout(broadcastTimer)

  function report(now) {
    const s = manager.getStats()
    console.log(
      `[${Math.round((now - started) / 1000)}s] server RSS ${mib(rss())} MiB (JS heap ${mib(process.memoryUsage().heapUsed)} MiB); ` +
        `connections ${s.nativeConnections}, subscriptions ${s.subscriptions}, broadcasts ${s.broadcasts}, ` +
        `sent ${s.messagesSent}, slow-consumer cuts ${s.slowConsumerDisconnects}, max queued ${s.maxQueuedBytes} B; ` +
        `clients: delivered ${total('delivered')}, reconnects ${total('reconnects')}, healthy lost ${total('lost')}`,
    )
  }

  // Drain: nothing queued anywhere, then tell the clients the last sequence numbers.
  finishing = true
  const drainDeadline = Date.now() + 30_000
  while (Date.now() < drainDeadline) {
    const s = manager.getStats()
    if (s.pendingBroadcasts === 0 && s.maxQueuedBytes === 0) break
    await sleep(50)
  }
  const rssEnd = rss()
  const finals = await Promise.all(
    workers.map(
      (child) =>
        new Promise((resolve) => {
          child.once('message', function onFinal(m) {
            if (m.type === 'final') resolve(m.counters)
            else child.once('message', onFinal)
          })
          child.send({ type: 'finish', last: seq })
        }),
    ),
  )
  const stats = manager.getStats()
  const sum = (key) => finals.reduce((n, c) => n + (c[key] ?? 0), 0)
  manager.shutdown()
  await Promise.all(workers.map((child) => new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)))))
  const gc = globalThis.gc
  if (gc) gc()
  const rssAfter = rss()

  const lost = sum('lost')
  const misordered = sum('misordered')
  const healthyCut = sum('healthyDisconnected')
  console.log('\n== soak summary')
  console.log(`duration            ${CONFIG.seconds} s, ${ticks} ticks, ${stats.broadcasts} broadcasts`)
  console.log(`server RSS          start ${mib(rssStart)} MiB, after ramp-up ${mib(rssRamped)} MiB, peak ${mib(rssPeak)} MiB, end ${mib(rssEnd)} MiB, after shutdown ${mib(rssAfter)} MiB`)
  console.log(`messages delivered  ${sum('delivered')} to clients (server counted ${stats.messagesSent} sent, ${stats.sendFailures} failed)`)
  console.log(`lost (healthy)      ${lost} missing, ${misordered} duplicated or out of order`)
  console.log(`healthy cut off     ${healthyCut} healthy clients disconnected by the server`)
  console.log(
    `slow consumers      ${stats.slowConsumerDisconnects} cut by the server; stallers saw ${sum('slowCut')} closes ` +
      `(${sum('slowCut4008')} with 4008, the rest ended while their buffers were full)`,
  )
  console.log(
    `churn               ${sum('reconnects')} reconnects, ${sum('stalls')} stalls, ${stats.deadPeersRemoved} silent peers reaped, ` +
      `${stats.rejectedHandshakes} refused handshakes`,
  )
  const ok = lost === 0 && misordered === 0 && healthyCut === 0
  console.log(ok ? 'result              OK: no healthy client lost anything' : 'result              FAILED')
  process.exit(ok ? 0 : 1)
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// ------------------------------------------------------------------ clients

async function runClients() {
  const { WebSocket } = require('ws')
  const url = `ws://127.0.0.1:${args.port}/ws`
  const count = Number(args.count)
  const counters = {
    ready: 0,
    delivered: 0,
    lost: 0,
    misordered: 0,
    reconnects: 0,
    stalls: 0,
    slowCut: 0,
    slowCut4008: 0,
    healthyDisconnected: 0,
  }
  const live = new Set()
  let finishing = false
  const channels = Array.from({ length: CONFIG.channels }, (_, i) => `ch-${i}`)
  const SEQ_RE = /^\{"type":"event","channel":"([^"]+)","data":\{"seq":(\d+),/

  function rollKind() {
    const roll = Math.random()
    return roll < CONFIG.stall ? 'staller' : roll < CONFIG.stall + CONFIG.churn ? 'churner' : 'healthy'
  }

  function pick(n) {
    const copy = [...channels]
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1))
      ;[copy[i], copy[j]] = [copy[j], copy[i]]
    }
    return copy.slice(0, n)
  }

  /**
   * One client's life; `first` clients count towards the ramp-up. A client that comes back
   * keeps its kind, so churn and stalls go on at a steady rate for the whole run.
   */
  function start(first, kind = rollKind()) {
    const subscriptions = pick(CONFIG.perClient)
    if (kind === 'staller') subscriptions.push('bulk')
    const ws = new WebSocket(url, { perMessageDeflate: false })
    const client = { ws, kind, last: new Map(), stalled: false, cut: false, timers: [] }
    live.add(client)
    let acks = 0
    let welcomed = false

    ws.on('message', (data) => {
      const text = data.toString()
      if (!welcomed) {
        welcomed = true
        for (const channel of subscriptions) ws.send(JSON.stringify({ type: 'subscribe', channel }))
        return
      }
      const m = SEQ_RE.exec(text)
      if (!m) {
        if (text.includes('"subscribed"') && ++acks === subscriptions.length) {
          if (first) counters.ready++
          schedule(client)
        }
        return
      }
      counters.delivered++
      const channel = m[1]
      const seq = Number(m[2])
      const last = client.last.get(channel)
      client.last.set(channel, seq)
      // Gaps only count for clients that read all along; a staller's stream ends at its cut.
      if (last === undefined || client.kind === 'staller') return
      if (seq > last + 1) counters.lost += seq - last - 1
      else if (seq <= last) counters.misordered++
    })
    ws.on('error', () => {})
    ws.on('close', (code) => {
      live.delete(client)
      for (const t of client.timers) clearTimeout(t)
      if (client.leaving || finishing) return
      // Closed by the server without asking. Expected for a staller: it is cut off at the
      // cap, with 4008 when the close frame still fits through its full buffers, else the
      // connection just ends (1006). Anything closing a client that kept reading is a failure.
      if (client.kind === 'staller') {
        counters.slowCut++
        if (code === 4008) counters.slowCut4008++
      } else {
        counters.healthyDisconnected++
        console.error(`worker ${args.worker}: ${client.kind} client closed by the server with ${code}`)
      }
      counters.reconnects++
      setTimeout(() => start(false, client.kind), Math.random() * 1000)
    })
    return client
  }

  function schedule(client) {
    if (client.kind === 'churner') {
      // Leave after 5–60 s, cleanly or by dropping the socket, and come back within 2 s.
      client.timers.push(
        setTimeout(() => {
          client.leaving = true
          if (Math.random() < 0.5) client.ws.close(1000)
          else client.ws.terminate()
          counters.reconnects++
          setTimeout(() => start(false, 'churner'), Math.random() * 2000)
        }, 5000 + Math.random() * 55_000),
      )
    } else if (client.kind === 'staller') {
      // Stop reading after 2–20 s, for 10–40 s (usually long enough to be cut off), then
      // read again; if still connected afterwards, stall again later.
      client.timers.push(
        setTimeout(() => {
          counters.stalls++
          client.ws._socket?.pause()
          client.timers.push(
            setTimeout(() => {
              client.ws._socket?.resume()
              if (live.has(client)) schedule(client)
            }, 10_000 + Math.random() * 30_000),
          )
        }, 2000 + Math.random() * 18_000),
      )
    }
  }

  // Ramp up in batches so the accept queue is never flooded.
  for (let i = 0; i < count; i += 100) {
    for (let k = i; k < Math.min(count, i + 100); k++) start(true)
    await sleep(100)
  }

  const reporter = setInterval(() => process.send({ type: 'report', counters }), 1000)
  // The server process is gone (killed, crashed): so are we.
  process.on('disconnect', () => process.exit(1))

  process.on('message', async (m) => {
    if (m.type !== 'finish') return
    finishing = true
    clearInterval(reporter)
    // Every healthy client must have reached the last sequence number of its channels:
    // wait (bounded) for the tail to arrive, then count what is still missing.
    const deadline = Date.now() + 10_000
    const missing = () => {
      let n = 0
      for (const c of live) {
        if (c.kind === 'staller') continue
        for (const [channel, seq] of c.last) if (channel !== 'bulk') n += Math.max(0, m.last[channel] - seq)
      }
      return n
    }
    while (missing() > 0 && Date.now() < deadline) await sleep(100)
    counters.lost += missing()
    for (const c of live) {
      c.leaving = true
      for (const t of c.timers) clearTimeout(t)
      c.ws.terminate()
    }
    process.send({ type: 'final', counters }, () => process.exit(0))
  })
}
