// Helpers for the native-transport specs: two independent WebSocket client implementations
// (`ws` and undici's WHATWG WebSocket) behind one small interface, raw TCP handshakes and
// frames, polling with a deadline, and descriptor counting.
import { readdirSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import { WebSocket as UndiciWebSocket } from 'undici'
import { WebSocket } from 'ws'
import { WebSocketManager } from '../../index.js'

/** Upper bound for any single wait. */
export const DEADLINE_MS = 5000

export const CONN_ID_RE = /^conn-\d+-[a-z0-9]+$/
export const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

/** Polls `check` until it returns a truthy value, or rejects after `deadlineMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  deadlineMs = DEADLINE_MS,
): Promise<T> {
  const end = Date.now() + deadlineMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Rejects `promise` if it has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Open descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length
}

// ------------------------------------------------------------------ managers

export interface NativeOptions {
  pingIntervalMs?: number
  maxBufferedBytesPerConnection?: number
  maxPayloadBytes?: number
  maxSubscriptionsPerConnection?: number
  maxPendingBroadcastBytes?: number
  allowedOrigins?: string[]
  allowedHosts?: string[]
  token?: boolean | string
}

const managers: WebSocketManager[] = []
const cleanups: Array<() => Promise<void> | void> = []

/** A manager that `cleanUp()` shuts down. */
export function manager(options: NativeOptions = {}): WebSocketManager {
  const m = new WebSocketManager(undefined, options)
  managers.push(m)
  return m
}

/** Registers work for `cleanUp()` (run in reverse order). */
export function onCleanUp(fn: () => Promise<void> | void): void {
  cleanups.push(fn)
}

/** Closes every client, server and manager the current test made; call in afterEach. */
export async function cleanUp(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!
    try {
      await fn()
    } catch {
      // a failing clean-up must not hide the test's own failure
    }
  }
  while (managers.length > 0) {
    const m = managers.pop()!
    try {
      m.shutdown()
    } catch {
      // idempotent; a second call is fine
    }
  }
}

export type TransportKind = 'listen' | 'attach'

export interface NativeEndpoint {
  kind: TransportKind
  port: number
  /** `ws://127.0.0.1:<port><path>` */
  url(path?: string): string
  /** The attached http.Server (attach only). */
  server?: Server
}

/** An http.Server on 127.0.0.1:0 that answers every request with `hello <url>`. */
export async function httpServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void = (req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end(`hello ${req.url}`)
  },
): Promise<{ server: Server; port: number }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  onCleanUp(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { server, port: (server.address() as AddressInfo).port }
}

/** Makes `m` accept native connections on `path` through `listen()` or `attach()`. */
export async function serveNative(
  m: WebSocketManager,
  kind: TransportKind,
  cwd: string,
  path = '/ws',
): Promise<NativeEndpoint> {
  if (kind === 'listen') {
    const address = await m.listen({ port: 0, host: '127.0.0.1', path, cwd })
    return { kind, port: address.port, url: (p = path) => `ws://127.0.0.1:${address.port}${p}` }
  }
  const { server, port } = await httpServer()
  m.attach(server, { path, cwd })
  return { kind, port, server, url: (p = path) => `ws://127.0.0.1:${port}${p}` }
}

// ------------------------------------------------------------------ clients

/**
 * `n` `ws` clients of `url`, each through the welcome and subscribed to `channel` (the ack
 * checked), connected 100 at a time; `onEvent(k, text)` gets every later message of client
 * `k`. A wrong ack lands in `problems`. `cleanUp()` terminates them.
 */
export async function subscribedClients(
  url: string,
  n: number,
  channel: string,
  onEvent: (k: number, text: string) => void,
): Promise<{ problems: string[] }> {
  const problems: string[] = []
  const sockets: WebSocket[] = []
  onCleanUp(() => {
    for (const s of sockets) s.terminate()
  })
  const ack = `{"type":"response","data":{"status":"subscribed","channel":${JSON.stringify(channel)}}}`
  const connectOne = (k: number) =>
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url)
      sockets.push(ws)
      let stage = 0
      ws.on('message', (data) => {
        const text = String(data)
        if (stage === 0) {
          stage = 1
          ws.send(JSON.stringify({ type: 'subscribe', channel }))
        } else if (stage === 1) {
          stage = 2
          if (text !== ack) problems.push(`client ${k}: ack ${text}`)
          resolve()
        } else {
          onEvent(k, text)
        }
      })
      ws.once('error', reject)
    })
  const BATCH = 100
  for (let start = 0; start < n; start += BATCH) {
    await Promise.all(Array.from({ length: Math.min(BATCH, n - start) }, (_, k) => connectOne(start + k)))
  }
  return { problems }
}

