// Strict type check of the published types, as an ESM app sees them.
import { createServer } from 'node:http'
import {
  EventBroadcaster,
  WebSocketManager,
  type FileChangeEvent,
  type ListenAddress,
  type ManagerStats,
  type WSEvent,
} from 'cluso-ws'
import { connect } from 'cluso-ws/client'

const manager = new WebSocketManager(undefined, { pingIntervalMs: 0, token: true })
const broadcaster = new EventBroadcaster(manager)
const change: FileChangeEvent = { file: 'src/main.ts', event: 'change', timestamp: new Date().toISOString() }
broadcaster.fileChanged(change.file, change.event)
// @ts-expect-error not a FileEventType
broadcaster.fileChanged('src/main.ts', 'renamed')
manager.broadcast('files', change)
manager.attach(createServer(), { path: '/ws' })
const address: ListenAddress = await manager.listen({ port: 0, host: '127.0.0.1' })
const stats: ManagerStats = manager.getStats()
const event: WSEvent = { type: 'event', channel: 'files', data: change, timestamp: change.timestamp }
const token: string | null = manager.token
export const used = [address.port, stats.connections, event, token, connect]
