// Scale-out in one command: the primary forks two workers (Node's cluster module), each a
// WebSocketManager with `cluster` on its own port, all sharing one Redis. A client on each
// worker sees the broadcasts of both, in the same order with the same seq; then a client
// that was on worker 2 resumes on worker 1 without losing an event.
//
//   redis-server --port 6379 --save '' --appendonly no &
//   node examples/cluster.mjs                  # REDIS_URL=redis://… to use another Redis
import cluster from 'node:cluster'
import { createRequire } from 'node:module'
import { WebSocket } from 'ws'

const require = createRequire(import.meta.url)
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

if (cluster.isPrimary) {
  await primary()
} else {
  await worker()
}

async function worker() {
  const { WebSocketManager } = require('../index.js')
  const manager = new WebSocketManager(undefined, { historySize: 100, cluster: { redisUrl, prefix: 'cluso-demo' } })
  const { port } = await manager.listen({ port: 0 })
  process.on('message', async ({ cmd, text }) => {
    if (cmd === 'broadcast') manager.broadcast('ticks', { from: `worker ${cluster.worker.id}`, text })
    if (cmd === 'stats') process.send({ stats: manager.getStats() })
    if (cmd === 'exit') {
      await manager.shutdown()
      process.exit(0)
    }
  })
  // wait until this worker is connected to Redis (or say why not)
  for (let i = 0; !manager.getStats().clusterUp; i++) {
    if (i === 50) console.error(`worker ${cluster.worker.id}: Redis at ${redisUrl} not reachable yet, retrying`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  process.send({ port })
}

async function primary() {
  const workers = [cluster.fork(), cluster.fork()]
  const ports = await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', (m) => resolve(m.port)))))
  console.log(`workers listening on ${ports.map((p) => `ws://127.0.0.1:${p}/ws`).join(' and ')}`)

  const one = await client(ports[0])
  const two = await client(ports[1])
  const start = await one.subscribe()
  await two.subscribe()
  console.log(`channel 'ticks' at epoch ${start.epoch}, seq ${start.seq}`)

  for (let i = 0; i < 3; i++) for (const w of workers) w.send({ cmd: 'broadcast', text: `hello ${i}` })
  const seenOne = await one.events(6)
  const seenTwo = await two.events(6)
  for (const e of seenOne) console.log(`  seq ${e.seq}  ${e.data.from}: ${e.data.text}`)
  const same = JSON.stringify(seenOne) === JSON.stringify(seenTwo)
  console.log(`both clients saw the same ${seenOne.length} events in the same order: ${same ? 'yes' : 'NO'}`)

  // the client on worker 2 drops; two more events go by; it comes back on worker 1
  const last = seenTwo.at(-1)
  two.close()
  workers[0].send({ cmd: 'broadcast', text: 'while you were away 1' })
  workers[1].send({ cmd: 'broadcast', text: 'while you were away 2' })
  await one.events(2)
  const back = await client(ports[0])
  const resumed = await back.subscribe({ epoch: last.epoch, seq: last.seq })
  const missed = await back.events(2)
  console.log(`resumed on worker 1 from seq ${last.seq}: recovered=${resumed.recovered}, replayed ${missed.map((e) => e.seq).join(', ')}`)

  one.close()
  back.close()
  for (const w of workers) w.send({ cmd: 'exit' })
  const ok = same && resumed.recovered === true && missed.length === 2
  console.log(ok ? 'scale-out works' : 'something is off')
  process.exitCode = ok ? 0 : 1
}

/** A minimal client: subscribe (optionally resuming), then read events. */
async function client(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  const queue = []
  let wake = null
  ws.on('message', (data) => {
    queue.push(JSON.parse(String(data)))
    wake?.()
  })
  const next = async () => {
    while (queue.length === 0) await new Promise((resolve) => (wake = resolve))
    return queue.shift()
  }
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  await next() // the welcome
  return {
    async subscribe(since) {
      ws.send(JSON.stringify({ type: 'subscribe', channel: 'ticks', id: 's', ...(since ? { since } : {}) }))
      return (await next()).data
    },
    async events(n) {
      const out = []
      while (out.length < n) out.push(await next())
      return out
    },
    close: () => ws.close(),
  }
}
