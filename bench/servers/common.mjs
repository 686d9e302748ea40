// Shared scaffolding of the benchmark server adapters (bench/servers/*.mjs).
//
// Every adapter is a small script that builds one server and calls
// `serve(adapter)` with:
//   name                        short id used in results
//   mode                        'ws' (SPEC A.2 protocol) or 'socketio'
//   url                         ws:// URL the load generator connects to
//   broadcast(channel, data)    one fan-out of `data` to `channel`'s subscribers
//   queuedBytes()               largest per-connection outbound backlog (bytes)
//   connections()               open connection count
//   close()                     optional, async
//   versions                    optional { package: version }
//
// Control protocol: JSON lines on stdin, one JSON reply line per command on
// stdout (nothing else is written to stdout). Commands:
//   {"cmd":"mem"}                               RSS etc. after global.gc()
//   {"cmd":"info"}                              connections, queued bytes
//   {"cmd":"saturate","durationMs":8000,...}    scenario A
//   {"cmd":"rate","perSec":2,"durationMs":5000} scenario B
//   {"cmd":"cost","count":40}                   scenario C
//   {"cmd":"ai","streams":100,"chunksPerSec":50,"durationMs":5000}  scenario E
//   {"cmd":"exit"}                              (EOF exits too)
// Every scenario is bounded by its duration/count, and paces on queuedBytes()
// so that no server is ever driven into unbounded buffering.
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'

/** CLOCK_REALTIME in whole microseconds (timeOrigin is wall-clock µs). */
export const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000)

const FILES = [
  'src/components/editor/MonacoEditor.tsx',
  'src/websocket/manager.ts',
  'src/server/routes/files.ts',
  'packages/ui/src/panels/DiagnosticsPanel.tsx',
]

/** ~200-byte envelope once wrapped: fileChanged-shaped data plus a send stamp. */
export function fileChangedData(seq, sentUs = nowUs()) {
  return {
    file: FILES[seq & 3],
    event: 'change',
    timestamp: new Date().toISOString(),
    sentUs,
    seq,
  }
}

const CHUNK = 'The quick brown fox streams another token of the answer. '

/** aiChunk-shaped data (EventBroadcaster.aiChunk) plus a send stamp. */
export function aiChunkData(stream, index, sentUs) {
  return {
    id: `ai-${stream}`,
    chunk: CHUNK,
    index,
    finished: false,
    timestamp: new Date().toISOString(),
    sentUs,
  }
}

/** The original module's envelope, keys in its order (SPEC A.1). */
export const envelope = (channel, data) =>
  JSON.stringify({ type: 'event', channel, data, timestamp: new Date().toISOString() })

export const connId = () => `conn-${Date.now()}-${Math.random().toString(36).slice(2, 11)}`

