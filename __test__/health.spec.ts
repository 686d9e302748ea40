// The health check (SPEC A.1, A.6): silent peers are terminated and removed within about
// two intervals; peers that answer pings stay; pingIntervalMs: 0 disables it.
// No fixed sleeps: every wait polls with a deadline, usually counting ping() calls.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { asWs, mockSocket, newManager, shutdownAll } from './helpers.js'

const INTERVAL = 50
const WAIT = { timeout: 3000, interval: 10 }

afterEach(() => {
  shutdownAll()
})

describe('WebSocketManager health check', () => {
  it('terminates and removes a peer that never answers, on the tick after its first ping', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket()
    m.addConnection(asWs(ws), 'silent')
    m.subscribe('silent', 'files')
    await vi.waitFor(() => {
      expect(ws.terminate).toHaveBeenCalled()
      expect(m.getConnections().has('silent')).toBe(false)
    }, WAIT)
    expect(ws.terminate).toHaveBeenCalledTimes(1)
    // one ping, then removal on the following tick: gone within two intervals
    expect(ws.ping).toHaveBeenCalledTimes(1)
    expect(ws.ping!.mock.invocationCallOrder[0]!).toBeLessThan(ws.terminate!.mock.invocationCallOrder[0]!)
    expect(m.getSubscribers('files')).toEqual([])
    expect(m.getChannels('silent')).toEqual([])
  })

  it('removes a silent peer within a bounded time', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket()
    const start = Date.now()
    m.addConnection(asWs(ws), 'silent')
    await vi.waitFor(() => expect(m.getConnections().has('silent')).toBe(false), WAIT)
    // two intervals plus generous scheduling slack on a loaded 2-core machine
    expect(Date.now() - start).toBeLessThan(2 * INTERVAL + 1000)
  })

  it('falls back to close() when the socket has no terminate()', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket({ terminate: false })
    m.addConnection(asWs(ws), 'silent')
    await vi.waitFor(() => {
      expect(ws.close).toHaveBeenCalled()
      expect(m.getConnections().has('silent')).toBe(false)
    }, WAIT)
    expect(ws.ping).toHaveBeenCalledTimes(1)
  })

  it('keeps a peer that answers each ping (asynchronously)', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket({ ping: 'async' })
    m.addConnection(asWs(ws), 'alive')
    await vi.waitFor(() => expect(ws.ping!.mock.calls.length).toBeGreaterThanOrEqual(4), WAIT)
    expect(m.getConnections().has('alive')).toBe(true)
    expect(ws.terminate).not.toHaveBeenCalled()
    expect(ws.close).not.toHaveBeenCalled()
  })

  it("keeps a peer whose ping() emits 'pong' synchronously (isAlive is cleared before ping)", async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket({ ping: 'sync' })
    m.addConnection(asWs(ws), 'alive')
    await vi.waitFor(() => expect(ws.ping!.mock.calls.length).toBeGreaterThanOrEqual(4), WAIT)
    expect(m.getConnections().has('alive')).toBe(true)
    expect(ws.terminate).not.toHaveBeenCalled()
  })

  it('does not remove a peer that answers every ping while the event loop is blocked for several intervals', async () => {
    // The original's timer ran on the JS thread: a blocked loop only delays the check, and a
    // peer is never declared dead without having been pinged first.
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket({ ping: 'sync' })
    m.addConnection(asWs(ws), 'busy')
    const end = Date.now() + 4 * INTERVAL
    while (Date.now() < end) {
      // the condition under test: a synchronous job longer than the ping interval
    }
    // wait for three pings or a termination, whichever comes first
    await vi.waitFor(() => expect(ws.ping!.mock.calls.length >= 3 || ws.terminate!.mock.calls.length > 0).toBe(true), WAIT)
    expect(ws.terminate).not.toHaveBeenCalled()
    expect(m.getConnections().has('busy')).toBe(true)
    expect(ws.ping!.mock.calls.length).toBeGreaterThanOrEqual(3)
  })

  it('removes the silent peer and keeps the answering one side by side', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const alive = mockSocket({ ping: 'async' })
    const silent = mockSocket()
    m.addConnection(asWs(alive), 'alive')
    m.addConnection(asWs(silent), 'silent')
    await vi.waitFor(() => expect(m.getConnections().has('silent')).toBe(false), WAIT)
    await vi.waitFor(() => expect(alive.ping!.mock.calls.length).toBeGreaterThanOrEqual(3), WAIT)
    expect([...m.getConnections().keys()]).toEqual(['alive'])
  })

  it("marks isAlive false when pinging and true again on 'pong'", async () => {
    // a longer interval so the checks below run well inside one tick
    const m = newManager({ pingIntervalMs: 250 })
    const ws = mockSocket()
    m.addConnection(asWs(ws), 'a')
    expect(m.getConnections().get('a')!.isAlive).toBe(true)
    await vi.waitFor(() => expect(ws.ping).toHaveBeenCalled(), WAIT)
    const pings = ws.ping!.mock.calls.length
    expect(pings).toBe(1)
    expect(m.getConnections().get('a')!.isAlive).toBe(false)
    ws.emit('pong')
    expect(m.getConnections().get('a')!.isAlive).toBe(true)
    // the pong saved it from removal on the next tick: it is pinged again instead
    await vi.waitFor(() => expect(ws.ping).toHaveBeenCalledTimes(2), WAIT)
    expect(ws.terminate).not.toHaveBeenCalled()
  })

  it('removes a peer whose ping() throws', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket({ ping: 'throw' })
    const ok = mockSocket({ ping: 'async' })
    m.addConnection(asWs(ws), 'bad')
    m.addConnection(asWs(ok), 'ok')
    await vi.waitFor(() => expect(m.getConnections().has('bad')).toBe(false), WAIT)
    expect(ws.ping).toHaveBeenCalledTimes(1)
    expect(m.getConnections().has('ok')).toBe(true)
  })

  it('does not throw when terminate() throws', async () => {
    const m = newManager({ pingIntervalMs: INTERVAL })
    const ws = mockSocket()
    ws.terminate!.mockImplementation(() => {
      throw new Error('terminate failed')
    })
    m.addConnection(asWs(ws), 'a')
    await vi.waitFor(() => expect(m.getConnections().has('a')).toBe(false), WAIT)
    // the manager keeps working
    const next = mockSocket()
    m.addConnection(asWs(next), 'b')
    m.subscribe('b', 'files')
    m.broadcast('files', 1)
    expect(next.send).toHaveBeenCalledTimes(1)
  })

  it('is disabled by pingIntervalMs: 0', async () => {
    const control = newManager({ pingIntervalMs: 20 })
    const clock = mockSocket({ ping: 'async' })
    control.addConnection(asWs(clock), 'clock')
    const m = newManager({ pingIntervalMs: 0 })
    const ws = mockSocket()
    m.addConnection(asWs(ws), 'quiet')
    // let the control manager tick several times: well past several 20 ms intervals
    await vi.waitFor(() => expect(clock.ping!.mock.calls.length).toBeGreaterThanOrEqual(5), WAIT)
    expect(ws.ping).not.toHaveBeenCalled()
    expect(m.getConnections().has('quiet')).toBe(true)
    expect(m.getConnections().get('quiet')!.isAlive).toBe(true)
  })

  it('does not ping within the default 30 s interval', async () => {
    const control = newManager({ pingIntervalMs: 20 })
    const clock = mockSocket({ ping: 'async' })
    control.addConnection(asWs(clock), 'clock')
    const m = newManager()
    const ws = mockSocket()
    m.addConnection(asWs(ws), 'a')
    await vi.waitFor(() => expect(clock.ping!.mock.calls.length).toBeGreaterThanOrEqual(3), WAIT)
    expect(ws.ping).not.toHaveBeenCalled()
  })

  it('stops at shutdown', async () => {
    const control = newManager({ pingIntervalMs: 20 })
    const clock = mockSocket({ ping: 'async' })
    control.addConnection(asWs(clock), 'clock')
    const m = newManager({ pingIntervalMs: 20 })
    const ws = mockSocket({ ping: 'async' })
    m.addConnection(asWs(ws), 'a')
    await vi.waitFor(() => expect(ws.ping).toHaveBeenCalled(), WAIT)
    m.shutdown()
    const pingsAtShutdown = ws.ping!.mock.calls.length
    const clockAtShutdown = clock.ping!.mock.calls.length
    await vi.waitFor(() => expect(clock.ping!.mock.calls.length).toBeGreaterThanOrEqual(clockAtShutdown + 4), WAIT)
    expect(ws.ping!.mock.calls.length).toBe(pingsAtShutdown)
  })
})
