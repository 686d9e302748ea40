#!/usr/bin/env node
// Benchmark runner (issue 5). `npm run bench` at the repo root builds the
// addon, installs the bench's deps, patches uWebSockets.js and builds the load
// generator, then runs this file, which runs every (server, N) session in
// interleaved rounds and writes bench/results/<date>-<run>.json, then calls
// report.mjs to regenerate docs/benchmarks.md and docs/bench-chart.svg.
//
// Options (CLI flag or env var; CLI wins):
//   --servers a,b    BENCH_SERVERS    default: all adapters that start
//   --n 1000,5000    BENCH_N          default 1000,5000,10000
//   --rounds R       BENCH_ROUNDS     default 2 (interleaved: round > N > server)
//   --scenarios ..   BENCH_SCENARIOS  default A,B,C,D,E,F
//   --quick          BENCH_QUICK=1    N=1000,5000 and short durations
//   --sat-ms, --rate-ms, --rate200-ms, --cost-count, --ai-ms, --ai-n
//   --pace-ms, --pace-bytes           F: window (5000) and cap (1048576)
//   --rss-limit-mb M                  F: kill a server whose RSS passes M
//   --server-cpu C / --loadgen-cpu C  cores for taskset (default 1 / 0)
//   --no-report                       skip report.mjs
//   --out FILE                        results path
// Every child is killed when this process exits, also on error or signal.
import { spawn, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { children, hasTaskset, Proc, cpuMs, machineBusyMs, rssKb, sleep } from './proc.mjs'
import { paceScenario } from './pace.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const LOADGEN = path.join(here, 'loadgen/target/release/cluso-loadgen')

// ---------- options ----------
const argv = process.argv.slice(2)
const flag = (name) => {
  const i = argv.indexOf(`--${name}`)
  if (i < 0) return undefined
  const v = argv[i + 1]
  return v === undefined || v.startsWith('--') ? true : v
}
const opt = (name, env, dflt) => flag(name) ?? process.env[env] ?? dflt
const quick = Boolean(flag('quick') ?? (process.env.BENCH_QUICK === '1'))
const list = (v) => String(v).split(',').map((s) => s.trim()).filter(Boolean)
const ALL_SERVERS = ['baseline-ws', 'uws', 'socketio', 'cluso-native', 'cluso-native-history', 'cluso-attach', 'cluso-dropin']
const cfg = {
  servers: list(opt('servers', 'BENCH_SERVERS', ALL_SERVERS.join(','))),
  ns: list(opt('n', 'BENCH_N', quick ? '1000,5000' : '1000,5000,10000')).map(Number),
  rounds: Number(opt('rounds', 'BENCH_ROUNDS', 2)),
  scenarios: list(opt('scenarios', 'BENCH_SCENARIOS', 'A,B,C,D,E,F')),
  satMs: Number(opt('sat-ms', 'BENCH_SAT_MS', quick ? 3000 : 8000)),
  rateMs: Number(opt('rate-ms', 'BENCH_RATE_MS', quick ? 3000 : 6000)),
  rate200Ms: Number(opt('rate200-ms', 'BENCH_RATE200_MS', quick ? 2000 : 4000)),
  costCount: Number(opt('cost-count', 'BENCH_COST_COUNT', quick ? 20 : 40)),
  aiMs: Number(opt('ai-ms', 'BENCH_AI_MS', quick ? 3000 : 5000)),
  aiN: Number(opt('ai-n', 'BENCH_AI_N', 1000)),
  paceMs: Number(opt('pace-ms', 'BENCH_PACE_MS', quick ? 3000 : 5000)),
  paceBytes: Number(opt('pace-bytes', 'BENCH_PACE_BYTES', 1024 * 1024)),
  rssLimitMb: Number(opt('rss-limit-mb', 'BENCH_RSS_LIMIT_MB', Math.min(8192, Math.round((os.totalmem() / 2 ** 20) * 0.4)))),
  serverCpu: String(opt('server-cpu', 'BENCH_SERVER_CPU', os.cpus().length > 1 ? '1' : '0')),
  loadgenCpu: String(opt('loadgen-cpu', 'BENCH_LOADGEN_CPU', '0')),
  quietWaitS: Number(opt('quiet-wait', 'BENCH_QUIET_WAIT', 60)),
  retryNoisy: Number(opt('retry-noisy', 'BENCH_RETRY_NOISY', 1)),
  addon: opt('addon', 'BENCH_ADDON', undefined),
  nice: Number(opt('nice', 'BENCH_NICE', process.getuid?.() === 0 ? -10 : 0)),
  perf: Boolean(flag('perf') ?? (process.env.BENCH_PERF === '1')),
  quick,
}
const noReport = Boolean(flag('no-report'))

/**
 * Other work on the machine (the bench shares it with builds and tests):
 * samples machine CPU while none of our children runs, and waits (bounded by
 * --quiet-wait seconds) until it is below 0.25 of a core.
 */
async function waitQuiet() {
  const deadline = performance.now() + cfg.quietWaitS * 1000
  let load = 0
  for (;;) {
    const b0 = machineBusyMs(), t0 = performance.now()
    await sleep(500)
    load = (machineBusyMs() - b0) / (performance.now() - t0)
    if (!(load > 0.25) || performance.now() >= deadline) return load
  }
}

// ---------- servers ----------
function serverSpec(name) {
  const file = path.join(here, 'servers', `${name}.mjs`)
  const env = {}
  if (name.startsWith('cluso') && cfg.addon) env.NAPI_RS_NATIVE_LIBRARY_PATH = path.resolve(cfg.addon)
  if (name === 'uws') {
    const pre = path.join(here, '.uws/preload')
    if (!fs.existsSync(pre)) throw new Error('uWebSockets.js not set up: run bash bench/setup-uws.sh')
    const p = fs.readFileSync(pre, 'utf8').trim()
    if (p) env.LD_PRELOAD = p
  }
  return { file, env }
}

async function startServer(name) {
  const { file, env } = serverSpec(name)
  const nodeArgs = ['--expose-gc', ...(cfg.perf ? ['--perf-basic-prof-only-functions'] : []), file]
  const p = new Proc(name, process.execPath, nodeArgs, { env, cpu: cfg.serverCpu, nice: cfg.nice })
  const hello = await p.wait((v) => v.event === 'listening', 30000, 'listening')
  p.hello = hello
  return p
}

function startLoadgen(url, n, mode, channel) {
  const args = ['--url', url, '--conns', String(n), '--mode', mode, '--channel', channel,
    '--concurrency', '256', '--connect-timeout', String(60 + n / 100), '--max-seconds', '900']
  return new Proc('loadgen', LOADGEN, args, { cpu: cfg.loadgenCpu, nice: cfg.nice })
}

function loadgenUrl(hello) {
  return hello.mode === 'socketio'
    ? hello.url.replace(/\/?$/, '') + '/socket.io/?EIO=4&transport=websocket'
    : hello.url
}

/**
 * Runs one measured phase: loadgen counts while the server runs `cmd`, then
 * waits for `expect` messages (`conns` subscribers, default all connected),
 * ending early after `quietMs` without any or after `maxDrainMs`.
 */
async function phase(server, lg, label, cmd, timeoutMs, { conns = lg.connections, quietMs = 2000, maxDrainMs = 60000 } = {}) {
  const i0 = await server.call({ cmd: 'info' }, 30000)
  await lg.call({ cmd: 'start', label }, 10000).catch(() => {})
  const prof = cfg.perf && ['A', 'B2', 'C', 'E', 'F'].includes(label) ? await startPerf(server, label) : null
  const c0 = { s: cpuMs(server.pid), l: cpuMs(lg.pid), m: machineBusyMs(), t: performance.now() }
  const res = await server.call(cmd, timeoutMs)
  const perf = prof ? await prof.finish() : undefined
  const c1 = { s: cpuMs(server.pid), l: cpuMs(lg.pid), t: performance.now() }
  if (!res.ok) throw new Error(`${server.label} ${cmd.cmd}: ${res.error}`)
  const expect = res.broadcasts * conns
  // Everything sent must arrive (or the server's backlog must be empty and
  // the clients quiet) before the next phase starts.
  lg.send({ cmd: 'stop', label, expect, quietMs, maxDrainMs })
  const got = await lg.wait((v) => v.label === label && v.delivered !== undefined, 90000, `${label} result`)
  const left = await server.call({ cmd: 'info' }, 30000)
  const c2 = { s: cpuMs(server.pid), l: cpuMs(lg.pid), m: machineBusyMs(), t: performance.now() }
  const serverCpuMs = c2.s - c0.s
  // the same utime+stime from getrusage in the server (µs, not 10 ms ticks),
  // from just before the loadgen's start to just after its result
  const fineCpuMs = (left.cpuUs - i0.cpuUs) / 1000
  // CPU used by anything else on the machine during the phase, in cores
  const foreignCores = (c2.m - c0.m - serverCpuMs - (c2.l - c0.l)) / (c2.t - c0.t)
  return {
    server: res,
    loadgen: got,
    expected: expect,
    lossRatio: expect > 0 ? 1 - got.delivered / expect : 0,
    serverCpuMs,
    loadgenCpuMs: c2.l - c0.l,
    wallMs: c2.t - c0.t,
    serverCpuUsPerMsg: got.delivered > 0 ? (serverCpuMs * 1000) / got.delivered : null,
    serverCpuUsPerMsgFine: got.delivered > 0 && Number.isFinite(fineCpuMs) ? (fineCpuMs * 1000) / got.delivered : null,
    loadgenCpuShare: (c1.l - c0.l) / (c1.t - c0.t),
    serverCpuShare: (c1.s - c0.s) / (c1.t - c0.t),
    foreignCores: Math.max(0, foreignCores),
    serverQueuedAfter: left.queuedBytes,
    perf,
  }
}

async function session(name, n, round, kind) {
  const rec = { server: name, n, round, kind, startedAt: new Date().toISOString() }
  let server, lg
  const log = (s) => console.error(`[r${round} ${name} N=${n} ${kind}] ${s}`)
  try {
    rec.foreignCoresBefore = await waitQuiet()
    server = await startServer(name)
    server.n = n
    rec.versions = server.hello.versions
    const want = (s) => kind === 'main' && cfg.scenarios.includes(s)
    let memBefore
    if (want('D')) memBefore = await server.call({ cmd: 'mem' }, 20000)
    const channel = kind === 'ai' ? 'ai-response' : 'files'
    lg = startLoadgen(loadgenUrl(server.hello), n, server.hello.mode, channel)
    const ready = await lg.wait((v) => v.ready, (90 + n / 50) * 1000, 'loadgen ready')
    lg.connections = ready.connections
    rec.connect = ready
    log(`connected ${ready.connections}/${n} in ${ready.connectMs} ms${ready.failed ? `, ${ready.failed} failed: ${ready.firstError}` : ''}`)
    if (ready.connections === 0) throw new Error(`no connection: ${ready.firstError}`)
    const info = await server.call({ cmd: 'info' }, 10000)
    rec.serverConnections = info.connections
    if (want('D')) {
      const after = await server.call({ cmd: 'mem' }, 20000)
      rec.D = {
        rssBefore: memBefore.rss, rssAfter: after.rss, connections: ready.connections,
        bytesPerConn: (after.rss - memBefore.rss) / ready.connections,
        heapPerConn: (after.heapUsed - memBefore.heapUsed) / ready.connections,
        gc: after.gc,
      }
      log(`D: ${(rec.D.bytesPerConn / 1024).toFixed(2)} KiB/conn`)
    }
    if (want('C')) {
      // run as a phase so that every cost broadcast has arrived before B starts
      const ph = await phase(server, lg, 'C', { cmd: 'cost', count: cfg.costCount }, 180000)
      rec.C = { ...ph.server, latencyUs: ph.loadgen.latencyUs, lossRatio: ph.lossRatio, foreignCores: ph.foreignCores, perf: ph.perf }
      log(`C: broadcast() median ${rec.C.medianUs.toFixed(1)} µs, p99 ${rec.C.p99Us.toFixed(1)} µs (process CPU median ${rec.C.cpuMedianUs} µs)`)
    }
    if (want('B')) {
      rec.B2 = await phase(server, lg, 'B2', { cmd: 'rate', perSec: 2, durationMs: cfg.rateMs }, cfg.rateMs * 4 + 20000)
      log(`B 2/s: p50 ${rec.B2.loadgen.latencyUs.p50} p99 ${rec.B2.loadgen.latencyUs.p99} max ${rec.B2.loadgen.latencyUs.max} µs, server ${rec.B2.serverCpuUsPerMsg?.toFixed(2)} µs CPU/msg (getrusage ${rec.B2.serverCpuUsPerMsgFine?.toFixed(2)})`)
      rec.B200 = await phase(server, lg, 'B200', { cmd: 'rate', perSec: 200, durationMs: cfg.rate200Ms }, cfg.rate200Ms * 4 + 20000)
      log(`B 200/s: p50 ${rec.B200.loadgen.latencyUs.p50} p99 ${rec.B200.loadgen.latencyUs.p99} µs, ${rec.B200.server.broadcasts}/${rec.B200.server.planned} sent`)
    }
    if (want('A')) {
      rec.A = await phase(server, lg, 'A', { cmd: 'saturate', durationMs: cfg.satMs }, cfg.satMs * 3 + 30000)
      log(`A: ${Math.round(rec.A.loadgen.msgsPerSec)} msgs/s, server ${rec.A.serverCpuUsPerMsg?.toFixed(3)} µs CPU/msg, loadgen CPU ${(rec.A.loadgenCpuShare * 100).toFixed(0)}%, loss ${(rec.A.lossRatio * 100).toFixed(2)}%, other load ${rec.A.foreignCores.toFixed(2)} cores`)
    }
    // F last: it may leave backlogs or cut subscribers as slow consumers
    if (want('F')) rec.F = await paceScenario({ server, lg, cfg, phase, log })
    if (kind === 'ai') {
      rec.E = await phase(server, lg, 'E', { cmd: 'ai', streams: 100, chunksPerSec: 50, durationMs: cfg.aiMs }, cfg.aiMs * 4 + 30000)
      log(`E: ${Math.round(rec.E.server.achievedPerSec)}/${rec.E.server.targetPerSec} chunks/s, ${Math.round(rec.E.loadgen.msgsPerSec)} msgs/s delivered, p99 ${rec.E.loadgen.latencyUs.p99} µs`)
    }
    rec.serverRssKbEnd = rssKb(server.pid)
    const st = await lg.call({ cmd: 'status' }, 10000)
    rec.loadgenEnd = st
  } catch (e) {
    rec.error = String(e?.message ?? e)
    log(`ERROR ${rec.error}`)
  } finally {
    if (lg) { lg.send({ cmd: 'exit' }); await lg.stop(5000) }
    if (server) { server.send({ cmd: 'exit' }); await server.stop(5000) }
  }
  return rec
}

/**
 * --perf: samples the server process (all threads, call graphs, 499 Hz) with
 * `perf record` for the phase; keeps the data under bench/results/perf/ and the
 * top symbols (self time) in the results. With inferno's tools on PATH it
 * also writes a flamegraph SVG.
 */
async function startPerf(server, label) {
  const dir = path.join(here, 'results/perf')
  fs.mkdirSync(dir, { recursive: true })
  const base = path.join(dir, `${server.label}-${server.n ?? 'n'}-${label}-${Date.now()}`)
  const rec = spawn('perf', ['record', '-F', '499', '-g', '-p', String(server.pid), '-o', `${base}.perf.data`], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(rec)
  let err = ''
  rec.stderr.on('data', (d) => { err += d })
  const exited = new Promise((r) => rec.on('exit', r))
  await sleep(300) // perf needs a moment to attach; there is no event for it
  return {
    async finish() {
      rec.kill('SIGINT')
      const t = setTimeout(() => rec.kill('SIGKILL'), 10000)
      await exited
      clearTimeout(t)
      children.delete(rec)
      let top = ''
      try {
        top = execFileSync('perf', ['report', '-i', `${base}.perf.data`, '--stdio', '--no-children', '--sort', 'dso,sym', '-g', 'none', '--percent-limit', '0.7'],
          { maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] }).toString()
          .split('\n').filter((l) => l && !l.startsWith('#')).slice(0, 40).join('\n')
      } catch (e) { top = `perf report failed: ${e.message}` }
      let flamegraph
      try {
        const folded = execFileSync('sh', ['-c', `perf script -i '${base}.perf.data' | inferno-collapse-perf`], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] })
        fs.writeFileSync(`${base}.svg`, execFileSync('inferno-flamegraph', [], { input: folded, maxBuffer: 1 << 30 }))
        flamegraph = path.relative(root, `${base}.svg`)
      } catch {}
      return { data: path.relative(root, `${base}.perf.data`), top, flamegraph, perfStderr: err.slice(-500) }
    },
  }
}

