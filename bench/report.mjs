#!/usr/bin/env node
// Turns bench/results/*.json into docs/benchmarks.md and docs/bench-chart.svg.
//   node bench/report.mjs [results.json ...]   (default: the newest result file)
// Medians over rounds, spread as min–max. bench/notes.md (hand-written:
// profiles, findings, optimisations) is copied into the page verbatim.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const resultsDir = path.join(here, 'results')

let files = process.argv.slice(2).filter((a) => !a.startsWith('--'))
if (files.length === 0) {
  const all = fs.existsSync(resultsDir) ? fs.readdirSync(resultsDir).filter((f) => f.endsWith('.json')).sort() : []
  if (all.length === 0) { console.error('no results in bench/results'); process.exit(2) }
  const byTime = all.map((f) => [f, fs.statSync(path.join(resultsDir, f)).mtimeMs]).sort((a, b) => a[1] - b[1])
  files = [path.join(resultsDir, byTime.at(-1)[0])]
}
const runs = files.map((f) => ({ file: f, ...JSON.parse(fs.readFileSync(f, 'utf8')) }))
// each session remembers its file: ratios pair sessions of the same run and round
const sessions = runs.flatMap((r) => r.sessions.map((x) => ({ ...x, file: r.file })))
const meta = runs[0].meta

const ORDER = ['cluso-native', 'cluso-native-history', 'cluso-attach', 'cluso-dropin', 'uws', 'baseline-ws', 'socketio']
const LABEL = {
  'cluso-native': 'cluso-ws native (listen)',
  'cluso-native-history': 'cluso-ws native, historySize 1000',
  'cluso-attach': 'cluso-ws attach',
  'cluso-dropin': 'cluso-ws drop-in (ws sockets)',
  uws: 'uWebSockets.js pub/sub',
  'baseline-ws': 'baseline: original on ws',
  socketio: 'Socket.IO rooms',
}
const COLOR = {
  'cluso-native': '#d62728', 'cluso-native-history': '#8c564b', 'cluso-attach': '#ff7f0e', 'cluso-dropin': '#e377c2',
  uws: '#1f77b4', 'baseline-ws': '#7f7f7f', socketio: '#2ca02c',
}
const servers = ORDER.filter((s) => sessions.some((x) => x.server === s))
  .concat([...new Set(sessions.map((x) => x.server))].filter((s) => !ORDER.includes(s)))
const mainNs = [...new Set(sessions.filter((s) => s.kind === 'main').map((s) => s.n))].sort((a, b) => a - b)

// ---------- statistics ----------
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!s.length) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
function values(server, n, kind, get) {
  return sessions.filter((s) => s.server === server && s.n === n && s.kind === kind && !s.error)
    .map((s) => { try { return get(s) } catch { return NaN } })
    .filter((v) => Number.isFinite(v))
}
const stat = (server, n, kind, get) => {
  const v = values(server, n, kind, get)
  return { med: median(v), min: Math.min(...v), max: Math.max(...v), k: v.length }
}

/**
 * `server` ÷ `ref` in the same run, round and N (paired per round), as a stat
 * over rounds: ratios to uWebSockets.js in the same run (issue 12).
 */
function ratioStat(server, n, kind, get, ref = 'uws') {
  const v = []
  for (const s of sessions) {
    if (s.server !== server || s.n !== n || s.kind !== kind || s.error) continue
    const r = sessions.find((x) => x.server === ref && x.n === n && x.kind === kind && x.round === s.round && x.file === s.file && !x.error)
    if (!r) continue
    let a, b
    try { a = get(s); b = get(r) } catch { continue }
    if (Number.isFinite(a) && Number.isFinite(b) && b !== 0) v.push(a / b)
  }
  return { med: median(v), min: Math.min(...v), max: Math.max(...v), k: v.length }
}

