// Shared scaffolding of the benchmark server adapters (bench/servers/*.mjs).
//
// Every adapter is a small script that builds one server and calls
// `serve(adapter)` with:
//   name                        short id used in results
//   mode                        'ws' (SPEC A.2 protocol) or 'socketio'
//   url                         ws:// URL the load generator connects to
//   broadcast(channel, data)    one fan-out of `data` to `channel`'s subscribers
//   queuedBytes()               largest per-connection outbound backlog (bytes),
//                               plus anything else the server still has to send
//                               (cluso: pendingBroadcasts); A, B, C, E pace on it
//   backlogBytes()              optional: the largest per-connection backlog
//                               alone, what F paces on (default queuedBytes)
//   stats()                     optional: server counters reported by F
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
//   {"cmd":"pace","durationMs":5000,"capBytes":1048576}            scenario F
//   {"cmd":"exit"}                              (EOF exits too)
// Every scenario is bounded by its duration/count, and paces on queuedBytes()
// so that no server is ever driven into unbounded buffering — except F, which
// paces on backlogBytes() at the slow-consumer cap (1 MiB) on purpose.
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

/**
 * Durations in µs in log-spaced buckets (2 % wide, 0.05 µs to 1000 s),
 * allocated once; quantiles are the bucket's upper edge (≤ 2 % high).
 */
class DurationHist {
  static MIN = 0.05
  static STEP = Math.log(1.02)
  constructor() {
    this.counts = new Float64Array(Math.ceil(Math.log(1e9 / DurationHist.MIN) / DurationHist.STEP) + 1)
    this.total = 0
  }
  add(us) {
    const i = us <= DurationHist.MIN ? 0 : Math.min(this.counts.length - 1, Math.ceil(Math.log(us / DurationHist.MIN) / DurationHist.STEP))
    this.counts[i]++
    this.total++
  }
  quantile(q) {
    if (this.total === 0) return 0
    const want = Math.max(1, Math.ceil(q * this.total))
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]
      if (seen >= want) return DurationHist.MIN * Math.exp(i * DurationHist.STEP)
    }
    return DurationHist.MIN * Math.exp((this.counts.length - 1) * DurationHist.STEP)
  }
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
      const u = process.cpuUsage()
      return { connections: adapter.connections(), queuedBytes: adapter.queuedBytes(), cpuUs: u.user + u.system }
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

    // F: a producer that paces at the cap, like real ones do: back to back
    // (bursts as in A), pausing 1 ms only while the largest per-connection
    // backlog (backlogBytes(), nothing else: not pendingBroadcasts) is at or
    // over capBytes. Every broadcast() is timed with hrtime into a histogram
    // allocated up front, so the measurement itself does not grow the RSS.
    // longestStallMs: the longest the producer waited for the event loop to
    // come back (less the 1 ms of a pause), i.e. work a server does on the JS
    // thread outside broadcast() (uWS writes what publish() corked there).
    async pace({ durationMs = 5000, capBytes = 1024 * 1024, maxBurst = 32, burstMs = 5, channel = 'files', slowMs = 5 }) {
      const backlog = adapter.backlogBytes ?? adapter.queuedBytes
      const hist = new DurationHist()
      const stats0 = adapter.stats?.()
      const t0 = performance.now()
      const end = t0 + durationMs
      const cpu0 = cpuNow()
      const slowNs = BigInt(Math.round(slowMs * 1e6))
      let n = 0, paused = 0, turns = 0, maxQ = 0, maxNs = 0n, maxAtMs = 0, slowCalls = 0, stall = 0
      while (performance.now() < end) {
        turns++
        const q = backlog()
        if (q > maxQ) maxQ = q
        if (q >= capBytes) {
          paused++
          const w = performance.now()
          await backoff()
          stall = Math.max(stall, performance.now() - w - 1)
          continue
        }
        const stop = performance.now() + burstMs
        let b = 0
        do {
          const data = fileChangedData(n)
          const a = process.hrtime.bigint()
          adapter.broadcast(channel, data)
          const d = process.hrtime.bigint() - a
          n++
          b++
          hist.add(Number(d) / 1e3)
          if (d > maxNs) { maxNs = d; maxAtMs = performance.now() - t0 }
          if (d >= slowNs) slowCalls++
        } while (b < maxBurst && performance.now() < stop)
        const w = performance.now()
        await tick()
        stall = Math.max(stall, performance.now() - w)
      }
      const elapsedMs = performance.now() - t0
      return {
        broadcasts: n, elapsedMs, turns, pausedTurns: paused, maxQueuedBytes: maxQ, capBytes, longestStallMs: stall,
        cpuMs: cpuNow() - cpu0,
        longestCallMs: Number(maxNs) / 1e6, longestCallAtMs: maxAtMs,
        callP50Us: hist.quantile(0.5), callP99Us: hist.quantile(0.99), callP999Us: hist.quantile(0.999),
        callsOverSlowMs: slowCalls, slowMs,
        rssEnd: process.memoryUsage.rss(),
        stats: stats0 ? { before: stats0, after: adapter.stats() } : undefined,
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
