// cluso-ws, native transport: Rust accepts on its own loopback port
// (manager.listen) and owns every socket; broadcast() hands one shared buffer
// to each subscriber's bounded queue. With BENCH_REDIS_URL set
// (bench/cluster/run.mjs): `cluster: { redisUrl }`, every broadcast through Redis.
import { serve } from './common.mjs'
import { WebSocketManager, nativeQueued, nativeBacklog, clusoStats, versions } from './cluso-common.mjs'

const redisUrl = process.env.BENCH_REDIS_URL
const manager = new WebSocketManager(undefined, redisUrl ? { cluster: { redisUrl, prefix: 'cluso-bench' } } : {})
const { port, host } = await manager.listen({ port: 0, host: '127.0.0.1', path: '/ws', cwd: process.cwd() })

// bounded wait until this process is connected to Redis and subscribed
for (let i = 0; redisUrl && !manager.getStats().clusterUp; i++) {
  if (i === 100) throw new Error(`Redis at ${redisUrl} not reachable`)
  await new Promise((r) => setTimeout(r, 100))
}

serve({
  name: redisUrl ? 'cluso-native-redis' : 'cluso-native',
  url: `ws://${host ?? '127.0.0.1'}:${port}/ws`,
  versions: versions(),
  broadcast: (channel, data) => manager.broadcast(channel, data),
  queuedBytes: () => nativeQueued(manager),
  backlogBytes: () => nativeBacklog(manager),
  stats: () => clusoStats(manager),
  connections: () => manager.getStats().connections,
  close: () => manager.shutdown(),
})
