// cluso-ws/client against the built addon on both transports (native listen() and drop-in
// handleConnection on a `ws` server), through a TCP proxy the test controls: subscribe and
// receive, reconnect after cuts, drops and restarts, rebuild subscriptions from the desired
// set, dead links found by ping/pong, requests pending on a dropped link.
import { afterEach, describe, expect, it } from 'vitest'
import {
  TRANSPORTS,
  cleanUp,
  holdsFor,
  openClient,
  rejectionOf,
  startProxy,
  startServer,
  stateIs,
  subscribedCount,
  subscribers,
  waitFor,
  type TestServer,
} from './helpers/client.js'
import type { FileChangeEvent, ChannelEvent } from '../client/index.js'

afterEach(async () => {
  await cleanUp()
})

/** The connection id the server gives the client that subscribed to `channel`. */
async function connectionOn(server: TestServer, channel: string): Promise<string> {
  const ids = await waitFor(`a subscriber of ${channel}`, () => {
    const list = subscribers(server, channel)
    return list.length === 1 && list
  })
  return ids[0]!
}

const FILE = { file: 'src/main.ts', event: 'change', timestamp: '2026-01-01T00:00:00.000Z' }

describe.each(TRANSPORTS)('cluso-ws/client on the %s transport', (transport) => {
  it('subscribes, receives typed events with their envelope, and stops after off()', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    expect(rec.client.state).toBe('connecting')
    const got: Array<[FileChangeEvent, ChannelEvent<FileChangeEvent>]> = []
    const off = rec.client.subscribe('files', (data, event) => got.push([data, event]))
    await stateIs(rec, 'open')
    expect(await subscribedCount(rec, 1)).toEqual([{ channel: 'files' }])
    server.manager.broadcast('files', FILE)
    await waitFor('the event', () => got.length === 1)
    const [data, event] = got[0]!
    expect(data).toEqual(FILE)
    expect(event).toMatchObject({ type: 'event', channel: 'files', data: FILE })
    expect(event.timestamp).toMatch(/^\d{4}-\d\d-\d\dT/)
    off()
    await waitFor('the server to drop the subscription', () => subscribers(server, 'files').length === 0)
    server.manager.broadcast('files', FILE)
    // a marker on another channel proves the earlier broadcast had its chance to arrive
    const marks: unknown[] = []
    rec.client.subscribe('git', (d) => marks.push(d))
    await subscribedCount(rec, 1, 'git')
    server.manager.broadcast('git', { type: 'commit', message: 'm', timestamp: 't' })
    await waitFor('the marker', () => marks.length === 1)
    expect(got).toHaveLength(1)
    expect(rec.errors).toEqual([])
    expect(rec.states).toEqual(['connecting', 'open'])
  })

  it('reconnects after the proxy cuts the link, resubscribes, and receives again', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    const got: unknown[] = []
    rec.client.subscribe('files', (d) => got.push(d))
    await subscribedCount(rec, 1)
    const first = await connectionOn(server, 'files')
    proxy.cut()
    await stateIs(rec, 'reconnecting')
    await subscribedCount(rec, 2)
    expect(rec.client.state).toBe('open')
    const second = await connectionOn(server, 'files')
    expect(second).not.toBe(first)
    server.manager.broadcast('files', FILE)
    await waitFor('the event after the reconnect', () => got.length === 1)
    expect(rec.states).toEqual(['connecting', 'open', 'reconnecting', 'open'])
    expect(proxy.accepts).toHaveLength(2)
  })

  it('reconnects after the server drops the connection', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    rec.client.subscribe('files', () => {})
    await subscribedCount(rec, 1)
    server.manager.removeConnection(await connectionOn(server, 'files'))
    await subscribedCount(rec, 2)
    expect(rec.states).toEqual(['connecting', 'open', 'reconnecting', 'open'])
  })

  it('reconnects to a restarted server and subscribes there', async () => {
    const first = await startServer(transport)
    const proxy = await startProxy(first.port)
    const rec = openClient(proxy.url())
    const got: unknown[] = []
    rec.client.subscribe('files', (d) => got.push(d))
    await subscribedCount(rec, 1)
    await first.stop()
    await stateIs(rec, 'reconnecting')
    // a few attempts fail against the dead port before the new server is up
    await waitFor('failed attempts', () => proxy.accepts.length >= 3)
    const second = await startServer(transport)
    proxy.targetPort = second.port
    await subscribedCount(rec, 2)
    await connectionOn(second, 'files')
    second.manager.broadcast('files', FILE)
    await waitFor('the event from the new server', () => got.length === 1)
    expect(rec.client.state).toBe('open')
  })

  it('rebuilds subscriptions from the desired set on each open', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    const offA = rec.client.subscribe('a', () => {})
    const offB = rec.client.subscribe('b', () => {})
    const offB2 = rec.client.subscribe('b', () => {})
    const offC = rec.client.subscribe('c', () => {})
    await subscribedCount(rec, 3)
    offB()
    // 'b' still has a handler: still subscribed
    offC()
    await waitFor('c gone on the server', () => subscribers(server, 'c').length === 0)
    expect(subscribers(server, 'b')).toHaveLength(1)
    // while disconnected: give up 'b', subscribe 'd' (nothing can be sent now, nothing is queued)
    proxy.refuseNew = true
    proxy.cut()
    await stateIs(rec, 'reconnecting')
    offB2()
    rec.client.subscribe('d', () => {})
    const sentBefore = server.received.length
    proxy.refuseNew = false
    await waitFor('a and d subscribed again', () => rec.subscribed.length === 5 && rec.subscribed)
    expect(rec.subscribed.slice(3).map((s) => s.channel).sort()).toEqual(['a', 'd'])
    const id = await connectionOn(server, 'a')
    expect(server.manager.getChannels(id).sort()).toEqual(['a', 'd'])
    expect(subscribers(server, 'b')).toEqual([])
    expect(subscribers(server, 'c')).toEqual([])
    if (transport === 'drop-in') {
      // exactly two subscribes and nothing else went out on the new connection
      const sent = server.received.slice(sentBefore).map((t) => JSON.parse(t) as Record<string, unknown>)
      expect(sent.map((m) => [m.type, m.channel]).sort()).toEqual([
        ['subscribe', 'a'],
        ['subscribe', 'd'],
      ])
      expect(sent.every((m) => typeof m.id === 'string' && !('since' in m))).toBe(true)
    }
    offA()
    expect(rec.errors).toEqual([])
  })

  it('finds a dead link with ping/pong when the proxy freezes it, and reconnects', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url(), { pingIntervalMs: 100, pongTimeoutMs: 300 })
    const got: unknown[] = []
    rec.client.subscribe('files', (d) => got.push(d))
    await subscribedCount(rec, 1)
    // pings keep a healthy idle link open, well past the pong timeout
    await holdsFor('the idle link stays open', () => proxy.accepts.length === 1 && rec.client.state === 'open', 700)
    const frozenAt = performance.now()
    proxy.freeze()
    await stateIs(rec, 'reconnecting')
    const detectMs = performance.now() - frozenAt
    await subscribedCount(rec, 2)
    const resumeMs = performance.now() - frozenAt
    // idle ≤ pingIntervalMs before the ping, then pongTimeoutMs without an answer (a ping
    // already in flight at the freeze shortens it by at most its round trip)
    expect(detectMs).toBeGreaterThanOrEqual(200)
    expect(detectMs).toBeLessThan(100 + 300 + 3000)
    console.log(`[${transport}] dead link detected in ${detectMs.toFixed(0)} ms, resubscribed ${resumeMs.toFixed(0)} ms after the freeze (ping 100 ms, pong timeout 300 ms)`)
    await waitFor('a subscriber again', () => subscribers(server, 'files').length >= 1)
    server.manager.broadcast('files', FILE)
    await waitFor('the event on the new link', () => got.length === 1)
  })

  it('rejects requests pending on a dropped link with DISCONNECTED', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    const rec = openClient(proxy.url())
    await stateIs(rec, 'open')
    // a handler that never settles keeps the request pending until the cut
    server.manager.handle('build', () => new Promise(() => {}))
    const pending = rec.client.request('build', { target: 'x' }, { timeoutMs: 10_000 })
    if (transport === 'drop-in') {
      await waitFor('the invoke on the server', () => server.received.length === 1)
      expect(JSON.parse(server.received[0]!)).toEqual({ type: 'invoke', id: expect.any(Number), channel: 'build', data: { target: 'x' } })
    }
    const cutAt = performance.now()
    proxy.cut()
    const error = await rejectionOf(pending)
    expect(error.code).toBe('DISCONNECTED')
    expect(error.message).toMatch(/may or may not have run/)
    expect(performance.now() - cutAt).toBeLessThan(3000)
  })

  it('holds a request made while disconnected and sends it on open, within its timeout', async () => {
    const server = await startServer(transport)
    const proxy = await startProxy(server.port)
    proxy.refuseNew = true
    const rec = openClient(proxy.url())
    await stateIs(rec, 'reconnecting')
    server.manager.handle('later', () => new Promise(() => {}))
    const start = performance.now()
    const pending = rec.client.request('later', 1, { timeoutMs: 1500 })
    proxy.refuseNew = false
    await stateIs(rec, 'open')
    if (transport === 'drop-in') {
      await waitFor('the invoke on the server', () => server.received.length === 1)
      expect(JSON.parse(server.received[0]!)).toMatchObject({ type: 'invoke', channel: 'later', data: 1 })
    }
    // its handler never settles: the client's timeout still counts from the call
    const error = await rejectionOf(pending)
    const waited = performance.now() - start
    expect(error.code).toBe('TIMEOUT')
    expect(waited).toBeGreaterThanOrEqual(1500 - 5)
    expect(waited).toBeLessThan(1500 + 2000)
  })
})
