// Helpers for the hostile-input specs (issue 4): managers with any option, raw WebSocket
// frames a well-behaved client library would refuse to send, a probe client that proves
// the server still serves everyone else, and memory measurement after a forced GC.
//
// Everything a test opens is registered with `onCleanUp` from ./native.ts, so the specs'
// `afterEach(cleanUp)` closes it.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { WebSocket } from 'ws'
import { WebSocketManager, type ManagerOptions } from '../../index.js'
import { startServer } from '../helpers.js'
import {
  DEADLINE_MS,
  RawConnection,
  onCleanUp,
  openClient,
  parseFrames,
  serveNative,
  subscribeVia,
  upgradeRequest,
  waitFor,
  welcomeId,
  type NativeEndpoint,
  type ServerFrame,
  type TestClient,
  type TransportKind,
} from './native.js'

export type { ManagerOptions }

/** A manager with any option (authenticate, limits, …); shut down by `cleanUp()`. */
export function hostileManager(options: ManagerOptions = {}): WebSocketManager {
  const m = new WebSocketManager(undefined, options)
  onCleanUp(() => m.shutdown())
  return m
}

/** Serves `m` natively through `kind` (see ./native.ts); the cwd is always `/hostile`. */
export const CWD = '/hostile'

export function serve(m: WebSocketManager, kind: TransportKind, path = '/ws'): Promise<NativeEndpoint> {
  return serveNative(m, kind, CWD, path)
}

/** The app.ts wiring (a `ws` server handing sockets to `handleConnection`) on port 0. */
export async function serveJs(m: WebSocketManager): Promise<{ url: string; port: number }> {
  const server = await startServer(m, CWD)
  onCleanUp(() => server.close())
  return { url: `${server.url}/`, port: Number(new URL(server.url).port) }
}

// ------------------------------------------------------------------ memory

let collect: (() => void) | undefined

/** Forces a full garbage collection (exposes `gc` at run time if the process lacks it). */
export function forceGc(): void {
  if (!collect) {
    const exposed = (globalThis as { gc?: () => void }).gc
    if (exposed) {
      collect = exposed
    } else {
      setFlagsFromString('--expose-gc')
      collect = runInNewContext('gc') as () => void
    }
  }
  collect()
  collect()
}

export const MiB = 1024 * 1024

/** Resident set size after a forced GC. */
export function settledRss(): number {
  forceGc()
  return process.memoryUsage().rss
}

/**
 * How far RSS may sit above its baseline after an attack is over.
 *
 * RSS is a coarse instrument: V8 keeps freed heap pages for reuse, glibc keeps freed native
 * arenas (one per runtime thread) rather than returning them, and the test's own clients and
 * buffers live in the same process. A bound of 50 MiB tolerates that noise on a 2-core CI box
 * while still catching what matters here — state kept per attack step: 1 000 connections
 * leaking their read buffers and outboxes, 10 000 refused subscriptions kept, or a ping flood
 * buffered in full would each cost tens to hundreds of MiB. Smaller leaks are caught exactly
 * by the registry counters and descriptor counts the tests check alongside.
 */
export const RSS_SLACK = 50 * MiB

/** Asserts RSS came back within `RSS_SLACK` of `baseline`, polling (GC + RSS) until a deadline. */
export async function expectRssNear(baseline: number, what: string): Promise<void> {
  let last = 0
  try {
    await waitFor(
      `${what}: RSS back within ${RSS_SLACK / MiB} MiB of ${(baseline / MiB).toFixed(1)} MiB`,
      () => {
        last = settledRss()
        return last - baseline < RSS_SLACK
      },
      DEADLINE_MS,
    )
  } catch (error) {
    throw new Error(`${(error as Error).message}; last ${(last / MiB).toFixed(1)} MiB`)
  }
}

// ------------------------------------------------------------------ the probe

/**
 * A well-behaved client subscribed to `probe`: after an attack, `check()` broadcasts a
 * numbered series and asserts every event arrives, in order, with nothing missing.
 */
export interface Probe {
  client: TestClient
  id: string
  check(rounds?: number): Promise<void>
}

export async function openProbe(m: WebSocketManager, url: string): Promise<Probe> {
  const client = await openClient('ws', url)
  const id = await welcomeId(client, CWD)
  await subscribeVia(client, 'probe', 'probe')
  let series = 0
  return {
    client,
    id,
    async check(rounds = 50) {
      series++
      for (let i = 0; i < rounds; i++) m.broadcast('probe', { series, i })
      for (let i = 0; i < rounds; i++) {
        const text = await client.next()
        const parsed = JSON.parse(text) as { channel?: string; data?: { series?: number; i?: number } }
        if (parsed.channel !== 'probe' || parsed.data?.series !== series || parsed.data.i !== i) {
          throw new Error(`probe: expected event ${series}/${i}, got ${text}`)
        }
      }
    },
  }
}

