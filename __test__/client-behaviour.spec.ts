// cluso-ws/client behaviour that does not depend on the transport: backoff bounds and reset,
// close() for good, connect timeouts, request timeouts while disconnected, option checks,
// bad server input and app errors reported on 'error', the token, refused subscriptions.
import { createRequire } from 'node:module'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { WebSocket as WsWebSocket } from 'ws'
import type { ClientOptions } from '../client/index.js'
import {
  CLIENT_CJS,
  TcpProxy,
  cleanUp,
  connect,
  fakeServer,
  holdsFor,
  openClient,
  rejectionOf,
  startProxy,
  startServer,
  stateIs,
  subscribedCount,
  waitFor,
} from './helpers/client.js'
import { onCleanUp } from './helpers/native.js'

afterEach(async () => {
  vi.restoreAllMocks()
  await cleanUp()
})

/** A proxy that accepts and closes every connection at once: each attempt fails. */
async function failingEndpoint(): Promise<TcpProxy> {
  const proxy = await startProxy(1)
  proxy.refuseNew = true
  return proxy
}

/**
 * Records the delay of every reconnect the client schedules (its `setTimeout(open, delay)`;
 * white-box: the source's function is named `open`). The drawn delays are checked exactly;
 * wall-clock gaps between attempts only from below, since a loaded machine stretches them.
 */
function recordReconnectDelays(): number[] {
  const delays: number[] = []
  const real = globalThis.setTimeout as (fn: unknown, ms?: number, ...args: unknown[]) => NodeJS.Timeout
  vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: unknown, ms?: number, ...args: unknown[]) => {
    if (typeof fn === 'function' && fn.name === 'open') delays.push(ms ?? 0)
    return real(fn, ms, ...args)
  }) as typeof setTimeout)
  return delays
}

/** Checks that each gap between attempts lasted at least its drawn delay (and not absurdly longer). */
function expectGapsCover(attempts: number[], delays: number[]): void {
  const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
  gaps.forEach((gap, i) => {
    expect(gap).toBeGreaterThanOrEqual(delays[i]! - 2)
    expect(gap).toBeLessThan(delays[i]! + 3000)
  })
}

describe('reconnect backoff', () => {
  it('draws the n-th delay from [min, min(max, min * 2^n)]: the top of the range with random() → 1', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(1 - 1e-9)
    const delays = recordReconnectDelays()
    const proxy = await failingEndpoint()
    openClient(proxy.url(), { minReconnectDelayMs: 40, maxReconnectDelayMs: 300 })
    await waitFor('7 attempts', () => proxy.accepts.length >= 7, 10_000)
    expect(delays.slice(0, 6).map(Math.round)).toEqual([80, 160, 300, 300, 300, 300])
    expectGapsCover(proxy.accepts.slice(0, 7), delays)
  })

  it('and the bottom of the range with random() → 0', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0)
    const delays = recordReconnectDelays()
    const proxy = await failingEndpoint()
    openClient(proxy.url(), { minReconnectDelayMs: 40, maxReconnectDelayMs: 300 })
    await waitFor('7 attempts', () => proxy.accepts.length >= 7, 10_000)
    expect(delays.slice(0, 6)).toEqual([40, 40, 40, 40, 40, 40])
    expectGapsCover(proxy.accepts.slice(0, 7), delays)
  })

  it('stays within the bounds with real randomness, and the draws differ', async () => {
    const delays = recordReconnectDelays()
    const proxy = await failingEndpoint()
    openClient(proxy.url(), { minReconnectDelayMs: 30, maxReconnectDelayMs: 240 })
    await waitFor('9 attempts', () => proxy.accepts.length >= 9, 10_000)
    const ceilings = [60, 120, 240, 240, 240, 240, 240, 240]
    delays.slice(0, 8).forEach((delay, i) => {
      expect(delay).toBeGreaterThanOrEqual(30)
      expect(delay).toBeLessThanOrEqual(ceilings[i]!)
    })
    expect(new Set(delays.slice(0, 8)).size).toBeGreaterThan(1)
    expectGapsCover(proxy.accepts.slice(0, 9), delays)
  })

  it('starts over after a connection that stayed up, not after one that did not', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(1 - 1e-9)
    const delays = recordReconnectDelays()
    const server = await startServer('native')
    const proxy = await startProxy(server.port)
    proxy.refuseNew = true
    const rec = openClient(proxy.url(), { minReconnectDelayMs: 40, maxReconnectDelayMs: 320 })
    // climb to the ceiling: 80, 160, 320
    await waitFor('4 attempts', () => proxy.accepts.length >= 4, 10_000)
    proxy.refuseNew = false
    await stateIs(rec, 'open')
    const climbed = delays.length
    expect(delays.map(Math.round)).toEqual([80, 160, 320, 320].slice(0, climbed))
    // a short-lived connection does not reset: the next delay is still the ceiling
    proxy.cut()
    await stateIs(rec, 'reconnecting')
    await stateIs(rec, 'open')
    expect(delays.slice(climbed).map(Math.round)).toEqual([320])
    // stay up for maxReconnectDelayMs: the range starts over at [min, 2 * min]
    const openedAt = performance.now()
    await holdsFor('the connection stays up', () => rec.client.state === 'open', 330)
    expect(performance.now() - openedAt).toBeGreaterThanOrEqual(320)
    proxy.cut()
    await stateIs(rec, 'reconnecting')
    await stateIs(rec, 'open')
    expect(delays.slice(climbed + 1).map(Math.round)).toEqual([80])
  })
})

