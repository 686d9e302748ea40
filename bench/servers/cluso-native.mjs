// cluso-ws, native transport: Rust accepts on its own loopback port
// (manager.listen) and owns every socket; broadcast() hands one shared buffer
// to each subscriber's bounded queue.
import { serve } from './common.mjs'
import { WebSocketManager, nativeQueued, versions } from './cluso-common.mjs'

const manager = new WebSocketManager(undefined, {})
const { port, host } = await manager.listen({ port: 0, host: '127.0.0.1', path: '/ws', cwd: process.cwd() })

serve({
  name: 'cluso-native',
  url: `ws://${host ?? '127.0.0.1'}:${port}/ws`,
  versions: versions(),
  broadcast: (channel, data) => manager.broadcast(channel, data),
  queuedBytes: () => nativeQueued(manager),
  connections: () => manager.getStats().connections,
  close: () => manager.shutdown(),
})
