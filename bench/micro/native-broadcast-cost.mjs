// Micro-benchmark for issue 3: the JS-thread time of broadcast() with N native subscribers,
// back to back (hot) and as single calls after 2 ms idle (cold), with and without
// subscribers on the channel. Complements scenario C of bench/run.mjs, which times cold
// calls only.
//
//   node bench/micro/native-broadcast-cost.mjs [N=10]
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { WebSocketManager } = require('../../index.js')
const WebSocket = require('ws')

const N = Number(process.argv[2] ?? 10)
const manager = new WebSocketManager(undefined, { pingIntervalMs: 0 })
const { port } = await manager.listen({ port: 0 })
const clients = []
for (let i = 0; i < N; i++) {
  const client = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  await new Promise((resolve, reject) => {
    client.once('open', resolve)
    client.once('error', reject)
  })
  client.send('{"type":"subscribe","channel":"files"}')
  clients.push(client)
}
const deadline = Date.now() + 10_000
while (manager.getSubscribers('files').length < N && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 5))
}

const data = { file: 'src/components/editor/Editor.tsx', event: 'change', timestamp: new Date().toISOString() }
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1]
const timed = (channel) => {
  const start = process.hrtime.bigint()
  manager.broadcast(channel, data)
  return Number(process.hrtime.bigint() - start) / 1000
}

const result = { n: N, node: process.version }
for (const channel of ['nobody', 'files']) {
  const hot = Array.from({ length: 2000 }, () => timed(channel))
  const cold = []
  for (let i = 0; i < 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 2))
    cold.push(timed(channel))
  }
  result[channel === 'files' ? 'subscribed' : 'noSubscriber'] = {
    hotMedianUs: +median(hot).toFixed(2),
    coldMedianUs: +median(cold).toFixed(2),
  }
}
console.log(JSON.stringify(result))
manager.shutdown()
for (const client of clients) client.terminate()