/** Other load above this many cores during a phase marks the session noisy. */
const NOISY_CORES = 0.3
const noisiness = (rec) => Math.max(0, ...['A', 'B2', 'B200', 'C', 'E', 'F'].map((k) => rec[k]?.foreignCores ?? 0))

/** A session, repeated up to --retry-noisy times while other load disturbed it; keeps the least disturbed. */
async function measured(name, n, round, kind) {
  let best = await session(name, n, round, kind)
  const attempts = []
  for (let i = 0; i < cfg.retryNoisy && !best.error && noisiness(best) > NOISY_CORES; i++) {
    console.error(`[r${round} ${name} N=${n} ${kind}] other load ${noisiness(best).toFixed(2)} cores: repeating`)
    const again = await session(name, n, round, kind)
    attempts.push(best, again)
    if (!again.error && noisiness(again) < noisiness(best)) best = again
  }
  if (attempts.length) best.noisyAttempts = attempts.filter((a) => a !== best).map((a) => ({ noisiness: noisiness(a), error: a.error }))
  best.noisiness = noisiness(best)
  return best
}

async function probe(name) {
  try {
    const s = await startServer(name)
    const hello = s.hello
    s.send({ cmd: 'exit' })
    await s.stop(3000)
    return { ok: true, hello }
  } catch (e) {
    return { ok: false, error: String(e?.message ?? e).slice(0, 600) }
  }
}

