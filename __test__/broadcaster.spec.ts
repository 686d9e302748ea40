// EventBroadcaster, SPEC A.3: each method builds its data (with its own ISO timestamp)
// and calls manager.broadcast(channel, data).
import { afterEach, describe, expect, it, vi, type Mock } from 'vitest'
import { EventBroadcaster, type LSPDiagnostic, type SearchResult, type ValidationResult, type WebSocketManager } from '../index.js'
import {
  asWs,
  envelopeTimestamp,
  expectedEnvelope,
  expectRecentIso,
  lastSent,
  mockSocket,
  newManager,
  shutdownAll,
  type MockSocket,
} from './helpers.js'

afterEach(() => {
  shutdownAll()
  vi.restoreAllMocks()
})

const diagnostics: LSPDiagnostic[] = [
  { file: 'src/a.ts', line: 3, column: 7, message: "Cannot find name 'x'.", severity: 'error', source: 'ts' },
  { file: 'src/b.ts', line: 1, column: 1, message: 'Unused import', severity: 'hint', source: 'eslint' },
]
const results: SearchResult[] = [{ file: 'src/a.ts', line: 10, column: 2, match: 'needle', context: 'a needle here' }]
const validation: ValidationResult = {
  type: 'lint',
  passed: false,
  errors: [
    { file: 'src/a.ts', line: 1, column: 2, message: 'no-var', rule: 'no-var' },
    { file: 'src/b.ts', line: 3, column: 4, message: 'missing semicolon' },
  ],
}

interface Case {
  name: string
  call: (b: EventBroadcaster) => void
  channel: string
  /** expected data without its timestamp, in key order; the timestamp is appended last */
  data: Record<string, unknown>
}

const cases: Case[] = [
  {
    name: 'fileChanged',
    call: (b) => b.fileChanged('src/main.ts', 'change'),
    channel: 'files',
    data: { file: 'src/main.ts', event: 'change' },
  },
  {
    name: 'fileChanged (unlinkDir)',
    call: (b) => b.fileChanged('src/old', 'unlinkDir'),
    channel: 'files',
    data: { file: 'src/old', event: 'unlinkDir' },
  },
  {
    name: 'diagnosticsUpdated (cleared defaults to false)',
    call: (b) => b.diagnosticsUpdated(diagnostics),
    channel: 'diagnostics',
    data: { diagnostics, cleared: false },
  },
  {
    name: 'diagnosticsUpdated (cleared true)',
    call: (b) => b.diagnosticsUpdated([], true),
    channel: 'diagnostics',
    data: { diagnostics: [], cleared: true },
  },
  {
    name: 'aiChunk',
    call: (b) => b.aiChunk('req-1', 'Hello, wor', 3, false),
    channel: 'ai-response',
    data: { id: 'req-1', chunk: 'Hello, wor', index: 3, finished: false },
  },
  {
    name: 'aiChunk (finished)',
    call: (b) => b.aiChunk('req-1', '', 4, true),
    channel: 'ai-response',
    data: { id: 'req-1', chunk: '', index: 4, finished: true },
  },
  {
    name: 'searchProgress (total null kept)',
    call: (b) => b.searchProgress('needle', 1, null, results),
    channel: 'search',
    data: { query: 'needle', completed: 1, total: null, results },
  },
  {
    name: 'searchProgress (numeric total)',
    call: (b) => b.searchProgress('needle', 5, 10, []),
    channel: 'search',
    data: { query: 'needle', completed: 5, total: 10, results: [] },
  },
  {
    name: 'validationComplete',
    call: (b) => b.validationComplete(validation),
    channel: 'validation',
    data: { validation },
  },
  {
    name: 'gitEvent',
    call: (b) => b.gitEvent('commit', 'feat: add x'),
    channel: 'git',
    data: { type: 'commit', message: 'feat: add x' },
  },
]

function mockManager(): { manager: WebSocketManager; broadcast: Mock<(channel: string, data: unknown) => void> } {
  const broadcast = vi.fn<(channel: string, data: unknown) => void>()
  return { manager: { broadcast } as unknown as WebSocketManager, broadcast }
}