export type ClientKind = 'ws' | 'undici'

export interface CloseInfo {
  code: number
  reason: string
}

export interface ClientOptions {
  headers?: Record<string, string>
  protocols?: string[]
}

/** One WebSocket client, whichever library implements it. */
export interface TestClient {
  readonly kind: ClientKind
  /** The negotiated subprotocol ('' when none). */
  readonly protocol: string
  /** The next text message, or a rejection after `timeoutMs`. */
  next(timeoutMs?: number): Promise<string>
  /** Messages received and not yet taken by `next()`. */
  pending(): number
  send(text: string): void
  readonly closed: Promise<CloseInfo>
  isOpen(): boolean
  /** Closes (normal closure) and waits for the close to finish. */
  close(): Promise<void>
}

class Inbox {
  private readonly queue: string[] = []
  private waiter: ((text: string) => void) | null = null
  failure: Error | null = null

  push(text: string): void {
    if (this.waiter) {
      const w = this.waiter
      this.waiter = null
      w(text)
    } else {
      this.queue.push(text)
    }
  }

  size(): number {
    return this.queue.length
  }

  next(timeoutMs: number): Promise<string> {
    const text = this.queue.shift()
    if (text !== undefined) return Promise.resolve(text)
    if (this.waiter) return Promise.reject(new Error('next() is already waiting'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null
        reject(new Error(`no message within ${timeoutMs} ms${this.failure ? ` (${this.failure.message})` : ''}`))
      }, timeoutMs)
      this.waiter = (t) => {
        clearTimeout(timer)
        resolve(t)
      }
    })
  }
}

async function openWs(url: string, options: ClientOptions): Promise<TestClient> {
  const ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers })
  const inbox = new Inbox()
  ws.on('message', (data, isBinary) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
    inbox.push(isBinary ? `<binary ${buf.toString('hex')}>` : buf.toString('utf8'))
  })
  const closed = new Promise<CloseInfo>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  )
  ws.on('error', (error) => {
    inbox.failure = error
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)))
  })
  return {
    kind: 'ws',
    protocol: ws.protocol,
    next: (timeoutMs = DEADLINE_MS) => inbox.next(timeoutMs),
    pending: () => inbox.size(),
    send: (text) => ws.send(text),
    closed,
    isOpen: () => ws.readyState === WebSocket.OPEN,
    async close() {
      if (ws.readyState !== WebSocket.CLOSED) ws.close(1000)
      await within(closed, DEADLINE_MS, 'ws client close')
    },
  }
}

async function openUndici(url: string, options: ClientOptions): Promise<TestClient> {
  const ws = new UndiciWebSocket(url, { protocols: options.protocols, headers: options.headers })
  const inbox = new Inbox()
  ws.addEventListener('message', (event) => {
    const data: unknown = event.data
    inbox.push(typeof data === 'string' ? data : `<binary ${String(data)}>`)
  })
  const closed = new Promise<CloseInfo>((resolve) =>
    ws.addEventListener('close', (event) => resolve({ code: event.code, reason: event.reason })),
  )
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true })
    ws.addEventListener('error', (event) => reject(new Error(`undici WebSocket error: ${String(event.type)}`)), {
      once: true,
    })
  })
  return {
    kind: 'undici',
    protocol: ws.protocol,
    next: (timeoutMs = DEADLINE_MS) => inbox.next(timeoutMs),
    pending: () => inbox.size(),
    send: (text) => ws.send(text),
    closed,
    isOpen: () => ws.readyState === UndiciWebSocket.OPEN,
    async close() {
      if (ws.readyState !== UndiciWebSocket.CLOSED) ws.close(1000)
      await within(closed, DEADLINE_MS, 'undici client close')
    },
  }
}