function machineInfo() {
  const cpus = os.cpus()
  let glibc = ''
  try { glibc = execFileSync('ldd', ['--version']).toString().split('\n')[0] } catch {}
  return {
    cpuModel: cpus[0]?.model, cpus: cpus.length, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: os.release(), platform: `${os.platform()} ${os.arch()}`, glibc, node: process.version,
    taskset: hasTaskset,
  }
}

// ---------- main ----------
if (!fs.existsSync(LOADGEN)) {
  console.error(`load generator missing: cargo build --release --manifest-path ${path.relative(process.cwd(), path.join(here, 'loadgen/Cargo.toml'))}`)
  process.exit(2)
}
const servers = []
const skipped = {}
const versions = {}
for (const name of cfg.servers) {
  const p = await probe(name)
  if (p.ok) { servers.push(name); versions[name] = p.hello.versions } else { skipped[name] = p.error; console.error(`skip ${name}: ${p.error}`) }
}
function addonRev() {
  if (cfg.addon) {
    const f = path.join(path.dirname(path.resolve(cfg.addon)), 'REV')
    return fs.existsSync(f) ? `${fs.readFileSync(f, 'utf8').trim()} (${path.relative(root, path.resolve(cfg.addon))})` : path.relative(root, path.resolve(cfg.addon))
  }
  try {
    const rev = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim()
    const dirty = execFileSync('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'Cargo.toml']).toString().trim()
    return dirty ? `${rev}+uncommitted changes` : rev
  } catch { return 'unknown' }
}
const results = { meta: { date: new Date().toISOString(), machine: machineInfo(), config: cfg, versions, skipped, addonRev: addonRev() }, sessions: [] }
const dateStr = new Date().toISOString().slice(0, 10)
const outDir = path.join(here, 'results')
fs.mkdirSync(outDir, { recursive: true })
let out = flag('out')
if (!out) {
  let k = 1
  while (fs.existsSync(path.join(outDir, `${dateStr}-${k}.json`))) k++
  out = path.join(outDir, `${dateStr}-${k}.json`)
}
const save = () => fs.writeFileSync(out, JSON.stringify(results, null, 1))
console.error(`servers: ${servers.join(', ')}; N: ${cfg.ns.join(', ')}; rounds: ${cfg.rounds}; results: ${path.relative(root, out)}`)

const mainScen = cfg.scenarios.some((s) => 'ABCDF'.includes(s))
for (let round = 1; round <= cfg.rounds; round++) {
  if (mainScen) {
    for (const n of cfg.ns) {
      for (const name of servers) {
        results.sessions.push(await measured(name, n, round, 'main'))
        save()
      }
    }
  }
  if (cfg.scenarios.includes('E')) {
    for (const name of servers) {
      results.sessions.push(await measured(name, cfg.aiN, round, 'ai'))
      save()
    }
  }
}
results.meta.finishedAt = new Date().toISOString()
save()
console.error(`wrote ${path.relative(root, out)}`)
if (!noReport) {
  const r = spawn(process.execPath, [path.join(here, 'report.mjs'), out], { stdio: 'inherit' })
  children.add(r)
  await new Promise((res) => r.on('exit', res))
}
