// cluso-ws, native transport with history on (issue 9): the cluso-native
// adapter with `historySize: 1000`, so every broadcast is numbered (seq/epoch
// spliced into the envelope) and kept per channel for resume. Everything else
// is wired as in cluso-native.mjs, so the two compare the cost of history.
import { serve } from './common.mjs'
import { WebSocketManager, nativeQueued, nativeBacklog, clusoStats, versions } from './cluso-common.mjs'

const HISTORY_SIZE = 1000
const manager = new WebSocketManager(undefined, { historySize: HISTORY_SIZE })
const { port, host } = await manager.listen({ port: 0, host: '127.0.0.1', path: '/ws', cwd: process.cwd() })

serve({
  name: 'cluso-native-history',
  url: `ws://${host ?? '127.0.0.1'}:${port}/ws`,
  versions: { ...versions(), historySize: HISTORY_SIZE },
  broadcast: (channel, data) => manager.broadcast(channel, data),
  queuedBytes: () => nativeQueued(manager),
  backlogBytes: () => nativeBacklog(manager),
  stats: () => clusoStats(manager),
  connections: () => manager.getStats().connections,
  close: () => manager.shutdown(),
})
