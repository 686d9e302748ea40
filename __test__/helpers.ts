// Shared test helpers: WebSocket-like mocks (SPEC A.5), real `ws` servers and
// clients on 127.0.0.1:0, and envelope/timestamp checks.
import { EventEmitter } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect, vi, type Mock } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { WebSocketManager } from '../index.js'

export const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
export const CONN_ID_RE = /^conn-\d+-[a-z0-9]+$/
export const SHUT_DOWN = 'WebSocketManager is shut down'

/** What the manager accepts as a socket, whatever index.d.ts calls it. */
export type WsArg = Parameters<WebSocketManager['addConnection']>[0]

export interface MockSocket extends EventEmitter {
  readyState: number
  send: Mock<(data: unknown, ...rest: unknown[]) => void>
  close: Mock<(...args: unknown[]) => void>
  terminate?: Mock<() => void>
  ping?: Mock<() => void>
}

export interface MockOptions {
  readyState?: number
  /** give the mock a terminate() (default true) */
  terminate?: boolean
  /** give the mock a ping() (default true); 'async' / 'sync' make it answer with 'pong' */
  ping?: boolean | 'async' | 'sync' | 'throw'
}

/** The SPEC A.5 mock: an EventEmitter with readyState, send, close, and optionally ping/terminate. */
export function mockSocket(opts: MockOptions = {}): MockSocket {
  const ws = new EventEmitter() as MockSocket
  ws.readyState = opts.readyState ?? 1
  ws.send = vi.fn<(data: unknown, ...rest: unknown[]) => void>()
  ws.close = vi.fn<(...args: unknown[]) => void>()
  if (opts.terminate ?? true) ws.terminate = vi.fn<() => void>()
  const ping = opts.ping ?? true
  if (ping !== false) {
    ws.ping = vi.fn<() => void>(() => {
      if (ping === 'sync') ws.emit('pong')
      else if (ping === 'async') setImmediate(() => ws.emit('pong'))
      else if (ping === 'throw') throw new Error('ping failed')
    })
  }
  return ws
}

export function asWs(m: unknown): WsArg {
  return m as WsArg
}

/** Every first argument `send` was called with. */
export function sent(m: MockSocket): unknown[] {
  return m.send.mock.calls.map((c) => c[0])
}

/** The last string `send` was called with (asserts it is a string: a text frame, as the original sent). */
export function lastSent(m: MockSocket): string {
  const all = sent(m)
  expect(all.length).toBeGreaterThan(0)
  const last = all[all.length - 1]
  expect(typeof last).toBe('string')
  return last as string
}

/** Managers created through `track` are shut down by `shutdownAll` (call it in afterEach). */
const live: WebSocketManager[] = []
export function track<T extends WebSocketManager>(m: T): T {
  live.push(m)
  return m
}
export function newManager(options?: { pingIntervalMs?: number }, wss?: unknown): WebSocketManager {
  // The constructor accepts any value as wss (SPEC A.1).
  const Ctor = WebSocketManager as unknown as new (wss?: unknown, options?: { pingIntervalMs?: number }) => WebSocketManager
  return track(new Ctor(wss, options))
}
export function shutdownAll(): void {
  while (live.length > 0) {
    const m = live.pop()!
    try {
      m.shutdown()
    } catch {
      // shutdown is idempotent; a throw here is reported by the test that checks it
    }
  }
}

/** Split a broadcast envelope and rebuild it the way the original did, with the output's own timestamp. */
export function envelopeTimestamp(raw: string): string {
  const m = /,"timestamp":"([^"]*)"\}$/.exec(raw)
  expect(m, `no trailing timestamp in ${raw}`).not.toBeNull()
  return m![1]!
}
export function expectedEnvelope(channel: string, data: unknown, timestamp: string): string {
  return JSON.stringify({ type: 'event', channel, data, timestamp })
}

/** An ISO timestamp taken between `before` and `after` (Date.now() values), with a little slack. */
export function expectRecentIso(ts: unknown, before: number, after: number): void {
  expect(typeof ts).toBe('string')
  expect(ts).toMatch(ISO_RE)
  const t = Date.parse(ts as string)
  expect(t).toBeGreaterThanOrEqual(before - 20)
  expect(t).toBeLessThanOrEqual(after + 20)
}

// ---------------------------------------------------------------- real sockets

export interface Frame {
  text: string
  isBinary: boolean
}

/** A `ws` client that queues incoming frames; `next()` waits for one with a deadline. */
export class Client {
  readonly ws: WebSocket
  private readonly frames: Frame[] = []
  private waiter: ((f: Frame) => void) | null = null
  readonly closed: Promise<void>

  private constructor(url: string) {
    this.ws = new WebSocket(url)
    this.ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
      const f = { text: buf.toString('utf8'), isBinary }
      if (this.waiter) {
        const w = this.waiter
        this.waiter = null
        w(f)
      } else {
        this.frames.push(f)
      }
    })
    this.ws.on('error', () => {
      // surfaced through `closed` / failed expectations
    })
    this.closed = new Promise((resolve) => this.ws.once('close', () => resolve()))
  }

  static async connect(url: string): Promise<Client> {
    const c = new Client(url)
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve())
      c.ws.once('error', reject)
    })
    return c
  }

  /** The next frame, or a rejection after `timeoutMs`. */
  next(timeoutMs = 2000): Promise<Frame> {
    const f = this.frames.shift()
    if (f) return Promise.resolve(f)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null
        reject(new Error(`no frame within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiter = (frame) => {
        clearTimeout(timer)
        resolve(frame)
      }
    })
  }

  /** The next frame's text, asserting it was a text frame. */
  async nextText(timeoutMs?: number): Promise<string> {
    const f = await this.next(timeoutMs)
    expect(f.isBinary).toBe(false)
    return f.text
  }

  send(text: string | Buffer): void {
    this.ws.send(text)
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    this.ws.terminate()
    await this.closed
  }
}

export interface TestServer {
  url: string
  wss: WebSocketServer
  server: Server
  close(): Promise<void>
}

/** The app.ts wiring (SPEC A) on 127.0.0.1 port 0. */
export async function startServer(manager: WebSocketManager, cwd: string): Promise<TestServer> {
  const server = createServer((_req, res) => {
    res.writeHead(404)
    res.end()
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws) => manager.handleConnection(ws as unknown as WsArg, cwd))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `ws://127.0.0.1:${port}`,
    wss,
    server,
    async close() {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