// ---------- formatting ----------
const fmtNum = (x, digits = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–')
function fmtRate(x) {
  if (!Number.isFinite(x)) return '–'
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M`
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k`
  return x.toFixed(0)
}
function fmtUs(x) {
  if (!Number.isFinite(x)) return '–'
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} s`
  if (x >= 1e3) return `${(x / 1e3).toFixed(x >= 1e5 ? 0 : 1)} ms`
  return `${x.toFixed(x >= 100 ? 0 : 1)} µs`
}
const fmtKiB = (b) => (Number.isFinite(b) ? `${(b / 1024).toFixed(2)} KiB` : '–')
const cell = (st, f) => {
  if (!st.k) return '–'
  if (st.k === 1) return f(st.med)
  return `${f(st.med)} <sub>(${f(st.min)}–${f(st.max)})</sub>`
}

const fmtRatio = (x) => `${x.toFixed(2)}×`

/** One row per server, one column per N; with `ref`, each cell also gives the paired ratio to `ref`. */
function table(title, kind, ns, get, f, note, ref) {
  const lines = [`### ${title}`, '']
  if (note) lines.push(note, '')
  if (ref) lines.push(`Cells: value · ratio to ${LABEL[ref] ?? ref} in the same run and round (median over rounds).`, '')
  lines.push(`| server | ${ns.map((n) => `N = ${fmtNum(n)}`).join(' | ')} |`)
  lines.push(`|---|${ns.map(() => '---:').join('|')}|`)
  for (const s of servers) {
    const cells = ns.map((n) => {
      const c = cell(stat(s, n, kind, get), f)
      if (!ref || s === ref || c === '–') return c
      const r = ratioStat(s, n, kind, get, ref)
      return r.k ? `${c} · ${cell(r, fmtRatio)}` : c
    })
    if (cells.every((c) => c === '–')) continue
    lines.push(`| ${LABEL[s] ?? s} | ${cells.join(' | ')} |`)
  }
  lines.push('')
  return lines.join('\n')
}

