// Helpers for the cluso-ws/client specs: the client module itself (client/index.mjs, typed by
// client/index.d.ts), a server on either transport (native listen(), or drop-in: a `ws`
// WebSocketServer handing sockets to handleConnection), a TCP proxy in front of it, and a
// client whose states, 'subscribed' and 'error' reports are recorded.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { WebSocketServer, WebSocket as WsWebSocket } from 'ws'
import type {
  ClientError,
  ClientOptions,
  ClientState,
  ClusoClient,
  SubscribedInfo,
  connect as Connect,
} from '../../client/index.js'
import { WebSocketManager, type ManagerOptions } from '../../index.js'
import { DEADLINE_MS, onCleanUp, waitFor } from './native.js'
import { TcpProxy } from './proxy.js'

export { DEADLINE_MS, cleanUp, waitFor, within } from './native.js'
export { TcpProxy } from './proxy.js'

export const CLIENT_MJS = fileURLToPath(new URL('../../client/index.mjs', import.meta.url))
export const CLIENT_CJS = fileURLToPath(new URL('../../client/index.cjs', import.meta.url))

// imported by URL so that TypeScript takes the types from client/index.d.ts
const clientModule = (await import(pathToFileURL(CLIENT_MJS).href)) as { connect: typeof Connect }
export const connect: typeof Connect = clientModule.connect

export const CWD = '/tmp/cluso-client'

export type Transport = 'native' | 'drop-in'
export const TRANSPORTS: Transport[] = ['native', 'drop-in']

export interface TestServer {
  transport: Transport
  manager: WebSocketManager
  port: number
  /** Text messages the server received (drop-in only: read off the `ws` sockets). */
  received: string[]
  /** Stops the server: its connections end, its port refuses. */
  stop(): Promise<void>
}

/** A manager serving WebSocket connections on `transport`; `cleanUp()` stops it. */
export async function startServer(transport: Transport, options: ManagerOptions = {}): Promise<TestServer> {
  const manager = new WebSocketManager(undefined, options)
  const received: string[] = []
  let stop: () => Promise<void>
  let port: number
  if (transport === 'native') {
    port = (await manager.listen({ port: 0, host: '127.0.0.1', path: '/ws', cwd: CWD })).port
    stop = async () => {
      await manager.shutdown()
    }
  } else {
    const server = createServer()
    const wss = new WebSocketServer({ server, path: '/ws' })
    wss.on('connection', (ws) => {
      ws.on('message', (data) => received.push(String(data)))
      manager.handleConnection(ws, CWD)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
    stop = async () => {
      for (const ws of wss.clients) ws.terminate()
      await manager.shutdown()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  let stopped: Promise<void> | undefined
  const result = { transport, manager, port, received, stop: () => (stopped ??= stop()) }
  onCleanUp(() => result.stop())
  return result
}

/** A proxy to `targetPort`; `cleanUp()` stops it. */
export async function startProxy(targetPort: number): Promise<TcpProxy> {
  const proxy = await new TcpProxy(targetPort).start()
  onCleanUp(() => proxy.stop())
  return proxy
}

export interface Recorded<M extends object = {}> {
  client: ClusoClient<M>
  states: ClientState[]
  subscribed: SubscribedInfo[]
  errors: ClientError[]
}

/** Fast timings for tests; each can be overridden. */
export const FAST: ClientOptions = {
  minReconnectDelayMs: 20,
  maxReconnectDelayMs: 100,
  pingIntervalMs: 0,
  pongTimeoutMs: 2000,
}

/** A client (on the `ws` package unless `options.WebSocket` says otherwise) with its reports recorded. */
export function openClient<M extends object = {}>(url: string, options: ClientOptions = {}): Recorded<M> {
  const client = connect<M>(url, { WebSocket: WsWebSocket, ...FAST, ...options })
  const rec: Recorded<M> = { client, states: [client.state], subscribed: [], errors: [] }
  client.on('state', (s) => rec.states.push(s))
  client.on('subscribed', (info) => rec.subscribed.push(info))
  client.on('error', (e) => rec.errors.push(e))
  onCleanUp(() => client.close())
  return rec
}

/** Waits until `rec` has seen `count` 'subscribed' reports in all (for `channel` if given). */
export function subscribedCount(rec: Recorded<object>, count: number, channel?: string): Promise<SubscribedInfo[]> {
  return waitFor(`${count} 'subscribed' reports${channel ? ` for ${channel}` : ''}`, () => {
    const seen = rec.subscribed.filter((s) => channel === undefined || s.channel === channel)
    return seen.length >= count && seen
  })
}

/** Waits for the client's state to be `state`. */
export function stateIs(rec: Recorded<object>, state: ClientState, deadlineMs = DEADLINE_MS): Promise<true> {
  return waitFor(`client state ${state} (now ${rec.client.state})`, () => rec.client.state === state, deadlineMs)
}

/** Ids of the connections the manager has subscribed to `channel`. */
export function subscribers(server: TestServer, channel: string): string[] {
  return server.manager.getSubscribers(channel)
}

/**
 * Observes `check` for `ms` and fails the moment it is false: for asserting that something
 * does NOT happen (no reconnect, no message) over a bounded window.
 */
export async function holdsFor(what: string, check: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms
  while (performance.now() < end) {
    if (!check()) throw new Error(`no longer true: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  if (!check()) throw new Error(`no longer true: ${what}`)
}

/** The error `promise` rejects with (a resolution fails the test). */
export async function rejectionOf(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise
  } catch (e) {
    return e as ClientError
  }
  throw new Error('expected a rejection')
}

/** One connection to a `FakeServer`, driven by the test. */
export interface FakeConnection {
  /** The subprotocols the client offered. */
  protocols: string[]
  /** The next message the client sent, parsed. */
  next(timeoutMs?: number): Promise<Record<string, unknown>>
  /** Messages received and not yet taken by `next()`. */
  queued(): number
  send(message: unknown): void
  terminate(): void
}

export interface FakeServer {
  url: string
  /** The next connection the client makes (in order). */
  accept(timeoutMs?: number): Promise<FakeConnection>
}

/**
 * A `ws` server standing in for a cluso server that the test scripts message by message: for
 * the client's side of protocols the addon does not speak yet, and for misbehaving servers.
 */
export async function fakeServer(): Promise<FakeServer> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (offered) => (offered.has('cluso') ? 'cluso' : false) })
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  const accepted: FakeConnection[] = []
  wss.on('connection', (ws, req) => {
    const inbox: Array<Record<string, unknown>> = []
    ws.on('message', (d) => inbox.push(JSON.parse(String(d)) as Record<string, unknown>))
    accepted.push({
      protocols: String(req.headers['sec-websocket-protocol'] ?? '').split(/,\s*/),
      next: (timeoutMs = DEADLINE_MS) => waitFor('a client message', () => inbox.shift(), timeoutMs),
      queued: () => inbox.length,
      send: (message) => ws.send(typeof message === 'string' || Buffer.isBuffer(message) ? message : JSON.stringify(message)),
      terminate: () => ws.terminate(),
    })
  })
  onCleanUp(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate()
        wss.close(() => resolve())
      }),
  )
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/ws`,
    accept: (timeoutMs = DEADLINE_MS) => waitFor('a connection', () => accepted.shift(), timeoutMs),
  }
}