// ------------------------------------------------------------------ raw frames

export interface FrameSpec {
  opcode: number
  payload?: string | Buffer
  /** FIN bit (default true). */
  fin?: boolean
  /** RSV1..3 as a 3-bit number (default 0). */
  rsv?: number
  /** Mask the payload, as a client must (default true). */
  masked?: boolean
  /** Announce this length instead of the payload's real one. */
  announcedLength?: number | bigint
}

/** Any client frame, including the malformed ones. */
export function frame(spec: FrameSpec): Buffer {
  const body = typeof spec.payload === 'string' ? Buffer.from(spec.payload, 'utf8') : (spec.payload ?? Buffer.alloc(0))
  const masked = spec.masked ?? true
  const length = BigInt(spec.announcedLength ?? body.length)
  const b0 = ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode
  const maskBit = masked ? 0x80 : 0
  let header: Buffer
  if (length < 126n) {
    header = Buffer.from([b0, maskBit | Number(length)])
  } else if (length < 65536n) {
    header = Buffer.alloc(4)
    header[0] = b0
    header[1] = maskBit | 126
    header.writeUInt16BE(Number(length), 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = b0
    header[1] = maskBit | 127
    header.writeBigUInt64BE(length, 2)
  }
  if (!masked) return Buffer.concat([header, body])
  const mask = Buffer.from([0x1b, 0x7e, 0xa4, 0x42])
  const out = Buffer.alloc(body.length)
  for (let i = 0; i < body.length; i++) out[i] = body[i]! ^ mask[i % 4]!
  return Buffer.concat([header, mask, out])
}

export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** A masked text frame. */
export function text(payload: string | Buffer): Buffer {
  return frame({ opcode: OP.text, payload })
}

/** A close frame payload: code + reason. */
export function closePayload(code: number, reason: string | Buffer = ''): Buffer {
  const head = Buffer.alloc(2)
  head.writeUInt16BE(code, 0)
  return Buffer.concat([head, typeof reason === 'string' ? Buffer.from(reason) : reason])
}

/** A raw WebSocket connection past its `101` and welcome message. */
export interface RawSocket {
  raw: RawConnection
  id: string
}

/** Opens a raw TCP connection, upgrades it and reads the welcome message. */
export async function rawSocket(port: number, path = '/ws', headers: Record<string, string> = {}): Promise<RawSocket> {
  const raw = await RawConnection.open(port)
  raw.write(upgradeRequest(path, headers))
  const head = await raw.responseHead()
  if (!/^HTTP\/1\.1 101 /.test(head)) throw new Error(`not upgraded: ${head}`)
  const [welcome] = await raw.frames(1)
  const parsed = JSON.parse(welcome!.payload.toString()) as { data: { connectionId: string } }
  return { raw, id: parsed.data.connectionId }
}

/** Text payloads of the data frames in `frames`. */
export function texts(frames: ServerFrame[]): string[] {
  return frames.filter((f) => f.opcode === OP.text).map((f) => f.payload.toString('utf8'))
}

/**
 * Reads frames until a close frame arrives (or the socket ends) and returns the close code
 * (`null` if the connection ended without one) and the text frames before it.
 */
export async function readUntilClose(raw: RawConnection, deadlineMs = DEADLINE_MS): Promise<{ code: number | null; texts: string[] }> {
  await raw.until(
    'a close frame or the end of the connection',
    (bytes) => parseFrames(bytes).frames.some((f) => f.opcode === OP.close),
    deadlineMs,
  ).catch((error: Error) => {
    if (!raw.ended) throw error
  })
  const { frames } = parseFrames(raw.bytes())
  const close = frames.find((f) => f.opcode === OP.close)
  return {
    code: close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : null,
    texts: texts(frames),
  }
}

/** A `ws` client socket, terminated by `cleanUp()`. */
export function trackWs(ws: WebSocket): WebSocket {
  onCleanUp(() => ws.terminate())
  return ws
}

/** Runs `task` over `items` with at most `width` in flight. */
export async function inBatches<T>(items: number, width: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = []
  for (let start = 0; start < items; start += width) {
    const end = Math.min(items, start + width)
    results.push(...(await Promise.all(Array.from({ length: end - start }, (_, k) => task(start + k)))))
  }
  return results
}