describe('EventBroadcaster', () => {
  describe('with a mock manager', () => {
    it.each(cases)('#$name calls broadcast(channel, data) once with the documented data', (c) => {
      const { manager, broadcast } = mockManager()
      const b = new EventBroadcaster(manager)
      const before = Date.now()
      c.call(b)
      const after = Date.now()
      expect(broadcast).toHaveBeenCalledTimes(1)
      const [channel, data] = broadcast.mock.calls[0]!
      expect(channel).toBe(c.channel)
      const d = data as Record<string, unknown>
      expect(Object.keys(d)).toEqual([...Object.keys(c.data), 'timestamp'])
      expectRecentIso(d.timestamp, before, after)
      expect(d).toStrictEqual({ ...c.data, timestamp: d.timestamp })
    })

    it('passes payload objects through by reference', () => {
      const { manager, broadcast } = mockManager()
      const b = new EventBroadcaster(manager)
      b.diagnosticsUpdated(diagnostics)
      b.searchProgress('q', 0, null, results)
      b.validationComplete(validation)
      expect((broadcast.mock.calls[0]![1] as { diagnostics: unknown }).diagnostics).toBe(diagnostics)
      expect((broadcast.mock.calls[1]![1] as { results: unknown }).results).toBe(results)
      expect((broadcast.mock.calls[2]![1] as { validation: unknown }).validation).toBe(validation)
    })

    it('#emit passes channel and data unchanged', () => {
      const { manager, broadcast } = mockManager()
      const b = new EventBroadcaster(manager)
      const data = { anything: [1, 2], nested: { x: undefined } }
      b.emit('custom-channel', data)
      expect(broadcast).toHaveBeenCalledTimes(1)
      expect(broadcast.mock.calls[0]![0]).toBe('custom-channel')
      expect(broadcast.mock.calls[0]![1]).toBe(data)
      b.emit('prims', 5)
      b.emit('prims', undefined)
      expect(broadcast.mock.calls[1]).toEqual(['prims', 5])
      expect(broadcast.mock.calls[2]![1]).toBeUndefined()
    })

    it('builds a fresh timestamp for each call', async () => {
      const { manager, broadcast } = mockManager()
      const b = new EventBroadcaster(manager)
      b.gitEvent('push', 'a')
      const first = (broadcast.mock.calls[0]![1] as { timestamp: string }).timestamp
      // wait (by polling, not sleeping) until the clock has moved past the first timestamp
      await vi.waitFor(() => expect(new Date().toISOString()).not.toBe(first))
      b.gitEvent('push', 'b')
      const second = (broadcast.mock.calls[1]![1] as { timestamp: string }).timestamp
      expect(Date.parse(second)).toBeGreaterThan(Date.parse(first))
    })

    it('propagates an error thrown by broadcast', () => {
      const { manager, broadcast } = mockManager()
      broadcast.mockImplementation(() => {
        throw new TypeError('nope')
      })
      const b = new EventBroadcaster(manager)
      expect(() => b.fileChanged('a', 'add')).toThrow('nope')
    })
  })

  describe('with a real manager', () => {
    function setup(): { m: WebSocketManager; ws: MockSocket; b: EventBroadcaster } {
      const m = newManager({ pingIntervalMs: 0 })
      const ws = mockSocket()
      m.addConnection(asWs(ws), 'c')
      for (const ch of ['files', 'diagnostics', 'ai-response', 'search', 'validation', 'git', 'custom']) m.subscribe('c', ch)
      return { m, ws, b: new EventBroadcaster(m) }
    }

    it.each(cases)('#$name sends the exact envelope bytes', (c) => {
      const { ws, b } = setup()
      const before = Date.now()
      c.call(b)
      const after = Date.now()
      expect(ws.send).toHaveBeenCalledTimes(1)
      const raw = lastSent(ws)
      const envTs = envelopeTimestamp(raw)
      const dataTs = /"timestamp":"([^"]*)"\},"timestamp":/.exec(raw)?.[1]
      expectRecentIso(envTs, before, after)
      expectRecentIso(dataTs, before, after)
      expect(raw).toBe(expectedEnvelope(c.channel, { ...c.data, timestamp: dataTs }, envTs))
    })

    it('#emit sends the data unchanged', () => {
      const { ws, b } = setup()
      const data = { z: 1, a: [undefined, NaN], d: new Date(0) }
      b.emit('custom', data)
      const raw = lastSent(ws)
      expect(raw).toBe(expectedEnvelope('custom', data, envelopeTimestamp(raw)))
    })

    it('keeps payload key order and fields the caller supplied', () => {
      const { ws, b } = setup()
      // runtime callers (plain JS) may pass objects in any key order, or with extra fields
      const diag = { severity: 'warning', source: 'x', file: 'f', line: 1, column: 2, message: 'm', extra: 'kept' }
      b.diagnosticsUpdated([diag as unknown as LSPDiagnostic])
      const raw = lastSent(ws)
      expect(raw).toContain('"diagnostics":[{"severity":"warning","source":"x","file":"f","line":1,"column":2,"message":"m","extra":"kept"}]')
    })

    it('omits an absent optional ValidationError.rule (no "rule":null)', () => {
      const { ws, b } = setup()
      b.validationComplete({ type: 'format', passed: false, errors: [{ file: 'f', line: 1, column: 1, message: 'm' }] })
      const raw = lastSent(ws)
      expect(raw).toContain('"errors":[{"file":"f","line":1,"column":1,"message":"m"}]')
    })

    it('is seen by vi.spyOn(manager, "broadcast") installed after construction', () => {
      const { m, ws, b } = setup()
      const spy = vi.spyOn(m, 'broadcast')
      b.fileChanged('src/x.ts', 'add')
      expect(spy).toHaveBeenCalledTimes(1)
      expect(spy.mock.calls[0]![0]).toBe('files')
      expect(spy.mock.calls[0]![1]).toMatchObject({ file: 'src/x.ts', event: 'add' })
      expect(ws.send).toHaveBeenCalledTimes(1)
    })

    it('is seen by vi.spyOn(manager, "broadcast") installed before construction', () => {
      const m = newManager({ pingIntervalMs: 0 })
      const spy = vi.spyOn(m, 'broadcast').mockImplementation(() => undefined)
      const b = new EventBroadcaster(m)
      b.aiChunk('r', 'c', 0, true)
      expect(spy).toHaveBeenCalledTimes(1)
      expect(spy.mock.calls[0]![0]).toBe('ai-response')
    })

    it('does nothing, and never throws, once the manager is shut down', () => {
      const { m, b } = setup()
      const spy = vi.spyOn(m, 'broadcast')
      void m.shutdown()
      expect(() => b.gitEvent('status', 'x')).not.toThrow()
      expect(() => b.fileChanged('a.ts', 'change')).not.toThrow()
      expect(spy).toHaveBeenCalledTimes(2)
      expect(m.getStats().broadcasts).toBe(0)
    })
  })
})
