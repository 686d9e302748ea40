// WebSocketManager, SPEC A.1 and A.5: the drop-in API driven with WebSocket-like mocks.
import { EventEmitter } from 'node:events'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { WebSocketManager } from '../index.js'
import {
  asWs,
  CONN_ID_RE,
  envelopeTimestamp,
  expectedEnvelope,
  expectRecentIso,
  lastSent,
  mockSocket,
  newManager,
  sent,
  shutdownAll,
  track,
} from './helpers.js'

afterEach(() => {
  shutdownAll()
})

describe('WebSocketManager', () => {
  describe('SPEC A.5 unit-test pattern', () => {
    it('passes unchanged: send is called before broadcast returns', () => {
      const mockWss = new EventEmitter() as any
      const mockWs = new EventEmitter() as any
      mockWs.readyState = 1
      mockWs.send = vi.fn()
      const manager = track(new WebSocketManager(mockWss))
      manager.addConnection(mockWs, 'test-1')
      manager.subscribe('test-1', 'files')
      manager.broadcast('files', { file: 'test.ts' })
      expect(mockWs.send).toHaveBeenCalled()
    })
  })

  describe('constructor', () => {
    it('accepts no arguments, a bare EventEmitter, or options', () => {
      const a = newManager()
      const b = newManager(undefined, new EventEmitter())
      const c = newManager({ pingIntervalMs: 0 })
      const d = newManager({ pingIntervalMs: 1000 }, new EventEmitter())
      for (const m of [a, b, c, d]) expect(m.getConnections().size).toBe(0)
    })

    it('does not listen on wss itself (the app wires "connection")', () => {
      const wss = new EventEmitter()
      newManager(undefined, wss)
      expect(wss.listenerCount('connection')).toBe(0)
    })
  })

  describe('#addConnection', () => {
    it('registers {ws, id, channels: empty Set, isAlive: true}', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      const rec = m.getConnections().get('a')
      expect(rec).toBeDefined()
      expect(rec!.ws).toBe(ws)
      expect(rec!.id).toBe('a')
      expect(rec!.channels).toBeInstanceOf(Set)
      expect(rec!.channels.size).toBe(0)
      expect(rec!.isAlive).toBe(true)
      expect(m.getChannels('a')).toEqual([])
    })

    it('does not send anything on its own', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      expect(ws.send).not.toHaveBeenCalled()
    })

    it('replaces an existing record with the same id, with no channels', () => {
      const m = newManager()
      const ws1 = mockSocket()
      const ws2 = mockSocket()
      m.addConnection(asWs(ws1), 'a')
      m.subscribe('a', 'files')
      m.addConnection(asWs(ws2), 'a')
      expect(m.getConnections().size).toBe(1)
      expect(m.getConnections().get('a')!.ws).toBe(ws2)
      expect(m.getChannels('a')).toEqual([])
      expect(m.getSubscribers('files')).toEqual([])
      m.subscribe('a', 'files')
      m.broadcast('files', { n: 1 })
      expect(ws1.send).not.toHaveBeenCalled()
      expect(ws2.send).toHaveBeenCalledTimes(1)
    })

    it("does not let a replaced socket's 'close' remove the new record", () => {
      const m = newManager()
      const ws1 = mockSocket()
      const ws2 = mockSocket()
      m.addConnection(asWs(ws1), 'a')
      m.addConnection(asWs(ws2), 'a')
      m.subscribe('a', 'files')
      ws1.emit('close', 1000, Buffer.alloc(0))
      expect(m.getConnections().get('a')?.ws).toBe(ws2)
      expect(m.getSubscribers('files')).toEqual(['a'])
      ws2.emit('close', 1000, Buffer.alloc(0))
      expect(m.getConnections().has('a')).toBe(false)
      expect(m.getSubscribers('files')).toEqual([])
    })

    it('stores an id with an unpaired surrogate with U+FFFD in its place (README: deliberate difference)', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'x\ud800')
      expect([...m.getConnections().keys()]).toEqual(['x\ufffd'])
      // the caller's own spelling still finds the record
      m.subscribe('x\ud800', 'files')
      expect(m.getChannels('x\ud800')).toEqual(['files'])
      m.broadcast('files', 1)
      expect(ws.send).toHaveBeenCalledTimes(1)
    })

    it("removes the record when the socket emits 'close'", () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      ws.emit('close', 1006, Buffer.alloc(0))
      expect(m.getConnections().has('a')).toBe(false)
      expect(m.getSubscribers('files')).toEqual([])
      expect(m.getChannels('a')).toEqual([])
    })

    it("listens for 'error' so an emitted error neither throws nor removes the connection", () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      expect(ws.listenerCount('error')).toBeGreaterThan(0)
      expect(() => ws.emit('error', new Error('boom'))).not.toThrow()
      expect(m.getConnections().has('a')).toBe(true)
    })

    it("listens for 'pong' and 'close'", () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      expect(ws.listenerCount('pong')).toBeGreaterThan(0)
      expect(ws.listenerCount('close')).toBeGreaterThan(0)
    })

    it('listens with plain JavaScript closures, not a native function per socket', () => {
      // A native function per socket and event cost ~3 KB per connection (issue 12).
      const m = newManager()
      const ws = mockSocket()
      m.handleConnection(asWs(ws), '/')
      for (const event of ['pong', 'close', 'error', 'message']) {
        const [listener] = ws.listeners(event)
        expect(Function.prototype.toString.call(listener)).not.toContain('[native code]')
      }
    })

    it('works with a socket that calls its listeners detached (no `this`)', () => {
      const m = newManager()
      const handlers: Record<string, (...args: unknown[]) => void> = {}
      const fire = (event: string, ...args: unknown[]) => {
        const listener = handlers[event]
        if (listener === undefined) throw new Error(`no '${event}' listener`)
        listener(...args)
      }
      const ws = {
        readyState: 1,
        send: vi.fn(),
        on(event: string, listener: (...args: unknown[]) => void) {
          handlers[event] = listener
        },
      }
      m.handleConnection(asWs(ws), '/')
      const [id] = m.getConnections().keys()
      fire('message', Buffer.from('{"type":"subscribe","channel":"files"}'), false)
      expect(m.getSubscribers('files')).toEqual([id])
      fire('pong')
      fire('error', new Error('boom'))
      fire('close', 1000, Buffer.alloc(0))
      expect(m.getConnections().size).toBe(0)
      expect(m.getSubscribers('files')).toEqual([])
    })
  })

  describe('#removeConnection', () => {
    it('closes an open socket and forgets the record and its subscriptions', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      m.subscribe('a', 'git')
      m.removeConnection('a')
      expect(ws.close).toHaveBeenCalledTimes(1)
      expect(m.getConnections().has('a')).toBe(false)
      expect(m.getSubscribers('files')).toEqual([])
      expect(m.getSubscribers('git')).toEqual([])
      expect(m.getChannels('a')).toEqual([])
    })

    it.each([0, 2, 3])('does not close a socket whose readyState is %i', (readyState) => {
      const m = newManager()
      const ws = mockSocket({ readyState })
      m.addConnection(asWs(ws), 'a')
      m.removeConnection('a')
      expect(ws.close).not.toHaveBeenCalled()
      expect(m.getConnections().has('a')).toBe(false)
    })

    it('is a no-op for an unknown id', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      expect(() => m.removeConnection('nope')).not.toThrow()
      expect(m.getConnections().size).toBe(1)
      expect(ws.close).not.toHaveBeenCalled()
    })

    it('does not throw when close() throws', () => {
      const m = newManager()
      const ws = mockSocket()
      ws.close.mockImplementation(() => {
        throw new Error('close failed')
      })
      m.addConnection(asWs(ws), 'a')
      expect(() => m.removeConnection('a')).not.toThrow()
      expect(m.getConnections().has('a')).toBe(false)
    })

    it("copes with a close() that emits 'close' synchronously", () => {
      const m = newManager()
      const ws = mockSocket()
      ws.close.mockImplementation(() => {
        ws.readyState = 3
        ws.emit('close', 1000, Buffer.alloc(0))
      })
      m.addConnection(asWs(ws), 'a')
      m.addConnection(asWs(mockSocket()), 'b')
      expect(() => m.removeConnection('a')).not.toThrow()
      expect([...m.getConnections().keys()]).toEqual(['b'])
    })

    it('is idempotent', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.removeConnection('a')
      expect(() => m.removeConnection('a')).not.toThrow()
      expect(ws.close).toHaveBeenCalledTimes(1)
    })
  })

  describe('#subscribe / #unsubscribe', () => {
    it('adds and removes channels on a known connection', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.subscribe('a', 'files')
      m.subscribe('a', 'git')
      expect(m.getChannels('a')).toEqual(['files', 'git'])
      expect(m.getSubscribers('files')).toEqual(['a'])
      m.unsubscribe('a', 'files')
      expect(m.getChannels('a')).toEqual(['git'])
      expect(m.getSubscribers('files')).toEqual([])
    })

    it('is idempotent: subscribing twice keeps one subscription and one delivery', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      m.subscribe('a', 'files')
      expect(m.getChannels('a')).toEqual(['files'])
      expect(m.getSubscribers('files')).toEqual(['a'])
      m.broadcast('files', 1)
      expect(ws.send).toHaveBeenCalledTimes(1)
      m.unsubscribe('a', 'files')
      expect(m.getChannels('a')).toEqual([])
    })

    it('is a silent no-op for an unknown id', () => {
      const m = newManager()
      expect(() => m.subscribe('ghost', 'files')).not.toThrow()
      expect(() => m.unsubscribe('ghost', 'files')).not.toThrow()
      expect(m.getSubscribers('files')).toEqual([])
      expect(m.getChannels('ghost')).toEqual([])
      expect(m.getConnections().size).toBe(0)
    })

    it('stores a channel with an unpaired surrogate with U+FFFD in its place (README: deliberate difference)', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', '\ud800')
      expect(m.getChannels('a')).toEqual(['\ufffd'])
      expect(m.getSubscribers('\ud800')).toEqual(['a'])
      m.unsubscribe('a', '\ud800')
      expect(m.getChannels('a')).toEqual([])
    })

    it('unsubscribing a channel never subscribed is a no-op', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.subscribe('a', 'git')
      expect(() => m.unsubscribe('a', 'files')).not.toThrow()
      expect(m.getChannels('a')).toEqual(['git'])
    })
  })

  describe('#getSubscribers', () => {
    it('returns [] for a channel with no subscribers', () => {
      const m = newManager()
      expect(m.getSubscribers('files')).toEqual([])
    })

    it('lists subscribers in connection order (as the original scanned its connection Map)', () => {
      const m = newManager()
      for (const id of ['a', 'b', 'c', 'd']) m.addConnection(asWs(mockSocket()), id)
      m.subscribe('c', 'files')
      m.subscribe('a', 'files')
      m.subscribe('d', 'git')
      m.subscribe('b', 'files')
      expect(m.getSubscribers('files')).toEqual(['a', 'b', 'c'])
      expect(m.getSubscribers('git')).toEqual(['d'])
    })

    it('returns a fresh array each call', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.subscribe('a', 'files')
      const subs = m.getSubscribers('files')
      subs.push('x')
      expect(m.getSubscribers('files')).toEqual(['a'])
    })
  })

  describe('#getChannels', () => {
    it('returns [] for an unknown id', () => {
      expect(newManager().getChannels('nope')).toEqual([])
    })

    it('lists channels in subscription order; resubscribing does not move, unsubscribe+subscribe moves to the end', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.subscribe('a', 'git')
      m.subscribe('a', 'files')
      m.subscribe('a', 'search')
      m.subscribe('a', 'git')
      expect(m.getChannels('a')).toEqual(['git', 'files', 'search'])
      m.unsubscribe('a', 'git')
      m.subscribe('a', 'git')
      expect(m.getChannels('a')).toEqual(['files', 'search', 'git'])
    })

    it('returns a fresh array each call', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.subscribe('a', 'files')
      m.getChannels('a').push('x')
      expect(m.getChannels('a')).toEqual(['files'])
    })
  })

  describe('#getConnections', () => {
    it('returns a Map keyed by id, in insertion order', () => {
      const m = newManager()
      for (const id of ['z', 'a', 'm']) m.addConnection(asWs(mockSocket()), id)
      const conns = m.getConnections()
      expect(conns).toBeInstanceOf(Map)
      expect([...conns.keys()]).toEqual(['z', 'a', 'm'])
      m.removeConnection('a')
      expect([...m.getConnections().keys()]).toEqual(['z', 'm'])
    })

    it('returns a copy: mutating the Map does not change the manager', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      const conns = m.getConnections()
      conns.delete('a')
      conns.set('x', { ws: asWs(mockSocket()), id: 'x', channels: new Set(['files']), isAlive: true } as never)
      expect([...m.getConnections().keys()]).toEqual(['a'])
      expect(m.getSubscribers('files')).toEqual([])
      expect(m.getConnections()).not.toBe(m.getConnections())
    })

    it("returns a copy: mutating a record's channels Set does not change the manager", () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      const rec = m.getConnections().get('a')!
      expect([...rec.channels]).toEqual(['files'])
      rec.channels.add('git')
      rec.channels.delete('files')
      expect(m.getChannels('a')).toEqual(['files'])
      expect(m.getSubscribers('git')).toEqual([])
      m.broadcast('git', 1)
      expect(ws.send).not.toHaveBeenCalled()
      m.broadcast('files', 1)
      expect(ws.send).toHaveBeenCalledTimes(1)
    })

    it('returns an empty Map when there are no connections', () => {
      const conns = newManager().getConnections()
      expect(conns).toBeInstanceOf(Map)
      expect(conns.size).toBe(0)
    })
  })

  describe('#broadcast', () => {
    it('sends one event envelope to each open subscriber', () => {
      const m = newManager()
      const a = mockSocket()
      const b = mockSocket()
      const other = mockSocket()
      m.addConnection(asWs(a), 'a')
      m.addConnection(asWs(b), 'b')
      m.addConnection(asWs(other), 'other')
      m.subscribe('a', 'files')
      m.subscribe('b', 'files')
      m.subscribe('other', 'git')
      m.broadcast('files', { file: 'src/main.ts', event: 'change' })
      expect(a.send).toHaveBeenCalledTimes(1)
      expect(b.send).toHaveBeenCalledTimes(1)
      expect(other.send).not.toHaveBeenCalled()
      expect(lastSent(a)).toBe(lastSent(b))
    })

    it('sends the exact bytes {"type":"event","channel","data","timestamp"} with an ISO timestamp near now', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      const data = { file: 'src/main.ts', event: 'change', nested: { list: [1, 'two', null, true] } }
      const before = Date.now()
      m.broadcast('files', data)
      const after = Date.now()
      const raw = lastSent(ws)
      const ts = envelopeTimestamp(raw)
      expectRecentIso(ts, before, after)
      expect(raw).toBe(
        `{"type":"event","channel":"files","data":{"file":"src/main.ts","event":"change","nested":{"list":[1,"two",null,true]}},"timestamp":"${ts}"}`,
      )
      expect(raw).toBe(expectedEnvelope('files', data, ts))
      expect(Object.keys(JSON.parse(raw))).toEqual(['type', 'channel', 'data', 'timestamp'])
    })

    it('sends a string (a text frame), as the original did', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      m.broadcast('files', 'x')
      expect(typeof ws.send.mock.calls[0]![0]).toBe('string')
    })

    it('escapes the channel name as JSON', () => {
      const m = newManager()
      const ws = mockSocket()
      const channel = 'we"ird\\chan\nnel\u2028ü'
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', channel)
      m.broadcast(channel, null)
      const raw = lastSent(ws)
      expect(raw).toBe(expectedEnvelope(channel, null, envelopeTimestamp(raw)))
    })

    it.each([0, 2, 3])('skips a subscriber whose readyState is %i without throwing', (readyState) => {
      const m = newManager()
      const closed = mockSocket({ readyState })
      const open = mockSocket()
      m.addConnection(asWs(closed), 'closed')
      m.addConnection(asWs(open), 'open')
      m.subscribe('closed', 'files')
      m.subscribe('open', 'files')
      expect(() => m.broadcast('files', { n: 1 })).not.toThrow()
      expect(closed.send).not.toHaveBeenCalled()
      expect(open.send).toHaveBeenCalledTimes(1)
    })

    it('reads readyState at broadcast time', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      ws.readyState = 3
      m.broadcast('files', 1)
      expect(ws.send).not.toHaveBeenCalled()
      ws.readyState = 1
      m.broadcast('files', 2)
      expect(ws.send).toHaveBeenCalledTimes(1)
    })

    it('does not throw when a subscriber send() throws, and still reaches the others', () => {
      const m = newManager()
      const bad = mockSocket()
      bad.send.mockImplementation(() => {
        throw new Error('send failed')
      })
      const before = mockSocket()
      const after = mockSocket()
      m.addConnection(asWs(before), 'before')
      m.addConnection(asWs(bad), 'bad')
      m.addConnection(asWs(after), 'after')
      for (const id of ['before', 'bad', 'after']) m.subscribe(id, 'files')
      expect(() => m.broadcast('files', { n: 1 })).not.toThrow()
      expect(bad.send).toHaveBeenCalledTimes(1)
      expect(before.send).toHaveBeenCalledTimes(1)
      expect(after.send).toHaveBeenCalledTimes(1)
      // the failing subscriber is not dropped by a failed send
      expect(m.getSubscribers('files')).toEqual(['before', 'bad', 'after'])
    })

    it('does nothing for a channel with no subscribers', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      expect(() => m.broadcast('files', { n: 1 })).not.toThrow()
      expect(ws.send).not.toHaveBeenCalled()
    })

    it('throws a TypeError for a cyclic data value and sends nothing', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      expect(() => m.broadcast('files', cyclic)).toThrow(TypeError)
      expect(ws.send).not.toHaveBeenCalled()
    })
  })

  describe('#send', () => {
    it('sends exactly JSON.stringify(data) to one open connection', () => {
      const m = newManager()
      const a = mockSocket()
      const b = mockSocket()
      m.addConnection(asWs(a), 'a')
      m.addConnection(asWs(b), 'b')
      const data = { type: 'response', id: '1', data: { ok: true, list: [1, 2] } }
      m.send('a', data)
      expect(sent(a)).toEqual([JSON.stringify(data)])
      expect(b.send).not.toHaveBeenCalled()
    })

    it('sends primitives as JSON.stringify does', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.send('a', 'hi')
      m.send('a', 42)
      m.send('a', null)
      m.send('a', [undefined, 1])
      expect(sent(ws)).toEqual(['"hi"', '42', 'null', '[null,1]'])
    })

    it('does not require a subscription', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.send('a', { x: 1 })
      expect(ws.send).toHaveBeenCalledTimes(1)
    })

    it('does not throw for an unknown id', () => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      expect(() => m.send('nope', { x: 1 })).not.toThrow()
      expect(ws.send).not.toHaveBeenCalled()
    })

    it.each([0, 2, 3])('does not send or throw when readyState is %i', (readyState) => {
      const m = newManager()
      const ws = mockSocket({ readyState })
      m.addConnection(asWs(ws), 'a')
      expect(() => m.send('a', { x: 1 })).not.toThrow()
      expect(ws.send).not.toHaveBeenCalled()
    })
  })

  describe('#handleConnection', () => {
    it('registers the socket under a generated conn-<ms>-<base36> id and sends the welcome synchronously', () => {
      const m = newManager()
      const ws = mockSocket()
      const before = Date.now()
      m.handleConnection(asWs(ws), '/srv/project')
      const after = Date.now()
      const ids = [...m.getConnections().keys()]
      expect(ids).toHaveLength(1)
      const id = ids[0]!
      expect(id).toMatch(CONN_ID_RE)
      const ms = Number(/^conn-(\d+)-/.exec(id)![1])
      expect(ms).toBeGreaterThanOrEqual(before - 20)
      expect(ms).toBeLessThanOrEqual(after + 20)
      expect(m.getConnections().get(id)!.ws).toBe(ws)
      expect(sent(ws)).toEqual([
        JSON.stringify({ type: 'response', data: { status: 'connected', connectionId: id, cwd: '/srv/project' } }),
      ])
    })

    it('gives each connection a distinct id', () => {
      const m = newManager()
      for (let i = 0; i < 50; i++) m.handleConnection(asWs(mockSocket()), '/')
      expect(m.getConnections().size).toBe(50)
    })

    it("removes the connection on 'close'", () => {
      const m = newManager()
      const ws = mockSocket()
      m.handleConnection(asWs(ws), '/')
      expect(m.getConnections().size).toBe(1)
      ws.emit('close', 1000, Buffer.alloc(0))
      expect(m.getConnections().size).toBe(0)
    })

    it('answers a message synchronously within the emit, as the original did', () => {
      const m = newManager()
      const ws = mockSocket()
      m.handleConnection(asWs(ws), '/')
      const id = [...m.getConnections().keys()][0]!
      ws.emit('message', Buffer.from('{"type":"subscribe","channel":"files","id":"1"}'), false)
      expect(ws.send).toHaveBeenCalledTimes(2)
      expect(m.getSubscribers('files')).toEqual([id])
    })

    const payloads: Array<[string, (json: string) => unknown]> = [
      ['Buffer', (json) => Buffer.from(json)],
      ['string', (json) => json],
      [
        'ArrayBuffer',
        (json) => {
          const b = Buffer.from(json)
          return b.buffer.slice(b.byteOffset, b.byteOffset + b.length)
        },
      ],
      [
        'Buffer[] (fragments)',
        (json) => {
          const b = Buffer.from(json)
          return [b.subarray(0, 5), b.subarray(5, 17), b.subarray(17)]
        },
      ],
    ]
    it.each(payloads)("handles a 'message' payload given as %s", async (_name, make) => {
      const m = newManager()
      const ws = mockSocket()
      m.handleConnection(asWs(ws), '/')
      const id = [...m.getConnections().keys()][0]!
      const json = '{"type":"subscribe","channel":"fïles","id":"p"}'
      ws.emit('message', make(json), false)
      await vi.waitFor(() => expect(ws.send).toHaveBeenCalledTimes(2))
      expect(lastSent(ws)).toBe('{"type":"response","id":"p","data":{"status":"subscribed","channel":"fïles"}}')
      expect(m.getSubscribers('fïles')).toEqual([id])
    })

    it('does not throw from emit for a malformed message', () => {
      const m = newManager()
      const ws = mockSocket()
      m.handleConnection(asWs(ws), '/')
      expect(() => ws.emit('message', Buffer.from('{nope'), false)).not.toThrow()
    })
  })

  describe('#getStats', () => {
    it('returns an object with numeric counters', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      const stats = m.getStats() as unknown
      expect(typeof stats).toBe('object')
      expect(stats).not.toBeNull()
      const numbers: number[] = []
      const walk = (v: unknown): void => {
        if (typeof v === 'number') numbers.push(v)
        else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x)
      }
      walk(stats)
      expect(numbers.length).toBeGreaterThan(0)
      expect(numbers.every((n) => Number.isFinite(n) && n >= 0)).toBe(true)
    })
  })

  describe('#shutdown', () => {
    it('closes every open connection and forgets all records', () => {
      const m = newManager()
      const open = mockSocket()
      const closed = mockSocket({ readyState: 3 })
      m.addConnection(asWs(open), 'open')
      m.addConnection(asWs(closed), 'closed')
      m.subscribe('open', 'files')
      m.shutdown()
      expect(open.close).toHaveBeenCalledTimes(1)
      expect(closed.close).not.toHaveBeenCalled()
    })

    it('does not throw if called twice', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.shutdown()
      expect(() => m.shutdown()).not.toThrow()
    })

    it('does not throw when a close() throws', () => {
      const m = newManager()
      const ws = mockSocket()
      ws.close.mockImplementation(() => {
        throw new Error('close failed')
      })
      m.addConnection(asWs(ws), 'a')
      expect(() => m.shutdown()).not.toThrow()
    })

    const calls: Array<[string, (m: WebSocketManager) => unknown]> = [
      ['addConnection', (m) => m.addConnection(asWs(mockSocket()), 'x')],
      ['removeConnection', (m) => m.removeConnection('a')],
      ['subscribe', (m) => m.subscribe('a', 'files')],
      ['unsubscribe', (m) => m.unsubscribe('a', 'files')],
      ['broadcast', (m) => m.broadcast('files', { n: 1 })],
      ['send', (m) => m.send('a', { n: 1 })],
      ['getConnections', (m) => m.getConnections()],
      ['getSubscribers', (m) => m.getSubscribers('files')],
      ['getChannels', (m) => m.getChannels('a')],
      ['handleConnection', (m) => m.handleConnection(asWs(mockSocket()), '/')],
    ]
    it.each(calls)('makes %s a harmless no-op afterwards (log, never throw)', (_name, call) => {
      const m = newManager()
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'a')
      m.subscribe('a', 'files')
      void m.shutdown()
      const sentBefore = ws.send.mock.calls.length
      expect(() => call(m)).not.toThrow()
      expect(() => call(m)).not.toThrow()
      expect(ws.send.mock.calls.length).toBe(sentBefore)
      expect(m.getStats()).toMatchObject({ connections: 0, channels: 0, subscriptions: 0 })
    })

    it('answers reads with empty results afterwards', () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      m.subscribe('a', 'files')
      void m.shutdown()
      const connections = m.getConnections()
      expect(connections).toBeInstanceOf(Map)
      expect(connections.size).toBe(0)
      expect(m.getSubscribers('files')).toEqual([])
      expect(m.getChannels('a')).toEqual([])
    })

    it('returns one promise that resolves, however often it is called', async () => {
      const m = newManager()
      m.addConnection(asWs(mockSocket()), 'a')
      const first = m.shutdown()
      const second = m.shutdown()
      expect(first).toBeInstanceOf(Promise)
      expect(second).toBe(first)
      await expect(first).resolves.toBeUndefined()
    })

    it('leaves sockets emitting events afterwards harmless', () => {
      const m = newManager()
      const ws = mockSocket()
      m.handleConnection(asWs(ws), '/')
      const before = ws.send.mock.calls.length
      m.shutdown()
      expect(() => ws.emit('message', Buffer.from('{"type":"subscribe","channel":"files"}'), false)).not.toThrow()
      expect(() => ws.emit('pong')).not.toThrow()
      expect(() => ws.emit('error', new Error('late'))).not.toThrow()
      expect(() => ws.emit('close', 1000, Buffer.alloc(0))).not.toThrow()
      expect(ws.send.mock.calls.length).toBe(before)
    })
  })
})