/** Opens a client of `kind`; `cleanUp()` closes it. */
export async function openClient(kind: ClientKind, url: string, options: ClientOptions = {}): Promise<TestClient> {
  const client = kind === 'ws' ? await openWs(url, options) : await openUndici(url, options)
  onCleanUp(() => (client.isOpen() ? client.close() : undefined))
  return client
}

/** Reads the welcome message and returns the connection id it announces. */
export async function welcomeId(client: TestClient, cwd: string): Promise<string> {
  const text = await client.next()
  const parsed = JSON.parse(text) as { data?: { connectionId?: unknown } }
  const id = parsed.data?.connectionId
  if (typeof id !== 'string') throw new Error(`not a welcome message: ${text}`)
  const expected = JSON.stringify({ type: 'response', data: { status: 'connected', connectionId: id, cwd } })
  if (text !== expected) throw new Error(`welcome ${text} !== ${expected}`)
  return id
}

/** Subscribes through the protocol and checks the acknowledgement byte for byte. */
export async function subscribeVia(client: TestClient, channel: string, id = 's'): Promise<void> {
  client.send(JSON.stringify({ type: 'subscribe', channel, id }))
  const ack = await client.next()
  const expected = JSON.stringify({ type: 'response', id, data: { status: 'subscribed', channel } })
  if (ack !== expected) throw new Error(`subscribe ack ${ack} !== ${expected}`)
}

// ------------------------------------------------------------------ raw TCP

/** A syntactically valid upgrade request; `headers` are added (or replace same-named lines). */
export function upgradeRequest(
  path = '/ws',
  headers: Record<string, string> = {},
  method = 'GET',
): string {
  const base: Record<string, string> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
  }
  const all = { ...base, ...headers }
  const lines = Object.entries(all).map(([k, v]) => `${k}: ${v}`)
  return `${method} ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/**
 * A self-signed certificate for 127.0.0.1 / localhost (EC P-256, valid for 100 years), only
 * for the TLS fallback test. Never use it for anything else.
 */
export const TEST_TLS = {
  key: `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPvxeOZpWCVCBk8Ov
VgYKpKSlRvJtomwDYh0NQvaiR9WhRANCAARRB0lCyTKgWKzB97lE3YOVz0NQo1Fo
nrK33OoReV3zhDlqIQPlaiyB43s9w51w/yYUIwOG3wtf8m8Kk/dky/xf
-----END PRIVATE KEY-----
`,
  cert: `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUWvzTqQm3+R3TnmClc8rTmWOwx/YwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNjAyMTIwNVoYDzIxMjYxMTAy
