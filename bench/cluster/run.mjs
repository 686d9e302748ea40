#!/usr/bin/env node
// Scale-out benchmark (issue 13 item 7): two server processes of one kind
// share one Redis; N subscribers are split between them (one load generator
// per process, N/2 each); process 1 broadcasts. cluso-ws (`cluster:
// { redisUrl }`, bench/servers/cluso-native.mjs) against Socket.IO with
// @socket.io/redis-adapter (bench/servers/socketio.mjs), in the same run.
//
//   npm run bench:cluster                     # from the repo root, after build + bench:setup
//   node bench/cluster/run.mjs --n 1000 --rounds 2 --sat-ms 5000 --rate-ms 10000
//
// Per (round, server), interleaved: a fresh Redis database (FLUSHALL), two
// servers, two load generators, then
//   B2  2 broadcasts/s for --rate-ms: p99 publish→receive from the `sentUs`
//       stamp (one machine clock) at each process's subscribers;
//   R   --eq-rate (50) broadcasts/s for --eq-ms (6 s): Redis CPU per broadcast
//       at one rate both kinds sustain;
//   A   saturation for --sat-ms: delivered msgs/s over both processes (every
//       subscriber counts; time from phase start to the last arrival),
//       delivered ratio, and Redis CPU (INFO cpu used_cpu_sys + used_cpu_user,
//       before the phase and after both load generators drained) per broadcast,
//       raw and above idle (Redis's CPU over 2 s idle before B2, times the
//       phase's wall time, subtracted).
// The producer paces on its own process's backlog only (as in bench/run.mjs);
// the other process is not throttled, so its loss shows in the delivered ratio.
// Loopback only; every phase bounded in time; redis-server (own port, no
// persistence) and every child are stopped at the end, also on error.
import { spawn, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { children, Proc, sleep } from '../proc.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const bench = path.resolve(here, '..')
const root = path.resolve(bench, '..')
const LOADGEN = path.join(bench, 'loadgen/target/release/cluso-loadgen')

const argv = process.argv.slice(2)
const flag = (name, dflt) => {
  const i = argv.indexOf(`--${name}`)
  return i < 0 || argv[i + 1] === undefined ? dflt : argv[i + 1]
}
const cfg = {
  servers: String(flag('servers', 'cluso-native,socketio')).split(','),
  n: Number(flag('n', 1000)),
  rounds: Number(flag('rounds', 2)),
  satMs: Number(flag('sat-ms', 5000)),
  rateMs: Number(flag('rate-ms', 10000)),
  eqRate: Number(flag('eq-rate', 50)),
  eqMs: Number(flag('eq-ms', 6000)),
  redisServer: String(flag('redis-server', process.env.REDIS_SERVER ?? 'redis-server')),
  redisPort: Number(flag('redis-port', 0)),
}

// ---------- Redis: own server on a free loopback port, RESP over a socket ----------
async function freePort() {
  const s = net.createServer()
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address()
  await new Promise((r) => s.close(r))
  return port
}

/** One inline command, one reply (bulk string or status line), bounded in time. */
function redisCmd(port, ...args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    let buf = ''
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${args[0]}: timeout`)) }, 5000)
    const done = (v, e) => { clearTimeout(t); sock.destroy(); e ? reject(e) : resolve(v) }
    sock.on('error', (e) => done(null, e))
    sock.on('data', (d) => {
      buf += d
      if (buf[0] === '+' || buf[0] === '-') {
        if (buf.includes('\r\n')) done(buf.slice(1, buf.indexOf('\r\n')), buf[0] === '-' ? new Error(buf) : null)
      } else if (buf[0] === '$') {
        const nl = buf.indexOf('\r\n')
        const len = Number(buf.slice(1, nl))
        if (Buffer.byteLength(buf) >= nl + 2 + len) done(buf.slice(nl + 2, nl + 2 + len))
      }
    })
    sock.write(args.join(' ') + '\r\n')
  })
}

/** Redis's own CPU (main thread + I/O), ms: INFO cpu used_cpu_sys + used_cpu_user. */
async function redisCpuMs(port) {
  const info = await redisCmd(port, 'INFO', 'cpu')
  const get = (k) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)?.[1])
  return (get('used_cpu_sys') + get('used_cpu_user')) * 1000
}

async function startRedis() {
  const port = cfg.redisPort || (await freePort())
  const p = spawn(cfg.redisServer, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(p)
  let err = ''
  p.stderr.on('data', (d) => { err += d })
  for (let i = 0; ; i++) {
    try { if ((await redisCmd(port, 'PING')) === 'PONG') break } catch {}
    if (i === 50 || p.exitCode !== null) throw new Error(`redis-server did not start: ${err}`)
    await sleep(100)
  }
  const version = /redis_version:(\S+)/.exec(await redisCmd(port, 'INFO', 'server'))?.[1]
  return { p, port, url: `redis://127.0.0.1:${port}`, version }
}

// ---------- one session: two servers, two load generators ----------
async function session(redis, name, round) {
  const rec = { server: name, n: cfg.n, round, startedAt: new Date().toISOString(), loadavg: os.loadavg() }
  const log = (s) => console.error(`[r${round} ${name}] ${s}`)
  const procs = []
  try {
    await redisCmd(redis.port, 'FLUSHALL')
    await redisCmd(redis.port, 'CONFIG', 'RESETSTAT')
    const env = { BENCH_REDIS_URL: redis.url }
    const servers = []
    for (let i = 0; i < 2; i++) {
      const s = new Proc(`${name}#${i + 1}`, process.execPath, [path.join(bench, 'servers', `${name}.mjs`)], { env })
      procs.push(s)
      s.hello = await s.wait((v) => v.event === 'listening', 30000, 'listening')
      servers.push(s)
    }
    rec.versions = servers[0].hello.versions
    const half = [Math.ceil(cfg.n / 2), Math.floor(cfg.n / 2)]
    const lgs = servers.map((s, i) => {
      const url = s.hello.mode === 'socketio' ? s.hello.url.replace(/\/?$/, '') + '/socket.io/?EIO=4&transport=websocket' : s.hello.url
      const lg = new Proc(`loadgen#${i + 1}`, LOADGEN, ['--url', url, '--conns', String(half[i]), '--mode', s.hello.mode,
        '--channel', 'files', '--concurrency', '256', '--connect-timeout', '60', '--max-seconds', '600'])
      procs.push(lg)
      return lg
    })
    for (const lg of lgs) {
      const ready = await lg.wait((v) => v.ready, 90000, 'loadgen ready')
      lg.connections = ready.connections
      if (ready.connections === 0) throw new Error(`no connection: ${ready.firstError}`)
    }
    rec.connections = lgs.map((l) => l.connections)
    log(`connected ${rec.connections.join(' + ')}`)

    // Redis's idle CPU (cron, the subscribers' connections) over 2 s, subtracted below
    const i0 = await redisCpuMs(redis.port), it0 = performance.now()
    await sleep(2000)
    const idleCpuPerMs = ((await redisCpuMs(redis.port)) - i0) / (performance.now() - it0)
    rec.redisIdleCpuShare = idleCpuPerMs

    /** Runs `cmd` on process 1 while both load generators count; drains both. */
    const phase = async (label, cmd, timeoutMs) => {
      for (const lg of lgs) await lg.call({ cmd: 'start', label }, 10000)
      const r0 = await redisCpuMs(redis.port), t0 = performance.now()
      const res = await servers[0].call(cmd, timeoutMs)
      if (!res.ok) throw new Error(`${name} ${cmd.cmd}: ${res.error}`)
      const got = await Promise.all(lgs.map((lg) => {
        lg.send({ cmd: 'stop', label, expect: res.broadcasts * lg.connections, quietMs: 2000, maxDrainMs: 60000 })
        return lg.wait((v) => v.label === label && v.delivered !== undefined, 90000, `${label} result`)
      }))
      const r1 = await redisCpuMs(redis.port), wallMs = performance.now() - t0
      const netCpuMs = r1 - r0 - idleCpuPerMs * wallMs
      const delivered = got.reduce((a, g) => a + g.delivered, 0)
      const expected = res.broadcasts * (lgs[0].connections + lgs[1].connections)
      // time from phase start to the last arrival, the later of the two processes
      const spanS = Math.max(...got.map((g) => (g.msgsPerSecFromStart > 0 ? g.delivered / g.msgsPerSecFromStart : 0)))
      return {
        server: res,
        perProcess: got.map((g) => ({ delivered: g.delivered, msgsPerSec: g.msgsPerSec, latencyUs: g.latencyUs, closedDuringRun: g.closedDuringRun, errors: g.errors })),
        broadcasts: res.broadcasts, expected, delivered, deliveredRatio: expected ? delivered / expected : 0,
        spanS, msgsPerSec: spanS > 0 ? delivered / spanS : 0,
        // the worse of the two processes' percentiles (the loadgens keep separate histograms)
        p50Us: Math.max(...got.map((g) => g.latencyUs.p50)), p99Us: Math.max(...got.map((g) => g.latencyUs.p99)),
        maxUs: Math.max(...got.map((g) => g.latencyUs.max)),
        redisCpuMs: r1 - r0, redisWallMs: wallMs, redisNetCpuMs: netCpuMs,
        redisCpuUsPerBroadcast: res.broadcasts ? ((r1 - r0) * 1000) / res.broadcasts : null,
        redisNetCpuUsPerBroadcast: res.broadcasts ? (netCpuMs * 1000) / res.broadcasts : null,
      }
    }
    rec.B2 = await phase('B2', { cmd: 'rate', perSec: 2, durationMs: cfg.rateMs }, cfg.rateMs * 3 + 20000)
    log(`B 2/s: p99 ${rec.B2.perProcess.map((p) => p.latencyUs.p99).join(' / ')} µs (process 1 / 2), delivered ${(rec.B2.deliveredRatio * 100).toFixed(2)}%`)
    // Redis CPU at one rate both servers sustain (saturation rates differ ~20×)
    rec.R = await phase('R', { cmd: 'rate', perSec: cfg.eqRate, durationMs: cfg.eqMs }, cfg.eqMs * 3 + 20000)
    log(`R ${cfg.eqRate}/s: ${rec.R.broadcasts} broadcasts, delivered ${(rec.R.deliveredRatio * 100).toFixed(2)}%, p99 ${rec.R.p99Us} µs, Redis ${rec.R.redisCpuUsPerBroadcast.toFixed(2)} µs CPU/broadcast (${rec.R.redisNetCpuUsPerBroadcast.toFixed(2)} above idle)`)
    rec.A = await phase('A', { cmd: 'saturate', durationMs: cfg.satMs }, cfg.satMs * 3 + 30000)
    // Redis's own time per command over the session (outside the CPU windows above)
    rec.redisCommandStats = Object.fromEntries((await redisCmd(redis.port, 'INFO', 'commandstats')).split('\r\n')
      .map((l) => /^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=([0-9.]+)/.exec(l)).filter(Boolean)
      .map((m) => [m[1], { calls: Number(m[2]), usec: Number(m[3]), usecPerCall: Number(m[4]) }]))
    log(`A: ${Math.round(rec.A.msgsPerSec)} msgs/s delivered (${rec.A.broadcasts} broadcasts), delivered ${(rec.A.deliveredRatio * 100).toFixed(2)}%, Redis ${rec.A.redisCpuUsPerBroadcast.toFixed(2)} µs CPU/broadcast (${rec.A.redisNetCpuUsPerBroadcast.toFixed(2)} above idle)`)
  } catch (e) {
    rec.error = String(e?.message ?? e)
    log(`ERROR ${rec.error}`)
  } finally {
    for (const p of procs.reverse()) { p.send({ cmd: 'exit' }); await p.stop(5000) }
  }
  return rec
}

// ---------- main ----------
if (!fs.existsSync(LOADGEN)) {
  console.error('load generator missing: npm run bench:setup')
  process.exit(2)
}
const redis = await startRedis()
const rev = (() => { try { return execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim() } catch { return 'unknown' } })()
const results = {
  meta: {
    kind: 'cluster', date: new Date().toISOString(), config: cfg, redisVersion: redis.version, addonRev: rev,
    machine: { cpuModel: os.cpus()[0]?.model, cpus: os.cpus().length, kernel: os.release(), node: process.version },
  },
  sessions: [],
}
const outDir = path.join(bench, 'results')
fs.mkdirSync(outDir, { recursive: true })
let out = flag('out')
if (!out) {
  const d = new Date().toISOString().slice(0, 10)
  let k = 1
  while (fs.existsSync(path.join(outDir, `${d}-cluster-${k}.json`))) k++
  out = path.join(outDir, `${d}-cluster-${k}.json`)
}
const save = () => fs.writeFileSync(out, JSON.stringify(results, null, 1))
console.error(`Redis ${redis.version} on ${redis.url}; servers ${cfg.servers.join(', ')}; N ${cfg.n}; rounds ${cfg.rounds}; results ${path.relative(root, out)}`)
try {
  for (let round = 1; round <= cfg.rounds; round++) {
    for (const name of cfg.servers) {
      results.sessions.push(await session(redis, name, round))
      save()
    }
  }
} finally {
  try { await redisCmd(redis.port, 'SHUTDOWN', 'NOSAVE') } catch {}
  await new Promise((r) => (redis.p.exitCode !== null ? r() : redis.p.once('exit', r)))
  children.delete(redis.p)
}

// ---------- summary: medians and min–max over rounds ----------
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }
const stat = (xs) => (xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length } : null)
results.summary = {}
for (const name of cfg.servers) {
  const ok = results.sessions.filter((s) => s.server === name && !s.error)
  results.summary[name] = {
    msgsPerSec: stat(ok.map((s) => s.A.msgsPerSec)),
    deliveredRatioA: stat(ok.map((s) => s.A.deliveredRatio)),
    p99UsAt2: stat(ok.map((s) => s.B2.p99Us)),
    p50UsAt2: stat(ok.map((s) => s.B2.p50Us)),
    redisCpuUsPerBroadcast: stat(ok.map((s) => s.A.redisCpuUsPerBroadcast)),
    redisNetCpuUsPerBroadcast: stat(ok.map((s) => s.A.redisNetCpuUsPerBroadcast)),
    redisCpuUsPerBroadcastAt2: stat(ok.map((s) => s.B2.redisCpuUsPerBroadcast)),
    redisNetCpuUsPerBroadcastAt2: stat(ok.map((s) => s.B2.redisNetCpuUsPerBroadcast)),
    redisIdleCpuShare: stat(ok.map((s) => s.redisIdleCpuShare)),
    broadcastsA: stat(ok.map((s) => s.A.broadcasts)),
    redisCpuUsPerBroadcastAtEq: stat(ok.map((s) => s.R.redisCpuUsPerBroadcast)),
    redisNetCpuUsPerBroadcastAtEq: stat(ok.map((s) => s.R.redisNetCpuUsPerBroadcast)),
    p99UsAtEq: stat(ok.map((s) => s.R.p99Us)),
    deliveredRatioAtEq: stat(ok.map((s) => s.R.deliveredRatio)),
  }
}
results.meta.finishedAt = new Date().toISOString()
save()
console.log(JSON.stringify(results.summary, null, 1))
console.error(`wrote ${path.relative(root, out)}`)