describe('close()', () => {
  it('never reconnects after close() on an open client; it is idempotent', async () => {
    const server = await startServer('native')
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    rec.client.subscribe('files', () => {})
    await subscribedCount(rec, 1)
    rec.client.close()
    rec.client.close()
    expect(rec.client.state).toBe('closed')
    await waitFor('the server to see the close', () => server.manager.getSubscribers('files').length === 0)
    await holdsFor('no new connection', () => proxy.accepts.length === 1, 500)
    expect(rec.states).toEqual(['connecting', 'open', 'closed'])
    // a closed client refuses work without throwing into the app
    expect(rec.client.send('x', 1)).toBe(false)
    await expect(rec.client.request('x')).rejects.toMatchObject({ code: 'CLOSED' })
    const off = rec.client.subscribe('files', () => {})
    off()
    expect(rec.client.state).toBe('closed')
  })

  it('cancels a pending reconnect, and a connect in progress', async () => {
    const proxy = await failingEndpoint()
    const rec = openClient(proxy.url(), { minReconnectDelayMs: 100, maxReconnectDelayMs: 100 })
    await stateIs(rec, 'reconnecting')
    rec.client.close()
    await holdsFor('no new attempt after close()', () => proxy.accepts.length === 1, 400)

    const server = await startServer('native')
    const frozen = await startProxy(server.port)
    frozen.freezeNew = true
    const hanging = openClient(frozen.url())
    await waitFor('the connect attempt', () => frozen.accepts.length === 1)
    hanging.client.close()
    expect(hanging.states).toEqual(['connecting', 'closed'])
    await holdsFor('no new attempt', () => frozen.accepts.length === 1, 300)
  })

  it('rejects pending and waiting requests with CLOSED', async () => {
    const proxy = await failingEndpoint()
    const rec = openClient(proxy.url())
    const waiting = rec.client.request('x', null, { timeoutMs: 5000 })
    rec.client.close()
    await expect(waiting).rejects.toMatchObject({ code: 'CLOSED' })
  })
})

describe('timeouts', () => {
  it('drops a connect attempt that hangs (frozen link) after pongTimeoutMs and tries again', async () => {
    const server = await startServer('native')
    const proxy = await startProxy(server.port)
    proxy.freezeNew = true
    const rec = openClient(proxy.url(), { pongTimeoutMs: 200 })
    await waitFor('a second attempt', () => proxy.accepts.length >= 2)
    expect(proxy.accepts[1]! - proxy.accepts[0]!).toBeGreaterThanOrEqual(200 - 2)
    proxy.freezeNew = false
    await stateIs(rec, 'open')
  })

  it('a request while disconnected rejects with TIMEOUT at its timeout, never later', async () => {
    const proxy = await failingEndpoint()
    const rec = openClient(proxy.url())
    const start = performance.now()
    const error = await rejectionOf(rec.client.request('x', 1, { timeoutMs: 300 }))
    const waited = performance.now() - start
    expect(error.code).toBe('TIMEOUT')
    expect(waited).toBeGreaterThanOrEqual(300 - 5)
    expect(waited).toBeLessThan(300 + 2000)
    // the default comes from requestTimeoutMs
    const rec2 = openClient(proxy.url(), { requestTimeoutMs: 100 })
    await expect(rec2.client.request('y')).rejects.toMatchObject({ code: 'TIMEOUT' })
  })
})