MDIxMjA1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARRB0lCyTKgWKzB97lE3YOVz0NQo1FonrK33OoReV3zhDlqIQPlaiyB
43s9w51w/yYUIwOG3wtf8m8Kk/dky/xfo28wbTAdBgNVHQ4EFgQUZs4I5q9L3afi
zEECb/GEZrlO39gwHwYDVR0jBBgwFoAUZs4I5q9L3afizEECb/GEZrlO39gwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwCgYIKoZI
zj0EAwIDSAAwRQIgK5itQc9AY6cT7j7/EW7PjNJcPnwGx3DdcQq+FPFDdTQCIQCG
Bjio4Iync6qCtdUBB+aBS+81doOQUJ/kA81P4stsrA==
-----END CERTIFICATE-----
`,
}

/** The accept key for `dGhlIHNhbXBsZSBub25jZQ==` (RFC 6455 §1.3). */
export const SAMPLE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='

/** A masked client frame (text unless `opcode` says otherwise). */
export function maskedFrame(payload: string | Buffer, opcode = 0x1): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
  const mask = Buffer.from([0x37, 0xfa, 0x21, 0x3d])
  let header: Buffer
  if (body.length < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | body.length])
  } else if (body.length < 65536) {
    header = Buffer.alloc(4)
    header[0] = 0x80 | opcode
    header[1] = 0x80 | 126
    header.writeUInt16BE(body.length, 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = 0x80 | opcode
    header[1] = 0x80 | 127
    header.writeBigUInt64BE(BigInt(body.length), 2)
  }
  const masked = Buffer.alloc(body.length)
  for (let i = 0; i < body.length; i++) masked[i] = body[i]! ^ mask[i % 4]!
  return Buffer.concat([header, mask, masked])
}

export interface ServerFrame {
  fin: boolean
  opcode: number
  payload: Buffer
}

/** Parses unmasked server frames off the front of `buf`; returns them and the rest. */
export function parseFrames(buf: Buffer): { frames: ServerFrame[]; rest: Buffer } {
  const frames: ServerFrame[] = []
  let at = 0
  for (;;) {
    if (buf.length - at < 2) break
    const b0 = buf[at]!
    const b1 = buf[at + 1]!
    if (b1 & 0x80) throw new Error('server frames must not be masked')
    let len = b1 & 0x7f
    let head = 2
    if (len === 126) {
      if (buf.length - at < 4) break
      len = buf.readUInt16BE(at + 2)
      head = 4
    } else if (len === 127) {
      if (buf.length - at < 10) break
      len = Number(buf.readBigUInt64BE(at + 2))
      head = 10
    }
    if (buf.length - at < head + len) break
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: buf.subarray(at + head, at + head + len) })
    at += head + len
  }
  return { frames, rest: buf.subarray(at) }
}

/** A raw TCP connection that collects everything it reads. */
export class RawConnection {
  readonly socket: Socket
  private data = Buffer.alloc(0)
  private wake: (() => void) | null = null
  ended = false
  readonly done: Promise<void>

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk])
      this.wake?.()
    })
    this.done = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true
        this.wake?.()
        resolve()
      }),
    )
    socket.on('error', () => {
      // a reset is an acceptable end here; tests look at what arrived
    })
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host: '127.0.0.1' })
      socket.once('connect', () => {
        const raw = new RawConnection(socket)
        onCleanUp(() => {
          socket.destroy()
        })
        resolve(raw)
      })
      socket.once('error', reject)
    })
  }

  text(): string {
    return this.data.toString('latin1')
  }

  bytes(): Buffer {
    return this.data
  }

  /** Drops the first `n` bytes read so far. */
  consume(n: number): void {
    this.data = this.data.subarray(n)
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes)
  }

  /** Waits until `check(bytes)` holds (or the socket ends), with a deadline. */
  async until(what: string, check: (bytes: Buffer) => boolean, deadlineMs = DEADLINE_MS): Promise<void> {
    const end = Date.now() + deadlineMs
    while (!check(this.data)) {
      if (this.ended) throw new Error(`connection ended before: ${what}; got ${JSON.stringify(this.text())}`)
      const left = end - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for: ${what}; got ${JSON.stringify(this.text())}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(timer)
          this.wake = null
          resolve()
        }
      })
    }
  }

  /** Waits for the end of an HTTP response head and returns it, consuming it. */
  async responseHead(): Promise<string> {
    await this.until('an HTTP response head', (b) => b.includes('\r\n\r\n'))
    const end = this.data.indexOf('\r\n\r\n') + 4
    const head = this.data.subarray(0, end).toString('latin1')
    this.consume(end)
    return head
  }

  /** Waits for complete server frames, and returns (and consumes) them once `count` have arrived. */
  async frames(count: number, deadlineMs = DEADLINE_MS): Promise<ServerFrame[]> {
    await this.until(`${count} frame(s)`, (b) => parseFrames(b).frames.length >= count, deadlineMs)
    const { frames } = parseFrames(this.data)
    const taken = frames.slice(0, count)
    const used = taken.reduce((n, f) => n + f.payload.length + headerLength(f.payload.length), 0)
    this.consume(used)
    return taken
  }

  /** Waits until the peer closes the connection. */
  async closedByPeer(deadlineMs = DEADLINE_MS): Promise<void> {
    await within(this.done, deadlineMs, 'the server to close the connection')
  }
}

function headerLength(payloadLength: number): number {
  return payloadLength < 126 ? 2 : payloadLength < 65536 ? 4 : 10
}

/** Whether a TCP connection to 127.0.0.1:`port` is refused. */
export function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

/** Sends `request` on a fresh connection and returns everything the server wrote until it closed. */
export async function rawExchange(port: number, request: string | Buffer): Promise<string> {
  const raw = await RawConnection.open(port)
  raw.write(request)
  await raw.closedByPeer()
  return raw.text()
}

/** The status code of an HTTP response. */
export function statusOf(response: string): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(response)
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(response)}`)
  return Number(m[1])
}
