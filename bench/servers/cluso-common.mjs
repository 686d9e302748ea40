// Loads the cluso-ws addon from the repo root (built by `npm run build`; the
// runner may point NAPI_RS_NATIVE_LIBRARY_PATH at another build of it).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
export const addon = require('../../index.js')
export const { WebSocketManager } = addon
export const addonVersion = require('../../package.json').version

/**
 * Largest per-connection outbound backlog of the manager's native sockets.
 * The field name is the lead's choice; absent -> 0 (pacing then relies on
 * the manager's own maxBufferedBytesPerConnection cap and the loss ratio).
 */
export function nativeQueued(manager) {
  const s = manager.getStats()
  return s.maxQueuedBytes ?? s.maxQueuedBytesPerConnection ?? s.queuedBytesMax ?? 0
}

export const versions = () => ({ 'cluso-ws': addonVersion, addon: addon.__napiBindingTarget ?? 'native' })
