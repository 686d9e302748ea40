// lib/fanout.js on its own: the channel → sockets index the addon keeps in step with its
// registry, and the per-broadcast loop.
import { createRequire } from 'node:module'
import { describe, expect, it, vi } from 'vitest'

const require = createRequire(import.meta.url)
const { createJsFanOut } = require('../lib/fanout.js') as {
  createJsFanOut: (onSendError: (id: string | undefined, error: unknown) => void) => FanOut
}

interface FanOut {
  envelope(channel: string, data: unknown, timestamp: string): string
  add(channel: string, key: number, ws: unknown, id: string): void
  remove(channel: string, key: number): void
  forget(key: number): void
  clear(): void
  sendAll(channel: string, text: string): number
}

interface Sock {
  readyState: number
  bufferedAmount?: number
  sent: string[]
  send: (text: string) => void
  close: ReturnType<typeof vi.fn>
  terminate: ReturnType<typeof vi.fn>
}

/** A WebSocket-like socket; close() moves it to CLOSING (2), terminate() to CLOSED (3). */
function sock(init: Partial<Pick<Sock, 'readyState' | 'bufferedAmount'>> = {}): Sock {
  const s: Sock = {
    readyState: init.readyState ?? 1,
    sent: [],
    send(text: string) {
      s.sent.push(text)
    },
    close: vi.fn(() => {
      s.readyState = 2
    }),
    terminate: vi.fn(() => {
      s.readyState = 3
    }),
  }
  if ('bufferedAmount' in init) s.bufferedAmount = init.bufferedAmount
  return s
}

describe('lib/fanout.js: the index', () => {
  it('builds the original envelope', () => {
    const f = createJsFanOut(() => {})
    expect(f.envelope('files', { a: 1 }, 'T')).toBe('{"type":"event","channel":"files","data":{"a":1},"timestamp":"T"}')
  })

  it('sends to every subscriber of the channel and to no other', () => {
    const f = createJsFanOut(() => {})
    const a = sock()
    const b = sock()
    const c = sock()
    f.add('files', 1, a, 'a')
    f.add('files', 2, b, 'b')
    f.add('git', 3, c, 'c')
    expect(f.sendAll('files', 'x')).toBe(0)
    expect(a.sent).toEqual(['x'])
    expect(b.sent).toEqual(['x'])
    expect(c.sent).toEqual([])
    expect(f.sendAll('nobody', 'y')).toBe(0)
  })

  it('adding a socket twice to a channel sends once', () => {
    const f = createJsFanOut(() => {})
    const a = sock()
    f.add('files', 1, a, 'a')
    f.add('files', 1, a, 'a')
    f.sendAll('files', 'x')
    expect(a.sent).toEqual(['x'])
  })

  it('remove() drops one channel of a socket; forget() drops all of them; clear() everything', () => {
    const f = createJsFanOut(() => {})
    const a = sock()
    const b = sock()
    f.add('files', 1, a, 'a')
    f.add('git', 1, a, 'a')
    f.add('files', 2, b, 'b')
    f.add('git', 2, b, 'b')
    f.remove('files', 1)
    f.remove('files', 99) // unknown: ignored
    f.remove('nope', 1)
    f.sendAll('files', 'f1')
    f.sendAll('git', 'g1')
    expect(a.sent).toEqual(['g1'])
    expect(b.sent).toEqual(['f1', 'g1'])
    f.forget(2)
    f.sendAll('files', 'f2')
    f.sendAll('git', 'g2')
    expect(a.sent).toEqual(['g1', 'g2'])
    expect(b.sent).toEqual(['f1', 'g1'])
    f.clear()
    f.sendAll('git', 'g3')
    expect(a.sent).toEqual(['g1', 'g2'])
  })

  it('counts sockets that are not open as failures without calling send', () => {
    const f = createJsFanOut(() => {})
    const open = sock()
    const connecting = sock({ readyState: 0 })
    const closing = sock({ readyState: 2 })
    const closed = sock({ readyState: 3 })
    const send = vi.fn()
    for (const s of [connecting, closing, closed]) s.send = send
    f.add('files', 1, open, 'open')
    f.add('files', 2, connecting, 'connecting')
    f.add('files', 3, closing, 'closing')
    f.add('files', 4, closed, 'closed')
    expect(f.sendAll('files', 'x')).toBe(3)
    expect(send).not.toHaveBeenCalled()
    expect(open.sent).toEqual(['x'])
  })

  it('counts a send that throws and reports it with the connection id; the loop goes on', () => {
    const errors: [string | undefined, unknown][] = []
    const f = createJsFanOut((id, error) => errors.push([id, error]))
    const boom = new Error('boom')
    const bad = sock()
    bad.send = () => {
      throw boom
    }
    const good = sock()
    f.add('files', 1, bad, 'bad')
    f.add('files', 2, good, 'good')
    expect(f.sendAll('files', 'x')).toBe(2 - 1)
    expect(errors).toEqual([['bad', boom]])
    expect(good.sent).toEqual(['x'])
  })
})