// ---------- targets (issue 5) ----------
function targets() {
  const rows = []
  const m = (s, n, g, kind = 'main') => stat(s, n, kind, g).med
  const thr = (s) => s.A.loadgen.msgsPerSec
  const cpu = (s) => s.A.serverCpuUsPerMsg
  const lgBound = (n) => median(values('cluso-native', n, 'main', (s) => s.A.loadgenCpuShare)) > 0.9
  const verdict = (ok) => (ok === undefined ? 'not measured' : ok ? '**met**' : '**missed**')
  for (const n of mainNs) {
    const nat = m('cluso-native', n, thr), uws = m('uws', n, thr), base = m('baseline-ws', n, thr)
    const natCpu = m('cluso-native', n, cpu), uwsCpu = m('uws', n, cpu)
    let ok
    if (Number.isFinite(nat) && Number.isFinite(uws) && Number.isFinite(base)) {
      ok = (nat >= uws && nat >= 20 * base) || (lgBound(n) && natCpu <= uwsCpu && nat >= 20 * base)
    }
    rows.push([`1. native throughput ≥ 1.0× uWS and ≥ 20× baseline (or CPU/msg ≤ uWS when the load generator is the limit), N = ${fmtNum(n)}`,
      `${(nat / uws).toFixed(2)}× uWS, ${(nat / base).toFixed(1)}× baseline; CPU/msg ${natCpu?.toFixed?.(3)} vs ${uwsCpu?.toFixed?.(3)} µs`, verdict(ok)])
  }
  for (const n of mainNs) {
    const c = m('cluso-native', n, (s) => s.C.medianUs)
    rows.push([`2. broadcast() median ≤ 10 µs (native subscribers), N = ${fmtNum(n)}`, fmtUs(c), verdict(Number.isFinite(c) ? c <= 10 : undefined)])
  }
  for (const n of mainNs.filter((n) => n >= 5000)) {
    const a = m('cluso-native', n, (s) => s.B2.loadgen.latencyUs.p99), b = m('uws', n, (s) => s.B2.loadgen.latencyUs.p99)
    rows.push([`3. p99 at 2/s ≤ 0.5× uWS, N = ${fmtNum(n)}`, `${fmtUs(a)} vs ${fmtUs(b)} (${(a / b).toFixed(2)}×)`, verdict(Number.isFinite(a / b) ? a / b <= 0.5 : undefined)])
  }
  const nMax = mainNs.at(-1)
  if (nMax !== undefined) {
    const d = m('cluso-native', nMax, (s) => s.D.bytesPerConn)
    rows.push([`4. RSS per idle native connection ≤ 2 KiB, N = ${fmtNum(nMax)}`, fmtKiB(d), verdict(Number.isFinite(d) ? d <= 2048 : undefined)])
  }
  for (const n of mainNs) {
    const a = m('cluso-dropin', n, thr), b = m('baseline-ws', n, thr)
    const ca = m('cluso-dropin', n, (s) => s.C.medianUs), cb = m('baseline-ws', n, (s) => s.C.medianUs)
    rows.push([`5. drop-in ≥ 1.0× baseline throughput, broadcast() no costlier, N = ${fmtNum(n)}`,
      `${(a / b).toFixed(2)}× throughput; broadcast() ${fmtUs(ca)} vs ${fmtUs(cb)}`,
      verdict(Number.isFinite(a / b) && Number.isFinite(ca / cb) ? a >= b && ca <= cb : undefined)])
  }
  return ['| target | measured (medians) | verdict |', '|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`), ''].join('\n')
}

// ---------- targets (issue 12): ratios to uWebSockets.js in the same run ----------
function targets12() {
  const ns = mainNs
  const verdict = (ok) => (ok === undefined ? '' : ok ? ' — **met**' : ' — **missed**')
  const ratioCell = (srv, ref, n, get, ok, fmt = fmtUs) => {
    const r = ratioStat(srv, n, 'main', get, ref)
    if (!r.k) return '–'
    const a = stat(srv, n, 'main', get).med, b = stat(ref, n, 'main', get).med
    return `${fmtRatio(r.med)} (${fmt(a)} vs ${fmt(b)})${verdict(ok(r.med))}`
  }
  const absCell = (srv, n, get, fmt, ok) => {
    const st = stat(srv, n, 'main', get)
    return st.k ? `${cell(st, fmt)}${verdict(ok(st.med))}` : '–'
  }
  const p99 = (s) => s.B2.loadgen.latencyUs.p99
  const cpu2 = (s) => s.B2.serverCpuUsPerMsg
  const thr = (s) => s.A.loadgen.msgsPerSec
  const fmtCpu = (x) => `${x.toFixed(2)} µs`
  const fmtMs = (x) => `${x.toFixed(x >= 100 ? 0 : 2)} ms`
  const rows = [
    ['p99 at 2/s ≤ 1.0× uWS (moonshot 0.5×)', (n) => ratioCell('cluso-native', 'uws', n, p99, (r) => r <= 1)],
    ['server CPU per message at 2/s ≤ 1.0× uWS', (n) => ratioCell('cluso-native', 'uws', n, cpu2, (r) => r <= 1, fmtCpu)],
    ['saturation ≥ 1.0× uWS, every message delivered', (n) => {
      const loss = stat('cluso-native', n, 'main', (s) => s.A.lossRatio).med
      const c = ratioCell('cluso-native', 'uws', n, thr, (r) => r >= 1 && loss <= 0.001, fmtRate)
      return c === '–' ? c : `${c}; loss ${(100 * loss).toFixed(2)} %`
    }],
    ['longest broadcast() ≤ 5 ms (F: producer pacing at 1 MiB; delivered ratio and closes beside it)', (n) => {
      const c = absCell('cluso-native', n, (s) => s.F.server.longestCallMs, fmtMs, (x) => x <= 5)
      const d = stat('cluso-native', n, 'main', (s) => s.F.deliveredRatio).med
      const cl = stat('cluso-native', n, 'main', (s) => s.F.closesSeen).med
      return c === '–' ? c : `${c}; delivered ${(100 * d).toFixed(2)} %, ${fmtNum(cl)} closed`
    }],
    ['≤ 2 KiB RSS per idle connection (D)', (n) => absCell('cluso-native', n, (s) => s.D.bytesPerConn, fmtKiB, (x) => x <= 2048)],
    ['cold broadcast() median ≤ 10 µs (C)', (n) => absCell('cluso-native', n, (s) => s.C.medianUs, fmtUs, (x) => x <= 10)],
    ['drop-in: RSS per connection ≤ 1.0× the original on ws', (n) => ratioCell('cluso-dropin', 'baseline-ws', n, (s) => s.D.bytesPerConn, (r) => r <= 1, fmtKiB)],
    ['drop-in: server CPU per message at 2/s ≤ 1.0× the original', (n) => ratioCell('cluso-dropin', 'baseline-ws', n, cpu2, (r) => r <= 1, fmtCpu)],
    ['drop-in: throughput ≥ 1.0× the original', (n) => ratioCell('cluso-dropin', 'baseline-ws', n, thr, (r) => r >= 1, fmtRate)],
  ]
  return [
    'cluso-ws native (`listen`) unless named; ratios paired per round (same run, same N), medians over rounds; figures are the medians of each.',
    '',
    `| target | ${ns.map((n) => `N = ${fmtNum(n)}`).join(' | ')} |`,
    `|---|${ns.map(() => '---').join('|')}|`,
    ...rows.map(([t, f]) => `| ${t} | ${ns.map(f).join(' | ')} |`),
    '',
  ].join('\n')
}

// ---------- SVG ----------
function chart() {
  const W = 980, H = 420, pad = { l: 78, r: 18, t: 46, b: 58 }, gap = 70
  const pw = (W - pad.l - pad.r - gap) / 2, ph = H - pad.t - pad.b
  const ns = mainNs
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + 24 * Math.ceil(servers.length / 3)}" font-family="Helvetica,Arial,sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`]
  const xPos = (x0, n) => x0 + (ns.length === 1 ? pw / 2 : (ns.indexOf(n) / (ns.length - 1)) * pw)
  function panel(x0, title, get, fmtTick) {
    const vals = servers.flatMap((s) => ns.map((n) => stat(s, n, 'main', get).med)).filter((v) => Number.isFinite(v) && v > 0)
    if (!vals.length) return
    let lo = Math.floor(Math.log10(Math.min(...vals))), hi = Math.ceil(Math.log10(Math.max(...vals)))
    if (hi === lo) hi++
    const y = (v) => pad.t + ph - ((Math.log10(v) - lo) / (hi - lo)) * ph
    out.push(`<text x="${x0 + pw / 2}" y="${pad.t - 18}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`)
    out.push(`<rect x="${x0}" y="${pad.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`)
    for (let e = lo; e <= hi; e++) {
      for (const mul of [1, 2, 5]) {
        const v = mul * 10 ** e
        if (Math.log10(v) > hi + 1e-9) continue
        const yy = y(v)
        out.push(`<line x1="${x0}" x2="${x0 + pw}" y1="${yy}" y2="${yy}" stroke="${mul === 1 ? '#ccc' : '#eee'}"/>`)
        if (mul === 1 || hi - lo <= 2) out.push(`<text x="${x0 - 6}" y="${yy + 4}" text-anchor="end">${esc(fmtTick(v))}</text>`)
      }
    }
    for (const n of ns) {
      const xx = xPos(x0, n)
      out.push(`<line x1="${xx}" x2="${xx}" y1="${pad.t + ph}" y2="${pad.t + ph + 5}" stroke="#666"/>`)
      out.push(`<text x="${xx}" y="${pad.t + ph + 19}" text-anchor="middle">${fmtNum(n)}</text>`)
    }
    out.push(`<text x="${x0 + pw / 2}" y="${pad.t + ph + 40}" text-anchor="middle">subscribers (N)</text>`)
    for (const s of servers) {
      const pts = ns.map((n) => [xPos(x0, n), stat(s, n, 'main', get)]).filter(([, st]) => st.k && st.med > 0)
      if (!pts.length) continue
      const c = COLOR[s] ?? '#000'
      out.push(`<polyline fill="none" stroke="${c}" stroke-width="2.2" points="${pts.map(([xx, st]) => `${xx.toFixed(1)},${y(st.med).toFixed(1)}`).join(' ')}"/>`)
      for (const [xx, st] of pts) {
        if (st.k > 1) out.push(`<line x1="${xx}" x2="${xx}" y1="${y(st.min).toFixed(1)}" y2="${y(st.max).toFixed(1)}" stroke="${c}" stroke-width="1"/>`)
        out.push(`<circle cx="${xx.toFixed(1)}" cy="${y(st.med).toFixed(1)}" r="3.5" fill="${c}"/>`)
      }
    }
  }
  panel(pad.l, 'A. delivered messages/s at saturation (log)', (s) => s.A.loadgen.msgsPerSec, fmtRate)
  panel(pad.l + pw + gap, 'B. p99 fan-out latency at 2 broadcasts/s (log)', (s) => s.B2.loadgen.latencyUs.p99, fmtUs)
  servers.forEach((s, i) => {
    const lx = pad.l + (i % 3) * 300, ly = H + 4 + Math.floor(i / 3) * 24
    out.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${COLOR[s] ?? '#000'}" stroke-width="3"/>`)
    out.push(`<text x="${lx + 32}" y="${ly + 4}">${esc(LABEL[s] ?? s)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n')
}

// ---------- page ----------
const m = meta.machine
const versions = {}
for (const r of runs) for (const [srv, v] of Object.entries(r.meta.versions ?? {})) Object.assign(versions, v)
const c = meta.config
const errors = sessions.filter((s) => s.error)
const noisy = sessions.filter((s) => ['A', 'B2', 'B200', 'C', 'E', 'F'].some((k) => s[k]?.foreignCores > 0.3))
const fErrors = sessions.filter((s) => s.F?.error)
const skipped = Object.entries(meta.skipped ?? {})
const notesPath = path.join(here, 'notes.md')
const notes = fs.existsSync(notesPath) ? fs.readFileSync(notesPath, 'utf8').trim() : ''
const rel = (f) => path.relative(root, f)

const page = [
  '<!-- generated by bench/report.mjs from ' + files.map(rel).join(', ') + ' — edit bench/notes.md, not this file -->',
  '# Benchmarks',
  '',
  `Run of ${meta.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpuModel} × ${m.cpus} vCPU, ${m.memGiB} GiB, Linux ${m.kernel}, ${m.glibc}; Node ${m.node}.`,
  `Versions: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(', ')}${meta.addonRev ? `; cluso-ws built from ${meta.addonRev}` : ''}.`,
  `Server pinned to CPU ${c.serverCpu}, load generator (bench/loadgen, one tokio thread) to CPU ${c.loadgenCpu}${m.taskset ? '' : ' (taskset missing: NOT pinned)'}; `
    + `${c.rounds} interleaved round(s); N = ${mainNs.map((n) => fmtNum(n)).join(' / ')}; saturation ${c.satMs / 1000} s, 2/s for ${c.rateMs / 1000} s, 200/s for ${c.rate200Ms / 1000} s, `
    + `${c.costCount} timed broadcast() calls, AI streaming ${c.aiMs / 1000} s at N = ${fmtNum(c.aiN)}`
    + `${c.paceMs ? `, producer pacing at ${fmtNum((c.paceBytes ?? 1048576) / 1024)} KiB for ${c.paceMs / 1000} s` : ''}. Payload: a fileChanged-shaped event of ≈200 bytes.`,
  `Cells: median over rounds <sub>(min–max)</sub>. Reproduce: \`npm run bench\` (quick: \`npm run bench -- --quick\`; see bench/README.md).`,
  '',
  '![delivered msgs/s and p99 latency against N](bench-chart.svg)',
  '',
  '## Targets of issue 5',
  '',
  targets(),
  '## Targets of issue 12: ratios to uWebSockets.js in the same run',
  '',
  targets12(),
  '## Results',
  '',
  table('A. Saturation: delivered messages/s', 'main', mainNs, (s) => s.A.loadgen.msgsPerSec, fmtRate,
    'Broadcast back to back for the whole window, pacing on the largest per-connection backlog (64 KiB); counted by the load generator.'),
  table('A. Server CPU per delivered message', 'main', mainNs, (s) => s.A.serverCpuUsPerMsg, (x) => `${x.toFixed(3)} µs`,
    'utime+stime of the server process (all threads, /proc/<pid>/stat) during the phase ÷ messages delivered.'),
  table('A. Server CPU (share of one core, all threads)', 'main', mainNs, (s) => s.A.serverCpuShare * 100, (x) => `${x.toFixed(0)} %`,
    'The server is pinned to one core: 100 % means it is the limit.'),
  table('A. Load generator CPU (share of its core)', 'main', mainNs, (s) => s.A.loadgenCpuShare * 100, (x) => `${x.toFixed(0)} %`,
    'Near 100 % the load generator, not the server, is the limit: compare CPU per message then.'),
  table('B. Fan-out latency at 2 broadcasts/s: p50', 'main', mainNs, (s) => s.B2.loadgen.latencyUs.p50, fmtUs,
    'From the CLOCK_REALTIME stamp taken when broadcast() is due to the client receiving the frame.'),
  table('B. Fan-out latency at 2 broadcasts/s: p99', 'main', mainNs, (s) => s.B2.loadgen.latencyUs.p99, fmtUs, undefined, 'uws'),
  table('B. Server CPU per delivered message at 2 broadcasts/s', 'main', mainNs, (s) => s.B2.serverCpuUsPerMsg, (x) => `${x.toFixed(2)} µs`,
    'utime+stime of the server process (all threads, /proc/<pid>/stat, 10 ms ticks) from the start of the 2/s window until the load generator received every message, '
    + '÷ messages delivered. The window is short: at N = 1 000 a tick is a few % of the total (the results also hold `serverCpuUsPerMsgFine`, the same from getrusage in µs).', 'uws'),
  table('B. Fan-out latency at 2 broadcasts/s: max', 'main', mainNs, (s) => s.B2.loadgen.latencyUs.max, fmtUs),
  table('B. Fan-out latency at 200 broadcasts/s: p50', 'main', mainNs, (s) => s.B200.loadgen.latencyUs.p50, fmtUs,
    'Stamped with the scheduled send time: a server that cannot keep 200/s shows its growing delay here.'),
  table('B. Fan-out latency at 200 broadcasts/s: p99', 'main', mainNs, (s) => s.B200.loadgen.latencyUs.p99, fmtUs),
  table('B. Broadcasts achieved of those scheduled at 200/s', 'main', mainNs, (s) => (100 * s.B200.server.broadcasts) / s.B200.server.planned, (x) => `${x.toFixed(0)} %`),
  table('C. JS-thread time of one broadcast(): median', 'main', mainNs, (s) => s.C.medianUs, fmtUs,
    'process.hrtime.bigint() around single calls, each on a drained server.'),
  table('C. JS-thread time of one broadcast(): p99', 'main', mainNs, (s) => s.C.p99Us, fmtUs),
  table('C. Process CPU time during one broadcast(): median', 'main', mainNs, (s) => s.C.cpuMedianUs, fmtUs,
    'getrusage of the whole process around the call: insensitive to other load on the machine, but it also counts other threads (the native fan-out) running meanwhile.'),
  table('D. RSS per idle subscribed connection', 'main', mainNs, (s) => s.D.bytesPerConn, fmtKiB,
    '(RSS with N idle subscribed connections − RSS before) / N, both after global.gc().'),
  table('F. Producer pacing at 1 MiB: longest broadcast() call', 'main', mainNs, (s) => s.F.server.longestCallMs * 1000, fmtUs,
    'The producer broadcasts back to back (bursts as in A) and waits 1 ms only while the largest per-connection backlog is ≥ 1 MiB '
    + '(ws `bufferedAmount`, uWS `getBufferedAmount()`, engine.io as in A, cluso `getStats().maxQueuedBytes` — not `pendingBroadcasts`), '
    + 'like real producers that pace at the cap. process.hrtime.bigint() around each call; the JS thread is blocked for that long.', 'uws'),
  table('F. Producer pacing at 1 MiB: longest wait for the event loop', 'main', mainNs, (s) => s.F.server.longestStallMs * 1000, fmtUs,
    'Not part of the call: the longest the producer waited between bursts for the event loop to come back (less the 1 ms of a pause), i.e. work the server '
    + 'does on the JS thread outside broadcast() — uWS writes what publish() corked at the end of the turn, ws finishes its writes.', 'uws'),
  table('F. Producer pacing at 1 MiB: p99 broadcast() call', 'main', mainNs, (s) => s.F.server.callP99Us, fmtUs, 'Log-bucketed (2 %).', 'uws'),
  table('F. Producer pacing at 1 MiB: RSS growth', 'main', mainNs, (s) => s.F.rssGrowthPeakMB, (x) => `${x.toFixed(1)} MiB`,
    'Peak RSS (sampled from /proc every 50 ms during the phase and its settling, VmHWM, and at the end of the window) − RSS before the phase (after global.gc()).', 'uws'),
  table('F. Producer pacing at 1 MiB: broadcasts sent', 'main', mainNs, (s) => s.F.server.broadcasts, (x) => fmtNum(x)),
  table('F. Producer pacing at 1 MiB: delivered ratio', 'main', mainNs, (s) => 100 * s.F.deliveredRatio, (x) => `${x.toFixed(2)} %`,
    'Messages the load generator received ÷ (broadcasts sent × subscribers), after up to 10 s for stragglers (ended by 1 s without any). '
    + 'Below 100 %: subscribers cut as slow consumers (next table) or skipped (uWS skips a subscriber over its 1 MiB maxBackpressure).'),
  table('F. Producer pacing at 1 MiB: connections closed by the server', 'main', mainNs, (s) => s.F.closesSeen, (x) => fmtNum(x),
    'Closes the load generator saw during F (cluso-ws: 4008 slow consumer).'),
  table('F. Producer pacing at 1 MiB: server CPU per delivered message', 'main', mainNs, (s) => s.F.serverCpuUsPerMsg, (x) => `${x.toFixed(3)} µs`,
    'utime+stime of the server process from the start of the window until the load generator settled, ÷ messages delivered.', 'uws'),
  table(`E. AI streaming (100 streams × 50 chunks/s to ${fmtNum(c.aiN)} subscribers): delivered msgs/s`, 'ai', [c.aiN], (s) => s.E.loadgen.msgsPerSec, fmtRate,
    `Target: 5 000 chunks/s = ${fmtRate(5000 * c.aiN)} msgs/s.`),
  table('E. AI streaming: chunks/s achieved (target 5 000)', 'ai', [c.aiN], (s) => s.E.server.achievedPerSec, (x) => fmtNum(x)),
  table('E. AI streaming: p50 latency', 'ai', [c.aiN], (s) => s.E.loadgen.latencyUs.p50, fmtUs),
  table('E. AI streaming: p99 latency', 'ai', [c.aiN], (s) => s.E.loadgen.latencyUs.p99, fmtUs),
  table('E. AI streaming: server CPU per delivered message', 'ai', [c.aiN], (s) => s.E.serverCpuUsPerMsg, (x) => `${x.toFixed(3)} µs`),
  table('E. AI streaming: load generator CPU (share of its core)', 'ai', [c.aiN], (s) => s.E.loadgenCpuShare * 100, (x) => `${x.toFixed(0)} %`),
  '## Run notes',
  '',
  skipped.length ? skipped.map(([k, v]) => `- **${k} not run**: ${v.split('\n')[0].slice(0, 300)}`).join('\n') : '- every adapter started.',
  ...fErrors.map((s) => `- scenario F failed in ${s.server} N=${s.n} round ${s.round}: ${s.F.error.slice(0, 300)}`),
  errors.length ? errors.map((s) => `- error in ${s.server} N=${s.n} round ${s.round} (${s.kind}): ${s.error.split('\n')[0].slice(0, 300)}`).join('\n') : '- no session failed.',
  noisy.length ? `- ${noisy.length} session(s) ran while other work used > 0.3 of a core (the machine is shared): ${noisy.map((s) => `${s.server}/N=${s.n}/r${s.round}`).join(', ')}.` : '- no phase saw more than 0.3 of a core of other load.',
  (() => {
    const loss = sessions.filter((s) => ['A', 'B2', 'B200', 'C', 'E'].some((k) => s[k] && Math.abs(s[k].lossRatio) > 0.001))
    return loss.length ? `- messages lost (> 0.1 %): ${loss.map((s) => `${s.server}/N=${s.n}/r${s.round}`).join(', ')}.` : '- every broadcast reached every subscriber (no loss above 0.1 %).'
  })(),
  '',
  notes ? notes + '\n' : '',
].join('\n')

fs.mkdirSync(path.join(root, 'docs'), { recursive: true })
fs.writeFileSync(path.join(root, 'docs/benchmarks.md'), page)
fs.writeFileSync(path.join(root, 'docs/bench-chart.svg'), chart())
console.error(`wrote docs/benchmarks.md and docs/bench-chart.svg from ${files.map(rel).join(', ')}`)