describe('options', () => {
  const url = 'ws://127.0.0.1:1/ws'
  const cases: Array<[string, string, ClientOptions | null, RegExp]> = [
    ['http URL', 'http://127.0.0.1/ws', {}, /option url/],
    ['relative URL', '/ws', {}, /option url/],
    ['not a URL', 'not a url', {}, /option url/],
    ['negative min delay', url, { minReconnectDelayMs: -1 }, /option minReconnectDelayMs/],
    ['NaN max delay', url, { maxReconnectDelayMs: Number.NaN }, /option maxReconnectDelayMs/],
    ['inverted delays', url, { minReconnectDelayMs: 500, maxReconnectDelayMs: 100 }, /option maxReconnectDelayMs/],
    ['string delay', url, { minReconnectDelayMs: '5' as unknown as number }, /option minReconnectDelayMs/],
    ['infinite ping', url, { pingIntervalMs: Infinity }, /option pingIntervalMs/],
    ['zero pong timeout', url, { pongTimeoutMs: 0 }, /option pongTimeoutMs/],
    ['negative request timeout', url, { requestTimeoutMs: -5 }, /option requestTimeoutMs/],
    ['WebSocket not a function', url, { WebSocket: {} as never }, /option WebSocket/],
    ['WebSocket an arrow function', url, { WebSocket: (() => {}) as never }, /option WebSocket/],
    ['token with a space', url, { token: 'a b' }, /option token/],
    ['empty token', url, { token: '' }, /option token/],
    ['token not a string', url, { token: 42 as unknown as string }, /option token/],
  ]
  it.each(cases)('throws at connect() for a bad option: %s', (_name, u, options, message) => {
    let thrown: unknown
    try {
      connect(u, { WebSocket: WsWebSocket, ...options })
    } catch (e) {
      thrown = e
    }
    expect(thrown).toBeInstanceOf(Error)
    expect((thrown as Error).message).toMatch(message)
    expect((thrown as { code?: string }).code).toBe('ERR_CLUSO_INVALID_OPTION')
  })

  it('throws naming WebSocket when there is no global WebSocket and none is passed', () => {
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket')
    // Node 20 has none; Node 22 has one: remove it for this check
    delete (globalThis as { WebSocket?: unknown }).WebSocket
    try {
      expect(() => connect(url)).toThrow(/option WebSocket/)
    } finally {
      if (saved) Object.defineProperty(globalThis, 'WebSocket', saved)
    }
  })

  it('throws at once for bad arguments of subscribe, on and send; request rejects', async () => {
    const rec = openClient(url)
    expect(() => rec.client.subscribe('', () => {})).toThrow(TypeError)
    expect(() => rec.client.subscribe('files', 'nope' as never)).toThrow(TypeError)
    expect(() => rec.client.on('nope' as never, () => {})).toThrow(TypeError)
    expect(() => rec.client.on('__proto__' as never, () => {})).toThrow(TypeError)
    expect(() => rec.client.send('', 1)).toThrow(TypeError)
    await expect(rec.client.request('')).rejects.toBeInstanceOf(TypeError)
    await expect(rec.client.request('x', 1, { timeoutMs: -1 })).rejects.toBeInstanceOf(RangeError)
  })
})

