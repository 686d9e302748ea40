#!/usr/bin/env node
// Summarises bench/run.mjs results of two builds measured in alternating runs (one
// results file per build and round, e.g. 2026-12-04-r3-new.json / -r3-old.json): the
// medians and min–max over rounds per server and build, and per-round paired ratios
// (new/old for the same server; cluso-native-history/cluso-native within a run).
//
//   node bench/compare.mjs --new a.json,b.json --old c.json,d.json [--n 1000] [--max-load 0.3] [--json]
// --max-load C leaves out sessions that saw more than C cores of other load (the
// runner's `noisiness`), and with them their pairs.
// A file may hold several rounds (its sessions carry `round`); rounds pair by
// (file index, round) order within each build.
import fs from 'node:fs'

const argv = process.argv.slice(2)
const flag = (name) => {
  const i = argv.indexOf(`--${name}`)
  return i < 0 ? undefined : (argv[i + 1] ?? true)
}
const N = Number(flag('n') ?? 1000)
const MAX_LOAD = Number(flag('max-load') ?? Infinity)
const builds = { new: flag('new'), old: flag('old') }

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (!s.length) return NaN
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const spread = (xs) => {
  const s = xs.filter(Number.isFinite)
  return { median: median(s), min: Math.min(...s), max: Math.max(...s), n: s.length, all: s }
}

const METRICS = {
  msgsPerSec: (s) => s.A?.loadgen.msgsPerSec,
  cpuUsPerMsg: (s) => s.A?.serverCpuUsPerMsg,
  loadgenCpu: (s) => s.A?.loadgenCpuShare,
  costMedianUs: (s) => s.C?.medianUs,
  costP99Us: (s) => s.C?.p99Us,
  costCpuMedianUs: (s) => s.C?.cpuMedianUs,
  p50At2Ms: (s) => s.B2 && s.B2.loadgen.latencyUs.p50 / 1000,
  p99At2Ms: (s) => s.B2 && s.B2.loadgen.latencyUs.p99 / 1000,
  kibPerConn: (s) => s.D && s.D.bytesPerConn / 1024,
  otherLoadCores: (s) => s.noisiness,
}

/** build → server → [session per round, in order] */
const rounds = {}
for (const [build, files] of Object.entries(builds)) {
  if (!files || files === true) continue
  for (const file of String(files).split(',')) {
    const run = JSON.parse(fs.readFileSync(file, 'utf8'))
    const sessions = run.sessions.filter((s) => s.kind === 'main' && s.n === N)
    for (const round of [...new Set(sessions.map((s) => s.round))].sort((a, b) => a - b)) {
      for (const s of sessions.filter((x) => x.round === round)) {
        const list = (((rounds[build] ??= {})[s.server]) ??= [])
        list.push(s.error || s.noisiness > MAX_LOAD ? null : { ...s, file, runRound: round })
      }
    }
  }
}

const table = {}
for (const [build, servers] of Object.entries(rounds)) {
  for (const [server, list] of Object.entries(servers)) {
    const ok = list.filter(Boolean)
    table[`${build}:${server}`] = Object.fromEntries(
      Object.entries(METRICS).map(([k, f]) => [k, spread(ok.map(f))]),
    )
    table[`${build}:${server}`].rounds = ok.length
    table[`${build}:${server}`].leftOut = list.length - ok.length
  }
}

/** Per-round ratio a/b of metric k, pairing the i-th round of each list. */
function paired(a, b, k) {
  const xs = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] && b[i]) xs.push(METRICS[k](a[i]) / METRICS[k](b[i]))
  }
  return spread(xs)
}
const ratios = {}
for (const server of Object.keys(rounds.new ?? {})) {
  const a = rounds.new[server]
  const b = rounds.old?.[server]
  if (b) {
    for (const k of ['msgsPerSec', 'cpuUsPerMsg', 'costMedianUs', 'costCpuMedianUs', 'p99At2Ms']) {
      ratios[`${server} new/old ${k}`] = { paired: paired(a, b, k), ofMedians: table[`new:${server}`][k].median / table[`old:${server}`][k].median }
    }
  }
}
if (rounds.new?.['cluso-native-history'] && rounds.new?.['cluso-native']) {
  const a = rounds.new['cluso-native-history']
  const b = rounds.new['cluso-native']
  for (const k of ['msgsPerSec', 'cpuUsPerMsg', 'costMedianUs', 'costCpuMedianUs', 'p99At2Ms']) {
    ratios[`history/no-history ${k}`] = { paired: paired(a, b, k), ofMedians: table['new:cluso-native-history'][k].median / table['new:cluso-native'][k].median }
  }
}

if (flag('json')) {
  console.log(JSON.stringify({ n: N, table, ratios }, null, 1))
} else {
  const f = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(3))
  for (const [key, row] of Object.entries(table)) {
    console.log(`${key} (${row.rounds} rounds${row.leftOut ? `, ${row.leftOut} failed or left out` : ''})`)
    for (const k of Object.keys(METRICS)) {
      const s = row[k]
      console.log(`  ${k.padEnd(16)} ${f(s.median)} (${f(s.min)}–${f(s.max)})  [${s.all.map(f).join(', ')}]`)
    }
  }
  for (const [key, r] of Object.entries(ratios)) {
    console.log(`${key.padEnd(44)} of medians ${r.ofMedians.toFixed(3)}; per round ${r.paired.median.toFixed(3)} (${r.paired.min.toFixed(3)}–${r.paired.max.toFixed(3)}, ${r.paired.n} pairs)`)
  }
}
