// Loads the cluso-ws addon from the repo root (built by `npm run build`; the
// runner may point NAPI_RS_NATIVE_LIBRARY_PATH at another build of it).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
export const addon = require('../../index.js')
export const { WebSocketManager } = addon
export const addonVersion = require('../../package.json').version

/** Bytes a broadcast adds to each subscriber's queue, roughly (the ≈200-byte event). */
const EVENT_BYTES = 256

/**
 * Pacing signal for native sockets, as the README's "Pacing a producer" reads it: the
 * largest per-connection backlog the kernel refused (`getStats().maxQueuedBytes`) plus
 * the broadcasts still waiting for the fan-out task (`pendingBroadcastBytes`) or, in
 * cluster mode, for Redis (`clusterQueued`), which will land in every queue.
 */
export function nativeQueued(manager) {
  const s = manager.getStats()
  const pending = s.pendingBroadcastBytes ?? (s.pendingBroadcasts ?? 0) * EVENT_BYTES
  return (s.maxQueuedBytes ?? 0) + pending + (s.clusterQueued ?? 0) * EVENT_BYTES
}

/**
 * Scenario F's signal: the largest per-connection outbound queue alone
 * (`getStats().maxQueuedBytes`), as a producer pacing at the cap reads it.
 */
export const nativeBacklog = (manager) => manager.getStats().maxQueuedBytes ?? 0

/** Counters reported by scenario F. */
export function clusoStats(manager) {
  const s = manager.getStats()
  return {
    connections: s.connections, broadcasts: s.broadcasts, messagesSent: s.messagesSent, sendFailures: s.sendFailures,
    slowConsumerDisconnects: s.slowConsumerDisconnects, maxQueuedBytes: s.maxQueuedBytes, pendingBroadcasts: s.pendingBroadcasts,
    pendingBroadcastBytes: s.pendingBroadcastBytes, droppedBroadcasts: s.droppedBroadcasts,
  }
}

export const versions = () => ({ 'cluso-ws': addonVersion, addon: addon.__napiBindingTarget ?? 'native' })