function quantile(sorted, q) {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

const tick = () => new Promise((r) => setImmediate(r))
const backoff = () => new Promise((r) => setTimeout(r, 1))

function gcAll() {
  if (typeof global.gc !== 'function') return false
  for (let i = 0; i < 4; i++) global.gc()
  return true
}

function cpuNow() {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e3 // ms, all threads of the process
}

/** Pacing threshold: largest per-connection backlog before a producer waits. */
export const HIGH_WATER = Number(process.env.BENCH_HIGH_WATER ?? 64 * 1024)

export function serve(adapter) {
  const highWater = HIGH_WATER
  const scen = {
    async mem() {
      const gc = gcAll()
      await tick()
      gcAll()
      const m = process.memoryUsage()
      return { gc, rss: m.rss, heapUsed: m.heapUsed, external: m.external, connections: adapter.connections() }
    },

    async info() {
      return { connections: adapter.connections(), queuedBytes: adapter.queuedBytes() }
    },

    // A: back-to-back broadcasts for durationMs. Each event-loop turn sends a
    // burst (up to maxBurst broadcasts or burstMs of JS time) when the largest
    // per-connection backlog is under highWater, otherwise waits 1 ms.
    async saturate({ durationMs = 8000, maxBurst = 32, burstMs = 5, hw = highWater, channel = 'files' }) {
      const t0 = performance.now()
      const end = t0 + durationMs
      const cpu0 = cpuNow()
      let n = 0, paused = 0, turns = 0, maxQ = 0
      while (performance.now() < end) {
        turns++
        const q = adapter.queuedBytes()
        if (q > maxQ) maxQ = q
        if (q >= hw) {
          paused++
          await backoff()
          continue
        }
        const stop = performance.now() + burstMs
        let b = 0
        do {
          adapter.broadcast(channel, fileChangedData(n++))
          b++
        } while (b < maxBurst && performance.now() < stop)
        await tick()
      }
      return {
        broadcasts: n, elapsedMs: performance.now() - t0, turns, pausedTurns: paused,
        maxQueuedBytes: maxQ, cpuMs: cpuNow() - cpu0,
      }
    },

    // B: broadcasts on a fixed schedule; each is stamped with its scheduled
    // time, so a server that falls behind shows it in the latency.
    async rate({ perSec = 2, durationMs = 5000, hw = highWater, channel = 'files' }) {
      const interval = 1000 / perSec
      const total = Math.max(1, Math.round((durationMs / 1000) * perSec))
      const t0 = performance.now()
      const base = nowUs()
      const cpu0 = cpuNow()
      let n = 0, maxLateMs = 0, maxQ = 0
      const hardEnd = t0 + durationMs // never run past the planned window
      while (n < total && performance.now() < hardEnd) {
        const due = t0 + n * interval
        const now = performance.now()
        if (now < due) {
          await new Promise((r) => setTimeout(r, Math.max(0, due - now)))
          continue
        }
        const q = adapter.queuedBytes()
        if (q > maxQ) maxQ = q
        if (q >= hw) { await backoff(); continue }
        maxLateMs = Math.max(maxLateMs, now - due)
        adapter.broadcast(channel, fileChangedData(n, base + Math.round(n * interval * 1000)))
        n++
        // a timer-driven producer returns to the event loop between sends
        if (performance.now() >= t0 + n * interval) await tick()
      }
      return { broadcasts: n, planned: total, elapsedMs: performance.now() - t0, maxLateMs, maxQueuedBytes: maxQ, cpuMs: cpuNow() - cpu0 }
    },

    // C: JS-thread time of single broadcast() calls, each on a drained server.
    async cost({ count = 40, channel = 'files', drainTimeoutMs = 10000 }) {
      const samples = []
      const cpuSamples = []
      const deadline = performance.now() + Math.max(30000, count * 2000)
      for (let i = 0; i < count && performance.now() < deadline; i++) {
        const waitUntil = performance.now() + drainTimeoutMs
        while (adapter.queuedBytes() > 0 && performance.now() < waitUntil) await backoff()
        await tick()
        const data = fileChangedData(i)
        const u0 = process.cpuUsage()
        const a = process.hrtime.bigint()
        adapter.broadcast(channel, data)
        const b = process.hrtime.bigint()
        const u = process.cpuUsage(u0)
        samples.push(Number(b - a) / 1000)
        cpuSamples.push(u.user + u.system)
      }
      const s = [...samples].sort((x, y) => x - y)
      const cs = [...cpuSamples].sort((x, y) => x - y)
      return {
        broadcasts: samples.length,
        // CPU time of the whole process during the call (getrusage, µs): robust
        // against other load on the machine; includes other threads' work.
        cpuMedianUs: quantile(cs, 0.5), cpuP99Us: quantile(cs, 0.99),
        count: s.length, medianUs: quantile(s, 0.5), p99Us: quantile(s, 0.99),
        minUs: s[0] ?? 0, maxUs: s[s.length - 1] ?? 0,
        meanUs: s.reduce((x, y) => x + y, 0) / (s.length || 1),
      }
    },

    // E: `streams` concurrent AI streams, each emitting chunksPerSec chunks/s
    // (scheduled-time stamps, catching up when late, pacing on backlog).
    async ai({ streams = 100, chunksPerSec = 50, durationMs = 5000, hw = highWater, channel = 'ai-response' }) {
      const interval = 1000 / chunksPerSec
      const rounds = Math.max(1, Math.round((durationMs / 1000) * chunksPerSec))
      const t0 = performance.now()
      const base = nowUs()
      const cpu0 = cpuNow()
      let r = 0, sent = 0, maxLateMs = 0, maxQ = 0, paused = 0
      const hardEnd = t0 + durationMs
      while (r < rounds && performance.now() < hardEnd) {
        const due = t0 + r * interval
        const now = performance.now()
        if (now < due) {
          await new Promise((res) => setTimeout(res, Math.max(0, due - now)))
          continue
        }
        const q = adapter.queuedBytes()
        if (q > maxQ) maxQ = q
        if (q >= hw) { paused++; await backoff(); continue }
        maxLateMs = Math.max(maxLateMs, now - due)
        const stamp = base + Math.round(r * interval * 1000)
        for (let s = 0; s < streams; s++) {
          adapter.broadcast(channel, aiChunkData(s, r, stamp))
          sent++
        }
        r++
        await tick()
      }
      const elapsedMs = performance.now() - t0
      return {
        broadcasts: sent, planned: rounds * streams, rounds, elapsedMs, maxLateMs, pausedTurns: paused,
        maxQueuedBytes: maxQ, cpuMs: cpuNow() - cpu0, targetPerSec: streams * chunksPerSec,
        achievedPerSec: sent / (elapsedMs / 1000),
      }
    },
  }

  const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
  let closing = false
  const shutdown = async (code = 0) => {
    if (closing) return
    closing = true
    try { await adapter.close?.() } catch {}
    process.exit(code)
  }

  reply({
    event: 'listening', name: adapter.name, mode: adapter.mode ?? 'ws', url: adapter.url, pid: process.pid,
    node: process.version, versions: adapter.versions ?? {}, gc: typeof global.gc === 'function',
  })

  // Commands run one at a time, in order.
  let chain = Promise.resolve()
  const rl = createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    chain = chain.then(async () => {
      let cmd
      try { cmd = JSON.parse(line) } catch { return reply({ error: `bad command: ${line}` }) }
      if (cmd.cmd === 'exit') return shutdown(0)
      const fn = scen[cmd.cmd]
      if (!fn) return reply({ id: cmd.id, error: `unknown cmd ${cmd.cmd}` })
      try {
        const result = await fn(cmd)
        reply({ id: cmd.id, cmd: cmd.cmd, ok: true, ...result })
      } catch (e) {
        reply({ id: cmd.id, cmd: cmd.cmd, ok: false, error: String(e?.stack ?? e) })
      }
    })
  })
  rl.on('close', () => chain.then(() => shutdown(0)))
  process.on('SIGTERM', () => shutdown(0))
}
