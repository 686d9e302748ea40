// Micro-benchmark for issue 2: the JS-thread cost of one broadcast() to N mock sockets,
// cluso-ws drop-in mode against the original algorithm written in plain JavaScript, in the
// same process, interleaved. Not a substitute for the harness (bench/run.mjs).
//
//   node --expose-gc bench/micro/dropin-broadcast.mjs [N=1000] [rounds=7]
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { WebSocketManager } = require('../../index.js')

const N = Number(process.argv[2] ?? 1000)
const ROUNDS = Number(process.argv[3] ?? 7)
const CALLS = 2000

function mockSocket() {
  const ws = new EventEmitter()
  ws.readyState = 1
  ws.bytes = 0
  ws.send = function (text) {
    this.bytes += text.length
  }
  return ws
}

// The original algorithm (SPEC A.1): one JSON.stringify, a loop over every connection.
class OriginalManager {
  constructor() {
    this.connections = new Map()
  }
  addConnection(ws, id) {
    this.connections.set(id, { ws, id, channels: new Set(), isAlive: true })
  }
  subscribe(id, channel) {
    this.connections.get(id)?.channels.add(channel)
  }
  broadcast(channel, data) {
    const message = JSON.stringify({ type: 'event', channel, data, timestamp: new Date().toISOString() })
    let success = 0
    let failed = 0
    for (const conn of this.connections.values()) {
      if (!conn.channels.has(channel)) continue
      if (conn.ws.readyState === 1) {
        try {
          conn.ws.send(message)
          success++
        } catch {
          failed++
        }
      } else failed++
    }
    return success + failed
  }
}

function setup(manager) {
  for (let i = 0; i < N; i++) {
    manager.addConnection(mockSocket(), `c${i}`)
    manager.subscribe(`c${i}`, 'files')
  }
}

const data = { file: 'src/components/editor/Editor.tsx', event: 'change', timestamp: new Date().toISOString() }

function measure(manager) {
  for (let i = 0; i < 200; i++) manager.broadcast('files', data)
  globalThis.gc?.()
  const samples = []
  for (let i = 0; i < CALLS; i++) {
    const start = process.hrtime.bigint()
    manager.broadcast('files', data)
    samples.push(Number(process.hrtime.bigint() - start) / 1000)
  }
  samples.sort((a, b) => a - b)
  return { median: samples[samples.length >> 1], p99: samples[Math.floor(samples.length * 0.99)] }
}

const cluso = new WebSocketManager(undefined, { pingIntervalMs: 0 })
const original = new OriginalManager()
setup(cluso)
setup(original)
const rows = { cluso: [], original: [] }
for (let round = 0; round < ROUNDS; round++) {
  rows.original.push(measure(original))
  rows.cluso.push(measure(cluso))
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const summary = {}
for (const [name, list] of Object.entries(rows)) {
  const medians = list.map((r) => r.median)
  summary[name] = {
    medianUs: +median(medians).toFixed(1),
    minUs: +Math.min(...medians).toFixed(1),
    maxUs: +Math.max(...medians).toFixed(1),
    p99Us: +median(list.map((r) => r.p99)).toFixed(1),
  }
}
summary.ratio = +(summary.cluso.medianUs / summary.original.medianUs).toFixed(2)
console.log(JSON.stringify({ n: N, rounds: ROUNDS, calls: CALLS, node: process.version, ...summary }))
cluso.shutdown()