describe('bad input and app errors', () => {
  it('ignores what the server sends that it cannot use and reports each on error', async () => {
    const server = await fakeServer()
    const rec = openClient(server.url)
    const conn = await server.accept()
    for (const m of [
      JSON.stringify({ type: 'response', data: { status: 'connected', connectionId: 'conn-1', cwd: '/' } }),
      'not json',
      'null',
      '42',
      Buffer.from([1, 2, 3]),
      JSON.stringify({ type: 'mystery' }),
      JSON.stringify({ type: 'event', channel: 'nobody', data: 1, timestamp: 't' }),
      JSON.stringify({ type: 'response', data: { error: 'Failed to parse message' } }),
      JSON.stringify({ type: 'response', id: 'unknown', data: { status: 'subscribed', channel: 'x' } }),
      JSON.stringify({ type: 'pong' }),
      JSON.stringify({ type: 'event', channel: 'end-marker', data: 1, timestamp: 't' }),
    ])
      conn.send(m)
    // the unknown-id answer and the pong are not errors; the marker after them is the 8th report
    await waitFor('8 reports', () => rec.errors.length >= 8)
    expect(rec.errors.map((e) => e.code)).toEqual([...Array(6).fill('BAD_MESSAGE'), 'SERVER_ERROR', 'BAD_MESSAGE'])
    expect(rec.errors[7]!.message).toMatch(/end-marker/)
    expect(rec.errors[4]!.message).toMatch(/mystery/)
    expect(rec.errors[5]!.message).toMatch(/nobody/)
    expect(rec.errors[6]!.message).toBe('Failed to parse message')
    expect(rec.client.state).toBe('open')
    expect(rec.states).toEqual(['connecting', 'open'])
  })

  it('reports a handler or listener that throws on error; the other handlers still run', async () => {
    const server = await startServer('native')
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    const boom = new Error('handler bug')
    const got: unknown[] = []
    rec.client.subscribe('files', () => {
      throw boom
    })
    rec.client.subscribe('files', (d) => got.push(d))
    rec.client.on('subscribed', () => {
      throw new Error('listener bug')
    })
    rec.client.on('error', () => {
      throw new Error('an error listener that throws is ignored')
    })
    await subscribedCount(rec, 1)
    server.manager.broadcast('files', { n: 1 })
    await waitFor('the second handler', () => got.length === 1)
    expect(rec.errors.map((e) => e.message)).toEqual(['listener bug', 'handler bug'])
  })

  it('reports a refused subscription with the server code and keeps the connection', async () => {
    const server = await startServer('native', { authorizeSubscribe: (_c, channel) => channel !== 'secret' })
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    rec.client.subscribe('secret', () => {})
    rec.client.subscribe('bad\u0001name', () => {})
    rec.client.subscribe('files', () => {})
    await subscribedCount(rec, 1, 'files')
    await waitFor('two refusals', () => rec.errors.length === 2)
    expect(rec.errors.map((e) => e.code).sort()).toEqual(['FORBIDDEN', 'INVALID_CHANNEL'])
    expect(rec.errors.find((e) => e.code === 'FORBIDDEN')!.message).toMatch(/secret/)
    expect(rec.client.state).toBe('open')
  })
})

describe('token', () => {
  it('offers the token as a subprotocol next to cluso; without it the server refuses', async () => {
    const server = await startServer('native', { token: true })
    const token = server.manager.token!
    const good = openClient(`ws://127.0.0.1:${server.port}/ws`, { token })
    await stateIs(good, 'open')
    const bad = openClient(`ws://127.0.0.1:${server.port}/ws`, { token: 'wrong' })
    await stateIs(bad, 'reconnecting')
    const none = openClient(`ws://127.0.0.1:${server.port}/ws`)
    await stateIs(none, 'reconnecting')
    await waitFor('refused handshakes', () => server.manager.getStats().rejectedHandshakes >= 2)
    expect(server.manager.getStats().connections).toBe(1)
  })
})

describe('CommonJS build', () => {
  it('index.cjs works like index.mjs', async () => {
    const cjs = createRequire(import.meta.url)(CLIENT_CJS) as { connect: typeof connect }
    expect(Object.keys(cjs)).toEqual(['connect'])
    const server = await startServer('native')
    const client = cjs.connect(`ws://127.0.0.1:${server.port}/ws`, { WebSocket: WsWebSocket })
    onCleanUp(() => client.close())
    const got: unknown[] = []
    client.subscribe('files', (d) => got.push(d))
    await waitFor('subscribed', () => server.manager.getSubscribers('files').length === 1)
    server.manager.broadcast('files', { via: 'cjs' })
    await waitFor('the event', () => got.length === 1)
    expect(got).toEqual([{ via: 'cjs' }])
    expect(() => cjs.connect('http://x')).toThrow(/option url/)
  })
})
