// Micro-benchmark for issue 9: what history costs.
//
// 1. The JS-thread time of broadcast() with historySize 0 and 1000, at 10 and 1 000 native
//    subscribers, back to back (hot) and as single calls after 2 ms idle (cold), the four
//    managers side by side in one process and measured interleaved, round after round. The
//    subscribers are `ws` clients in a child process (so receiving never runs on this
//    thread); every measurement starts on a drained server.
// 2. Bytes per stored event: in fresh child processes, a manager with no subscriber
//    broadcasts `channels` × `events` fileChanged-shaped events (≈200 bytes on the wire,
//    the harness's payload); RSS and V8 heap are read before and after (after gc). The same
//    run with historySize 0 is the baseline; (delta with history − delta without) /
//    events stored is the cost of one kept event. Runs alternate with / without.
//
//   node --expose-gc bench/micro/history-cost.mjs [rounds=5] [channels=100] [events=1000] [memRuns=3]
// (memRuns 0: only part 1)
// Loopback only; every loop is bounded; children exit when this process ends.
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { fileChangedData } from '../servers/common.mjs'

const require = createRequire(import.meta.url)
const self = fileURLToPath(import.meta.url)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const role = process.argv[2]

if (role === '--clients') {
  // Child: N `ws` clients per URL, each subscribed to `files`; counts what arrives.
  const WebSocket = require('ws')
  const [, , , n, ...urls] = process.argv
  const clients = []
  let received = 0
  for (const url of urls) {
    for (let i = 0; i < Number(n); i++) {
      const client = new WebSocket(url)
      await new Promise((resolve, reject) => {
        client.once('open', resolve)
        client.once('error', reject)
      })
      client.on('message', () => received++)
      client.send('{"type":"subscribe","channel":"files"}')
      clients.push(client)
    }
  }
  process.send({ ready: clients.length })
  process.on('message', (m) => {
    if (m === 'count') process.send({ received })
  })
  process.on('disconnect', () => {
    for (const client of clients) client.terminate()
    process.exit(0)
  })
} else if (role === '--fill') {
  // Child: fill history (or not) and report the memory it took.
  const { WebSocketManager } = require('../../index.js')
  const [, , , historySize, channels, events] = process.argv.map(Number)
  const gcAll = () => {
    for (let i = 0; i < 4; i++) globalThis.gc()
  }
  const manager = new WebSocketManager(undefined, { pingIntervalMs: 0, historySize })
  const names = Array.from({ length: channels }, (_, c) => `channel-${c}`)
  // warm up the path (and create the channels' entries) outside the measured window
  for (const name of names) manager.broadcast(name, fileChangedData(0))
  await sleep(50)
  gcAll()
  await sleep(50)
  gcAll()
  const before = process.memoryUsage()
  let seq = 1
  for (let e = 1; e < events; e++) {
    for (const name of names) manager.broadcast(name, fileChangedData(seq++))
    if (e % 100 === 0) await sleep(1) // let the fan-out task keep up
  }
  await sleep(200)
  gcAll()
  await sleep(50)
  gcAll()
  const after = process.memoryUsage()
  process.send({
    historySize,
    stored: historySize > 0 ? channels * Math.min(events, historySize) : 0,
    broadcasts: channels * events,
    rss: after.rss - before.rss,
    heapUsed: after.heapUsed - before.heapUsed,
    external: after.external - before.external,
  })
  await manager.shutdown()
  process.exit(0)
} else {
  const { WebSocketManager } = require('../../index.js')
  const ROUNDS = Number(process.argv[2] ?? 5)
  const CHANNELS = Number(process.argv[3] ?? 100)
  const EVENTS = Number(process.argv[4] ?? 1000)
  const MEM_RUNS = Number(process.argv[5] ?? 3)
  const HOT = 1000
  const COLD = 200

  const configs = []
  for (const n of [10, 1000]) {
    for (const historySize of [0, 1000]) {
      const manager = new WebSocketManager(undefined, { pingIntervalMs: 0, historySize })
      const { port } = await manager.listen({ port: 0, host: '127.0.0.1' })
      configs.push({ n, historySize, manager, url: `ws://127.0.0.1:${port}/ws`, hot: [], cold: [], coldP99: [] })
    }
  }
  const children = []
  const stop = () => {
    for (const child of children) child.kill('SIGKILL')
  }
  process.on('exit', stop)
  for (const n of [10, 1000]) {
    const urls = configs.filter((c) => c.n === n).map((c) => c.url)
    const child = fork(self, ['--clients', String(n), ...urls], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    await new Promise((resolve, reject) => {
      child.once('message', resolve)
      child.once('exit', (code) => reject(new Error(`clients exited ${code}`)))
    })
  }
  const deadline = Date.now() + 30_000
  for (const c of configs) {
    while (c.manager.getSubscribers('files').length < c.n && Date.now() < deadline) await sleep(5)
    if (c.manager.getSubscribers('files').length < c.n) throw new Error(`only ${c.manager.getSubscribers('files').length}/${c.n} subscribed`)
  }

  const drained = async (manager) => {
    const until = Date.now() + 30_000
    for (;;) {
      const s = manager.getStats()
      if (((s.maxQueuedBytes ?? 0) === 0 && (s.pendingBroadcasts ?? 0) === 0) || Date.now() > until) return
      await sleep(1)
    }
  }
  const data = fileChangedData(1)
  const timed = (manager) => {
    const start = process.hrtime.bigint()
    manager.broadcast('files', data)
    return Number(process.hrtime.bigint() - start) / 1000
  }
  for (const c of configs) for (let i = 0; i < 200; i++) timed(c.manager) // warm-up
  for (const c of configs) await drained(c.manager)

  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...configs].reverse() : configs
    for (const c of order) {
      await drained(c.manager)
      globalThis.gc?.()
      const hot = []
      for (let i = 0; i < HOT; i++) hot.push(timed(c.manager))
      await drained(c.manager)
      const cold = []
      for (let i = 0; i < COLD; i++) {
        await sleep(2)
        cold.push(timed(c.manager))
      }
      c.hot.push(median(hot))
      c.cold.push(median(cold))
      c.coldP99.push([...cold].sort((a, b) => a - b)[Math.floor(cold.length * 0.99)])
    }
  }
  const stat = (xs) => ({ medianUs: +median(xs).toFixed(2), minUs: +Math.min(...xs).toFixed(2), maxUs: +Math.max(...xs).toFixed(2) })
  const cost = configs.map((c) => ({
    n: c.n,
    historySize: c.historySize,
    hot: stat(c.hot),
    cold: stat(c.cold),
    coldP99Us: +median(c.coldP99).toFixed(1),
    rounds: { hot: c.hot.map((x) => +x.toFixed(2)), cold: c.cold.map((x) => +x.toFixed(2)) },
  }))
  for (const c of configs) await c.manager.shutdown()
  for (const child of children) child.disconnect()

  // 2. bytes per stored event, fresh processes, alternating with / without history
  const fill = (historySize) =>
    new Promise((resolve, reject) => {
      const child = fork(self, ['--fill', String(historySize), String(CHANNELS), String(EVENTS)], {
        execArgv: ['--expose-gc'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      children.push(child)
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
      child.once('message', (m) => {
        clearTimeout(timer)
        resolve(m)
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`fill exited ${code}`))
      })
    })
  const runs = { with: [], without: [] }
  if (MEM_RUNS === 0) {
    console.log(JSON.stringify({ node: process.version, rounds: ROUNDS, hotCalls: HOT, coldCalls: COLD, cost }))
    process.exit(0)
  }
  for (let i = 0; i < MEM_RUNS; i++) {
    runs.without.push(await fill(0))
    runs.with.push(await fill(1000))
  }
  const stored = runs.with[0].stored
  const perEvent = (key) => {
    const base = median(runs.without.map((r) => r[key]))
    const xs = runs.with.map((r) => (r[key] - base) / stored)
    return { median: +median(xs).toFixed(1), min: +Math.min(...xs).toFixed(1), max: +Math.max(...xs).toFixed(1) }
  }
  const wire = JSON.stringify({ type: 'event', channel: 'channel-0', data: fileChangedData(1), timestamp: new Date().toISOString() }).length
  console.log(
    JSON.stringify({
      node: process.version,
      rounds: ROUNDS,
      hotCalls: HOT,
      coldCalls: COLD,
      cost,
      memory: {
        channels: CHANNELS,
        eventsPerChannel: EVENTS,
        stored,
        envelopeBytes: wire,
        rssBytesPerEvent: perEvent('rss'),
        heapBytesPerEvent: perEvent('heapUsed'),
        runs,
      },
    }),
  )
  process.exit(0)
}
